"""DoltCommitSensor and DoltAdvanceWatermarkOperator in real ``dag.test()`` runs.

``dag.test()`` runs deferred triggers in-process, so the deferral path is exercised for real.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import CommitWatermark

from ..dag_files import load_dag

DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG, task
from retrain_airflow.operators.dolt import DoltAdvanceWatermarkOperator
from retrain_airflow.sensors.dolt import DoltCommitSensor

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    sense = DoltCommitSensor(
        task_id="sense", table="examples", key_column="customer_id", poll_interval=0.5, timeout=60
    )

    @task
    def work(commit_range: dict) -> None:
        if {fail}:
            raise RuntimeError("training failed")

    advance = DoltAdvanceWatermarkOperator(
        task_id="advance", commit="{{{{ ti.xcom_pull(task_ids='sense')['commit'] }}}}"
    )
    work(sense.output) >> advance
"""


def dag_with(home: Path, dag_id: str, fail: bool = False) -> Any:
    return load_dag(home, dag_id, DAG_SOURCE.format(dag_id=dag_id, fail=fail))


def commit_later(path: Path, delay: float) -> threading.Thread:
    def commit() -> None:
        time.sleep(delay)
        with DoltRepository.open(str(path)) as repo:
            repo.execute(Statement("UPDATE examples SET text = 'later' WHERE customer_id = 'acme_air'"))
            repo.commit("a later commit")

    thread = threading.Thread(target=commit)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn")
def test_first_run_then_deferred_run_advance_the_watermark(
    airflow_db: Path, seeded: SeededRepository
) -> None:
    dag = dag_with(airflow_db, "sensing_ok")
    assert dag.test().state == "success"
    with DoltRepository.open(str(seeded.path)) as repo:
        assert CommitWatermark(repo, "sensing_ok").done() == seeded.commits[-1]

    writer = commit_later(seeded.path, delay=3)
    started = time.monotonic()
    run = dag.test()  # nothing new yet: the sensor defers until the commit lands
    writer.join()
    assert run.state == "success"
    assert time.monotonic() - started >= 3
    sensed = run.get_task_instance("sense").xcom_pull(task_ids="sense")
    assert sensed["changed_keys"] == ["acme_air"]
    assert sensed["previous_commit"] == seeded.commits[-1]
    with DoltRepository.open(str(seeded.path)) as repo:
        assert CommitWatermark(repo, "sensing_ok").done() == repo.head() == sensed["commit"]


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn")
def test_failed_run_leaves_the_watermark(airflow_db: Path, seeded: SeededRepository) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        CommitWatermark(repo, "sensing_fails").advance(seeded.commits[0])
    run = dag_with(airflow_db, "sensing_fails", fail=True).test()
    assert run.state == "failed"
    with DoltRepository.open(str(seeded.path)) as repo:
        watermark = CommitWatermark(repo, "sensing_fails")
        assert watermark.done() == seeded.commits[0]
        assert watermark.sensed() == seeded.commits[1]


HELD_DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG, task
from retrain_airflow.operators.dolt import DoltAdvanceWatermarkOperator

with DAG("watermark_held", schedule=None, start_date=dt.datetime(2026, 1, 1),
         render_template_as_native_obj=True) as dag:
    @task
    def train() -> dict:
        return {"failed": {"globex_bank": "RuntimeError: worker crashed"}}  # a partial release went out

    train() >> DoltAdvanceWatermarkOperator(
        task_id="advance", commit="main", held_by="{{ ti.xcom_pull(task_ids='train')['failed'] }}"
    )
"""


@pytest.mark.usefixtures("dolt_conn")
def test_customers_that_did_not_finish_hold_the_watermark(airflow_db: Path, seeded: SeededRepository) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        CommitWatermark(repo, "watermark_held").advance(seeded.commits[0])
    run = load_dag(airflow_db, "watermark_held", HELD_DAG_SOURCE).test()
    assert run.state == "success"
    assert run.get_task_instance("advance").state == "skipped"
    with DoltRepository.open(str(seeded.path)) as repo:
        assert CommitWatermark(repo, "watermark_held").done() == seeded.commits[0]
