"""Per-customer values over the XCom bound travel as files, in real ``dag.test()`` runs; a run's files
go when it succeeds, and a reference never opens a file outside the handoff path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

from retrain_airflow.handoff import HANDOFF_LIMIT, HandoffError, purge, resolve

from .dag_files import load_dag

DAG_SOURCE = """
import datetime as dt
from airflow.sdk import dag, get_current_context, task
from retrain_airflow.handoff import bounded, purge_on_success, resolve

@dag(
    dag_id="handoff", schedule=None, start_date=dt.datetime(2026, 1, 1), on_success_callback=purge_on_success
)
def handoff():
    @task
    def produce(count: int):
        customers = [f"customer_{{i:05d}}" for i in range(count)]
        return {{"few": bounded(customers[:3], context=get_current_context(), name="few"),
                "many": bounded(customers, context=get_current_context(), name="many")}}

    @task
    def consume(values):
        if {fail}:
            raise RuntimeError("consume failed")
        return {{name: len(resolve(value)) for name, value in values.items()}}

    consume(produce({count}))

handoff()
"""


def xcom_sizes(dag_id: str) -> dict[str, int]:
    """Bytes of each task's return value as stored in the metadata database."""
    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.key == "return_value")
        return {row.task_id: len(json.dumps(row.value)) for row in rows}


@pytest.mark.parametrize(
    ("count", "setting"),
    [
        (1_000, "AIRFLOW__RETRAIN__HANDOFF_PATH"),  # [retrain] handoff_path
        (10_000, "AIRFLOW_VAR_RETRAIN_HANDOFF_PATH"),  # the Variable overriding it
    ],
)
def test_large_customer_lists_travel_as_files_and_xcom_stays_small(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int, setting: str
) -> None:
    monkeypatch.setenv("AIRFLOW__RETRAIN__HANDOFF_PATH", "file:///nowhere/unused")
    monkeypatch.setenv(setting, f"file://{tmp_path / 'handoff'}")
    run = load_dag(airflow_db, "handoff", DAG_SOURCE.format(count=count, fail=False)).test()
    assert run.state == "success"
    produced = run.get_task_instance("produce").xcom_pull(task_ids="produce")
    assert produced["few"] == ["customer_00000", "customer_00001", "customer_00002"]  # small: inline
    assert produced["many"]["count"] == count
    written = Path(produced["many"]["handoff"].removeprefix("file://"))
    assert written.is_relative_to(tmp_path / "handoff" / "handoff")  # <path>/<dag>/<run>/<task>/<name>.json
    assert written.name == "many.json"
    assert run.get_task_instance("consume").xcom_pull(task_ids="consume") == {"few": 3, "many": count}
    sizes = xcom_sizes("handoff")
    assert max(sizes.values()) < 1_000 < HANDOFF_LIMIT, sizes
    # The run succeeded: nothing reads its files again, and its on_success_callback removed them.
    assert not written.parents[1].exists()
    assert list((tmp_path / "handoff").rglob("*.json")) == []


def test_a_failed_run_keeps_its_files_for_a_rerun_of_its_tasks(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_HANDOFF_PATH", f"file://{tmp_path / 'handoff'}")
    run = load_dag(airflow_db, "handoff", DAG_SOURCE.format(count=1_000, fail=True)).test()
    assert run.state == "failed"
    produced = run.get_task_instance("produce").xcom_pull(task_ids="produce")
    assert resolve(produced["many"]) == [f"customer_{i:05d}" for i in range(1_000)]
    assert purge("handoff", run.run_id)  # what the callback does once a rerun made the run succeed
    with pytest.raises(HandoffError, match=r"many\.json is gone \(its run's files are purged"):
        resolve(produced["many"])
    assert not purge("handoff", run.run_id)  # nothing left


def test_a_reference_outside_the_handoff_path_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference is data a template, an XCom or a run's conf can carry: it opens no other file."""
    base = tmp_path / "handoff"
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_HANDOFF_PATH", f"file://{base}")
    secret = tmp_path / "secret.json"
    secret.write_text('["not for tasks"]')
    (base / "dag" / "run" / "task").mkdir(parents=True)
    (base / "dag" / "run" / "task" / "ok.json").write_text('["customer_1"]')
    assert resolve({"handoff": f"file://{base}/dag/run/task/ok.json", "count": 1}) == ["customer_1"]
    for outside in (
        f"file://{secret}",
        f"file://{base}/dag/run/../../../secret.json",  # inside by prefix, outside once resolved
        f"file://{base}-other/x.json",
        "memory:///handoff/x.json",
        str(secret),
    ):
        with pytest.raises(HandoffError, match="is outside the handoff path"):
            resolve({"handoff": outside, "count": 1})


def test_a_run_id_of_dots_stays_inside_its_dag_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_HANDOFF_PATH", f"file://{tmp_path / 'handoff'}")
    kept = tmp_path / "handoff" / "dag" / "other_run" / "task" / "x.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("[]")
    assert not purge("dag", "..")  # would have been the whole dag folder
    assert kept.exists()


def test_a_lost_handoff_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_HANDOFF_PATH", f"file://{tmp_path}")
    with pytest.raises(HandoffError, match=r"/x\.json is gone"):
        resolve({"handoff": f"file://{tmp_path}/x.json", "count": 3})
    assert resolve({"handoff": "not a reference"}) == {"handoff": "not a reference"}


FIELDS_DAG = """
import datetime as dt
from airflow.sdk import dag, get_current_context, task
from retrain_airflow.handoff import bounded_fields, resolve

@dag(dag_id="handoff_fields", schedule=None, start_date=dt.datetime(2026, 1, 1))
def handoff_fields():
    @task
    def produce(count: int):
        customers = [f"customer_{{i:05d}}" for i in range(count)]
        result = {{"validated": customers, "healthy": customers, "rows": 40 * count}}
        return bounded_fields(result, ("validated", "healthy"), context=get_current_context())

    @task
    def consume(produced):
        customers = [f"customer_{{i:05d}}" for i in range({count})]
        return [resolve(produced[key]) == customers for key in ("validated", "healthy")]

    consume(produce({count}))

handoff_fields()
"""


@pytest.mark.parametrize("count", [10, 600])
def test_a_return_value_stays_under_the_bound_as_a_whole(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_HANDOFF_PATH", f"file://{tmp_path / 'handoff'}")
    customers = [f"customer_{i:05d}" for i in range(count)]
    assert len(json.dumps(customers)) < HANDOFF_LIMIT  # each list fits; at 600 both together do not
    run = load_dag(airflow_db, "handoff_fields", FIELDS_DAG.format(count=count)).test()
    assert run.state == "success"
    produced = run.get_task_instance("produce").xcom_pull(task_ids="produce")
    assert produced["rows"] == 40 * count
    assert run.get_task_instance("consume").xcom_pull(task_ids="consume") == [True, True]
    handed_off = {key for key in ("validated", "healthy") if produced[key] != customers}
    assert handed_off == (set() if count == 10 else {"validated", "healthy"})
    assert max(xcom_sizes("handoff_fields").values()) <= HANDOFF_LIMIT
