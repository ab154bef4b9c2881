"""AdapterTrainingOperator in real ``dag.test()`` runs: the local backend, and the Argo backend
against the local Argo Server stand-in (no cluster can run here), collecting versions from MLflow."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hera.workflows import Workflow
from mlflow.tracking import MlflowClient

import retrain
from retrain.adapters.registry import EXPERIMENT, train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.fanout.argo import ArgoTrainingSpec, build_submission
from retrain.fanout.parent_run import start_parent_run
from retrain_airflow.hooks.argo import ArgoHook
from retrain_airflow.links import ArgoWorkflowLink, MLflowRunLink
from retrain_airflow.operators.training import AdapterTrainingOperator
from retrain_airflow.operators.training_backends import (
    ArgoTrainingBackend,
    LocalTrainingBackend,
    TrainingRequest,
    submitter_key,
)
from retrain_airflow.triggers.argo import ArgoWorkflowTrigger

from ...retrain.fanout.argo_server_stand_in import StandInState, airflow_connection, argo_server_stand_in
from ..dag_files import load_dag

TOKEN = "argo-token-123"
DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.training import AdapterTrainingOperator

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    AdapterTrainingOperator(
        task_id="train", table="examples", commit="main", customers={customers!r}, backend={backend!r},
        allow_partial={allow_partial}, poll_interval=0.1,
    )
"""


def dag_with(home: Path, dag_id: str, **values: object) -> Any:
    return load_dag(home, dag_id, DAG_SOURCE.format(dag_id=dag_id, **values))


@pytest.fixture
def mlflow_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def deferrals(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The kwargs of each deferral in this test's ``dag.test()`` runs, resumed as the triggerer does.

    The triggerer resumes a deferred task with the trigger's event added to the kwargs it deferred
    with; Airflow 3.3's ``dag.test()`` passes the event alone (apache/airflow#69942 fixes it, in no
    release yet). So the trigger runs here, the same in-process way, and the task resumes with both.
    """
    from airflow.sdk.definitions import dag as sdk_dag
    from airflow.sdk.execution_time.comms import DeferTask
    from airflow.sdk.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    seen: list[dict[str, Any]] = []
    run_task = sdk_dag._run_task

    def run_task_resuming_like_the_triggerer(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        while True:
            result = run_task(ti=ti, task=task)  # without the triggerer: returns when the task defers
            if result is None or not isinstance(result.msg, DeferTask):
                return result
            kwargs = deserialize(result.msg.next_kwargs)
            seen.append(kwargs)
            trigger = import_string(result.msg.classpath)(**deserialize(result.msg.trigger_kwargs))
            event = sdk_dag._run_inline_trigger(trigger, result.ti)
            with create_session() as session:
                ti.next_method = result.msg.next_method
                ti.next_kwargs = serialize({**kwargs, "event": event.payload})
                ti.state = TaskInstanceState.SCHEDULED
                session.add(ti)

    monkeypatch.setattr(sdk_dag, "_run_task", run_task_resuming_like_the_triggerer)
    return seen


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn")
def test_local_backend_fails_naming_the_customer_unless_partial_allowed(
    airflow_db: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_BASE_MODEL", "/nonexistent/base-model")  # every adapter fails the same way
    strict = dag_with(
        airflow_db, "train_local_strict", customers=["acme_air"], backend="local", allow_partial=False
    ).test()
    assert strict.state == "failed"
    client = MlflowClient(mlflow_uri)
    assert client.search_model_versions("name = 'adapter-acme_air'") == []
    (parent,) = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id],  # type: ignore[union-attr]
        filter_string=f"tags.`retrain.airflow_run_id` = '{strict.run_id}'",
    )
    assert parent.data.tags["retrain.backend"] == "local"
    assert parent.info.status == "FAILED"  # ended by the fan-out, as without Airflow


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn")
def test_argo_backend_collects_versions_from_mlflow_and_names_failures(
    airflow_db: Path,
    mlflow_uri: str,
    seeded: SeededRepository,
    monkeypatch: pytest.MonkeyPatch,
    deferrals: list[dict[str, Any]],
) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:  # what the acme_air pod would have registered
        trained = train_and_register(
            repo,
            table="examples",
            commit="main",
            customer="acme_air",
            params=TrainingParams(epochs=1, min_examples=10),
        )
    state = StandInState(
        token=TOKEN,
        phases=["Pending", "Running", "Failed"],
        failed_nodes={"train(0:0)": "Error (exit code 1): failed customers: globex_bank"},
    )
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        run = dag_with(
            airflow_db,
            "train_argo",
            customers=["acme_air", "globex_bank"],
            backend="argo",
            allow_partial=True,
        ).test()
    assert run.state == "success"
    ti = run.get_task_instance("train")
    result = ti.xcom_pull(task_ids="train")
    assert result["adapters"]["acme_air"]["version"] == trained.version
    assert list(result["failed"]) == ["globex_bank"]
    assert "failed customers: globex_bank" in result["failed"]["globex_bank"]
    (submitted,) = state.submitted
    parameters = {p["name"]: p["value"] for p in submitted["spec"]["arguments"]["parameters"]}
    assert json.loads(parameters["selection"]) == {"customers": ["acme_air", "globex_bank"]}
    assert parameters["commit"] == seeded.commits[-1]
    assert parameters["code-version"] == retrain.__version__  # of the default image, never "latest"
    parent = MlflowClient(mlflow_uri).get_run(parameters["parent-run-id"])
    assert parent.data.tags["retrain.backend"] == "argo"
    assert ti.xcom_pull(task_ids="train", key=ArgoWorkflowLink.source_key).endswith(
        f"/workflows/ml-training/{submitted['metadata']['name']}"
    )


@pytest.mark.usefixtures("dolt_conn")
def test_argo_backend_defers_with_its_request_in_the_defer_kwargs(
    airflow_db: Path,
    mlflow_uri: str,
    seeded: SeededRepository,
    monkeypatch: pytest.MonkeyPatch,
    deferrals: list[dict[str, Any]],
) -> None:
    """The request travels with the deferral, not through XCom; the parent run is tagged as the
    local fan-out's (:func:`retrain.fanout.parent_run.start_parent_run`), plus the Airflow run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    state = StandInState(token=TOKEN, phases=["Running", "Succeeded"])  # pods that registered nothing
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        run = dag_with(
            airflow_db,
            "train_argo_defer",
            customers=["globex_bank", "acme_air"],
            backend="argo",
            allow_partial=True,
        ).test()
    assert run.state == "success"
    (submitted,) = state.submitted
    parameters = {p["name"]: p["value"] for p in submitted["spec"]["arguments"]["parameters"]}
    head = seeded.commits[-1]
    assert deferrals == [
        {
            "commit": head,
            "parent_run_id": parameters["parent-run-id"],
            "customers": ["acme_air", "globex_bank"],
        }
    ]
    result = run.get_task_instance("train").xcom_pull(task_ids="train")
    assert sorted(result["failed"]) == ["acme_air", "globex_bank"]
    assert f"workflow {submitted['metadata']['name']} never ran shard" in result["failed"]["acme_air"]
    with create_session() as session:
        keys = set(
            session.scalars(
                select(XComModel.key).where(
                    XComModel.dag_id == "train_argo_defer",
                    XComModel.run_id == run.run_id,
                    XComModel.task_id == "train",
                )
            )
        )
    assert keys - {"return_value"} <= {
        ArgoWorkflowLink.source_key,
        "_link_ArgoWorkflowLink",
        "_link_MLflowRunLink",
    }
    parent = MlflowClient(mlflow_uri).get_run(parameters["parent-run-id"])
    assert parent.info.run_name == "train_argo_defer.train"
    assert (
        parent.data.tags.items()
        >= {
            "retrain.commit": head,
            "retrain.table": "examples",
            "retrain.backend": "argo",
            "retrain.customers": "2",
            "retrain.airflow_run_id": run.run_id,
        }.items()
    )
    assert parent.info.status == "FAILED"  # ended once the workflow was over, with customers missing


@pytest.mark.usefixtures("dolt_conn")
def test_a_retry_waits_for_the_workflow_its_earlier_try_submitted(
    airflow_db: Path,
    mlflow_uri: str,
    seeded: SeededRepository,
    monkeypatch: pytest.MonkeyPatch,
    deferrals: list[dict[str, Any]],
) -> None:
    """An earlier try submitted a workflow that still runs (its trigger lost the Argo Server, say):
    the retry waits for it, with its parent run, and submits nothing."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    monkeypatch.setenv("RETRAIN_MLFLOW_UI_URL", "http://mlflow.example")  # so runs have links
    when = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=when, run_after=when)
    head = seeded.commits[-1]
    earlier = start_parent_run(
        mlflow_uri, commit=head, table="examples", backend="argo", customers=2, run_name="earlier try"
    )
    state = StandInState(token=TOKEN, phases=["Running", "Running", "Succeeded"])
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        argo = ArgoHook().get_client()
        workflow = build_submission(
            ArgoTrainingSpec(),
            table="examples",
            commit=head,
            customers=["acme_air", "globex_bank"],
            parent_run_id=earlier.run_id,
            store_artifact=lambda name, text: pytest.fail("two customers travel inline"),
            submitter=submitter_key("train_argo_retry", run_id, "train", -1),
        )
        name = argo.submit(workflow)
        run = dag_with(
            airflow_db,
            "train_argo_retry",
            customers=["globex_bank", "acme_air"],
            backend="argo",
            allow_partial=True,
        ).test(logical_date=when, run_after=when)
    assert run.run_id == run_id
    assert run.state == "success"
    assert [w["metadata"]["name"] for w in state.submitted] == [name]  # nothing submitted again
    assert deferrals == [
        {"commit": head, "parent_run_id": earlier.run_id, "customers": ["acme_air", "globex_bank"]}
    ]
    ti = run.get_task_instance("train")
    result = ti.xcom_pull(task_ids="train")
    assert result["parent_run_id"] == earlier.run_id
    assert earlier.url is not None
    assert ti.xcom_pull(task_ids="train", key=MLflowRunLink.source_key) == earlier.url
    assert f"workflow {name} never ran shard" in result["failed"]["acme_air"]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_run(earlier.run_id).info.experiment_id])
    assert [r.info.run_id for r in runs] == [earlier.run_id]  # no second parent run


@pytest.mark.usefixtures("dolt_conn")
def test_backend_is_chosen_by_name_and_an_unknown_one_fails_the_task_before_any_work(
    airflow_db: Path, mlflow_uri: str
) -> None:
    def backend(name: str) -> object:
        return AdapterTrainingOperator(
            task_id="train", table="examples", commit="main", customers=["acme_air"], backend=name
        )._backend

    assert isinstance(backend("local"), LocalTrainingBackend)
    assert isinstance(backend("argo"), ArgoTrainingBackend)
    with pytest.raises(ValueError, match="backend must be 'local' or 'argo', not 'gpu'"):
        backend("gpu")
    # The backend is templated, so the DAG imports; the task fails before it trains or tracks anything.
    run = dag_with(
        airflow_db, "train_unknown_backend", customers=["acme_air"], backend="gpu", allow_partial=False
    ).test()
    assert run.state == "failed"
    assert MlflowClient(mlflow_uri).get_experiment_by_name(EXPERIMENT) is None


def test_trigger_serializes_and_on_kill_stops_the_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    state = StandInState(token=TOKEN, phases=["Running"])
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN, namespace=None))
        from retrain_airflow.hooks.argo import ArgoHook

        name = ArgoHook().get_client().submit(Workflow(generate_name="w-"))
        trigger = ArgoWorkflowTrigger(argo_conn_id="argo_default", workflow=name, poll_interval=0.05)
        classpath, kwargs = trigger.serialize()
        assert classpath == "retrain_airflow.triggers.argo.ArgoWorkflowTrigger"
        assert "argo-token-123" not in str(kwargs)

        async def first_event_after_kill() -> dict[str, object]:
            events = trigger.run()
            with pytest.raises(TimeoutError):  # still running: no event yet
                await asyncio.wait_for(
                    asyncio.shield(pending := asyncio.ensure_future(events.__anext__())), 0.3
                )
            await trigger.on_kill()
            return (await asyncio.wait_for(pending, 5)).payload

        event = asyncio.run(first_event_after_kill())
    assert state.stopped == [name]
    assert event["phase"] == "Failed"


def test_a_lost_workflow_fails_the_task_naming_it_and_ends_the_parent_run(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ended, not left RUNNING: a retry that finds the workflow gone starts a parent run of its own."""
    from airflow.sdk.exceptions import AirflowException

    monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection("http://127.0.0.1:9", TOKEN))
    parent = start_parent_run(
        mlflow_uri, commit="c" * 40, table="examples", backend="argo", customers=1, run_name="p"
    )
    backend = ArgoTrainingBackend(ArgoHook(), MlflowClient(mlflow_uri), ArgoTrainingSpec(), poll_interval=1)
    request = TrainingRequest("examples", "c" * 40, ["acme_air"], parent.run_id, "task-key")
    event = {"status": "error", "workflow": "retrain-train-00001", "message": "workflow not found"}
    with pytest.raises(
        AirflowException, match="lost track of Argo workflow retrain-train-00001: workflow not found"
    ):
        backend.complete(request, event)
    assert MlflowClient(mlflow_uri).get_run(parent.run_id).info.status == "FAILED"
