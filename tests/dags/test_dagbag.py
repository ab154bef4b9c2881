"""The DAG folder parses with no import errors and each DAG has the expected task graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_retrain_on_commit_is_scheduled_by_the_dolt_watcher(dagbag: DagBag) -> None:
    dag = dagbag.dags.get("retrain_on_commit")
    assert dag is not None
    assert dag.task_dict["changed_customers"].downstream_task_ids == {"validate"}
    assert dag.task_dict["validate"].downstream_task_ids == {"train"}
    assert dag.task_dict["train"].downstream_task_ids == {"release"}
    assert dag.task_dict["release"].downstream_task_ids == {"advance_watermark"}
    assert dag.task_dict["validate"].quarantine is True
    assert dag.max_active_runs == 1
    (asset,) = dag.timetable.asset_condition.objects
    assert [w.trigger.serialize()[0] for w in asset.watchers] == [
        "retrain_airflow.triggers.dolt.DoltCommitTrigger"
    ]
    assert dag.doc_md
    assert "watermark" in dag.doc_md
