"""The DAG folder parses with no import errors and each DAG has the expected task graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError

from retrain.identifiers import CUSTOMER_ID_RULE, is_customer_id
from retrain_airflow.handoff import purge_on_success

DAGS = Path(__file__).resolve().parents[2] / "dags"
PIPELINE = {"validate": {"train"}, "train": {"release"}, "release": {"score_today"}}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def downstream(dag: Any) -> dict[str, set[str]]:
    return {task_id: set(task.downstream_task_ids) for task_id, task in dag.task_dict.items()}


def test_no_import_errors_and_every_dag_documented(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "retrain_on_commit",
        "retrain_scheduled",
        "score_daily",
        "partner_retro_test",
        "monitor_daily",
    }
    for dag in dagbag.dags.values():
        assert dag.doc_md, dag.dag_id
        assert "retrain" in dag.tags, dag.dag_id
        assert all(task.owner == "ml-platform" for task in dag.tasks), dag.dag_id
        assert all(task.retries >= 1 for task in dag.tasks), dag.dag_id
        assert dag.on_success_callback is purge_on_success, dag.dag_id  # its handed-off files go with it


def test_retrain_on_commit_is_scheduled_by_the_dolt_watcher(dagbag: DagBag) -> None:
    dag = dagbag.dags["retrain_on_commit"]
    assert downstream(dag) == {
        "changed_customers": {"validate"},
        **PIPELINE,
        "score_today": {"advance_watermark"},
        "advance_watermark": set(),
    }
    assert dag.task_dict["validate"].quarantine is True
    assert dag.task_dict["score_today"].if_missing == "skip"
    assert dag.task_dict["advance_watermark"].trigger_rule == "none_failed"
    assert dag.max_active_runs == 1
    (asset,) = dag.timetable.asset_condition.objects
    assert [w.trigger.serialize()[0] for w in asset.watchers] == [
        "retrain_airflow.triggers.dolt.DoltCommitTrigger"
    ]
    assert "watermark" in dag.doc_md


def test_retrain_scheduled_runs_the_same_pipeline_on_the_head(dagbag: DagBag) -> None:
    dag = dagbag.dags["retrain_scheduled"]
    assert downstream(dag) == {"head_commit": {"validate"}, **PIPELINE, "score_today": set()}
    assert dag.schedule == "@weekly"
    assert dag.params["customers"] is None  # every customer unless a run asks for some
    with pytest.raises(ParamValidationError):
        dag.params.get_param("customers").resolve(["acme_air", "x; DROP TABLE y"])
    assert dag.params["pack_size"] is None  # the suite picks it from memory
    assert dag.params.get_param("pack_size").resolve(32) == 32
    for bad in (0, "32", 1.5):
        with pytest.raises(ParamValidationError):
            dag.params.get_param("pack_size").resolve(bad)
    assert dag.task_dict["train"].pack_size == "{{ params.pack_size }}"
    assert "advance_watermark" not in dag.task_dict


def test_score_daily_picks_the_days_release_and_scores(dagbag: DagBag) -> None:
    dag = dagbag.dags["score_daily"]
    assert downstream(dag) == {"release_for_day": {"score"}, "score": set()}
    assert dag.task_dict["release_for_day"].task_type == "ResolveReleaseOperator"
    assert dag.task_dict["score"].ds == "{{ ds }}"
    assert (dag.params["input_table"], dag.params["output_table"]) == ("requests", "scores")
    assert [outlet.name for outlet in dag.task_dict["score"].outlets] == ["scores"]  # monitor_daily's events
    assert dag.catchup is False  # backfilled on request, not on deploy


def test_partner_retro_test_validates_its_params(dagbag: DagBag) -> None:
    dag = dagbag.dags["partner_retro_test"]
    assert downstream(dag) == {
        "release_for_day": {"score_history"},
        "score_history": {"report"},
        "report": set(),
    }
    assert dag.params["release"] == "as-of"
    assert dag.params.get_param("release").resolve("0" * 32) == "0" * 32
    with pytest.raises(ParamValidationError, match="is not valid under any of the given schemas"):
        dag.params.get_param("release").resolve("not-a-release")
    bad_values = {"customer": "acme; DROP TABLE x", "output_table": "a-b", "history_table": "x" * 65}
    for name, bad in bad_values.items():
        with pytest.raises(ParamValidationError, match="does not match"):
            dag.params.get_param(name).resolve(bad)


def test_monitor_daily_runs_once_per_scored_partition(dagbag: DagBag) -> None:
    dag = dagbag.dags["monitor_daily"]
    assert downstream(dag) == {
        "scored_partition": {"measure_drift"},
        "measure_drift": {"plan_retraining"},
        "plan_retraining": {"retrain"},
        "retrain": set(),
    }
    assert type(dag.timetable).__name__ == "PartitionedAssetTimetable"
    assert dag.timetable.asset_condition.name == "scores"
    assert [outlet.name for outlet in dag.task_dict["measure_drift"].outlets] == ["drift"]
    assert dag.task_dict["retrain"].trigger_dag_id == "retrain_scheduled"
    assert (dag.params["thresholds"], dag.params["retrain_drifting"]) == ({}, False)
    for name, bad in {
        "release": "HEAD",
        "ds": "yesterday",
        "scores_table": "a-b",
        "retrain_drifting": "yes",
    }.items():
        with pytest.raises(ParamValidationError):
            dag.params.get_param(name).resolve(bad)


def test_customer_params_follow_the_tasks_identifier_rule(dagbag: DagBag) -> None:
    """A DAG param takes what the tasks take (retrain.identifiers), so a run is never refused
    inside a task for an id its trigger form accepted."""
    customers = dagbag.dags["retrain_scheduled"].params.get_param("customers")
    partner = dagbag.dags["partner_retro_test"].params.get_param("customer")
    for value in ("-acme", ".acme", "a" * 129, "acme air"):
        assert not is_customer_id(value)
        with pytest.raises(ParamValidationError, match="does not match"):
            partner.resolve(value)
        with pytest.raises(ParamValidationError, match="does not match"):
            customers.resolve([value])
    for value in ("acme_air", "a", "A1.b-c", "a" * 128):
        assert is_customer_id(value)
        assert partner.resolve(value) == value
        assert customers.resolve([value]) == [value]
    assert CUSTOMER_ID_RULE in partner.description
