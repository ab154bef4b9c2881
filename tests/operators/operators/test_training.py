"""AdapterTrainingOperator in real ``dag.test()`` runs: the local backend, and the Argo backend
against the local Argo Server stand-in (no cluster can run here), collecting versions from MLflow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hera.workflows import Workflow
from mlflow.tracking import MlflowClient

import retrain
from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain_airflow.links import ArgoWorkflowLink
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


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn")
def test_local_backend_fails_naming_the_customer_unless_partial_allowed(
    airflow_db: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_BASE_MODEL", "/nonexistent/base-model")  # every adapter fails the same way
    strict = dag_with(airflow_db, "train_local_strict", customers=["acme_air"], backend="local",
                      allow_partial=False).test()  # fmt: skip
    assert strict.state == "failed"
    assert MlflowClient(mlflow_uri).search_model_versions("name = 'adapter-acme_air'") == []


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn")
def test_argo_backend_collects_versions_from_mlflow_and_names_failures(
    airflow_db: Path, mlflow_uri: str, seeded: SeededRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:  # what the acme_air pod would have registered
        trained = train_and_register(repo, table="examples", commit="main", customer="acme_air",
                                     params=TrainingParams(epochs=1, min_examples=10))  # fmt: skip
    state = StandInState(
        token=TOKEN, phases=["Pending", "Running", "Failed"],
        failed_nodes={"train(1:1)": "Error (exit code 1): failed customers: globex_bank"},
    )  # fmt: skip
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        run = dag_with(airflow_db, "train_argo", customers=["acme_air", "globex_bank"], backend="argo",
                       allow_partial=True).test()  # fmt: skip
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
