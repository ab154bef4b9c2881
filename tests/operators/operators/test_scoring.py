"""HiveScoringOperator in a real ``dag.test()`` run: local Spark with Hive, real adapters and MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retrain.release.store import ReleaseStore

from ...retrain.scoring.test_job import DS, partition_rows, released  # noqa: F401 - the fixture
from ..dag_files import load_dag


@pytest.mark.slow
def test_scores_a_partition_from_a_dag_run(
    released: tuple[Any, ReleaseStore, str],  # noqa: F811
    tmp_path: Path,
    airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spark, store, release_id = released
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    source = f"""
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.scoring import HiveScoringOperator

with DAG("score_hive", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    HiveScoringOperator(task_id="score", release_id={release_id!r}, input_table="requests", ds={DS!r},
                        output_table="scores", warehouse={str(tmp_path / "warehouse")!r},
                        workdir={str(tmp_path / "cache")!r})
"""
    run = load_dag(airflow_db, "score_hive", source).test()
    assert run.state == "success"
    result = run.get_task_instance("score").xcom_pull(task_ids="score")
    assert result["customers_scored"] == {"acme_air": 5, "globex_bank": 5}
    assert result["missing_customers"] == {"initech_saas": 5}
    assert len(partition_rows(spark, release_id)) == 10
