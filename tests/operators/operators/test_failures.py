"""The suite's errors in Airflow's terms, in real task instances (``dag.test()``): an error that
trying again cannot fix fails the task at its first try, with the same message; one that can
(a service that did not answer) goes through the task's retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ...retrain.sockets import closed_port
from ..dag_files import load_dag

RETRIES = 2
DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.dolt import DoltAdvanceWatermarkOperator

with DAG(
    "{dag_id}",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    default_args={{"retries": {retries}, "retry_delay": dt.timedelta(0)}},
) as dag:
    DoltAdvanceWatermarkOperator(task_id="advance", commit="main", consumer={consumer!r})
"""


def advance(home: Path, dag_id: str, consumer: str) -> Any:
    """Run the one-task DAG; its task instance once the run is over."""
    dag = load_dag(home, dag_id, DAG_SOURCE.format(dag_id=dag_id, retries=RETRIES, consumer=consumer))
    run = dag.test()
    assert run.state == "failed"
    return run.get_task_instance("advance")


def test_an_error_retrying_cannot_fix_fails_at_the_first_try(
    airflow_db: Path, dolt_conn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    ti = advance(airflow_db, "fails_fast_bad_input", consumer="not a branch")
    assert (ti.state, ti.try_number) == ("failed", 1)  # RETRIES left unused
    message = "invalid branch name 'not a branch': use letters, digits, '.', '_', '-' and '/' separators"
    logged = "".join(capfd.readouterr())  # the task's log, as dag.test() prints it
    assert f"AirflowFailException: {message}\n" in logged


def test_a_service_that_did_not_answer_is_left_to_the_retries(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = {"conn_type": "dolt", "host": "127.0.0.1", "port": closed_port(), "extra": {"timeout": 1}}
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_DEFAULT", json.dumps(server))
    ti = advance(airflow_db, "retried_unreachable", consumer="retrain_on_commit")
    assert (ti.state, ti.try_number) == ("failed", RETRIES + 1)


def test_every_operator_of_the_provider_tells_airflow_which_errors_to_retry() -> None:
    """Each operator and sensor the provider info lists runs ``execute`` (and the training operator,
    which defers, ``execute_complete``) through :func:`~retrain_airflow.operators.failures.fails_fast`."""
    import importlib
    import inspect

    from airflow.sdk import BaseOperator

    from retrain_airflow.get_provider_info import get_provider_info
    from retrain_airflow.operators.failures import fails_fast
    from retrain_airflow.operators.training import AdapterTrainingOperator

    def wrapped_by_fails_fast(method: Any) -> bool:
        while method is not None:
            if method.__code__ is fails_fast(print).__code__:
                return True
            method = getattr(method, "__wrapped__", None)
        return False

    listed = [
        m
        for group in ("operators", "sensors")
        for e in get_provider_info()[group]
        for m in e["python-modules"]
    ]
    found = {
        name: wrapped_by_fails_fast(cls.execute)
        for module in map(importlib.import_module, listed)
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseOperator) and cls.__module__ == module.__name__ and "execute" in vars(cls)
    }
    assert found == dict.fromkeys(
        [
            "AdapterTrainingOperator",
            "BuildReleaseOperator",
            "DoltAdvanceWatermarkOperator",
            "DoltCommitSensor",
            "DoltValidateOperator",
            "DriftOperator",
            "DriftRetrainingOperator",
            "HiveScoringOperator",
            "PinReleaseOperator",
            "ResolveReleaseOperator",
            "RetroTestReportOperator",
            "RollbackReleaseOperator",
            "ServingCheckOperator",
        ],
        True,
    )
    assert wrapped_by_fails_fast(AdapterTrainingOperator.execute_complete)
