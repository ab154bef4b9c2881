"""HiveScoringOperator in a real ``dag.test()`` run: local Spark with Hive, real adapters and MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrain.release.store import ReleaseStore

from ...retrain.scoring.test_job import DS, partition_rows
from ..dag_files import load_dag


@pytest.mark.slow
def test_scores_a_partition_from_a_dag_run(
    released: tuple[Any, ReleaseStore, str],
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


@pytest.mark.slow
def test_spark_submit_runs_the_job_in_its_own_driver(
    release: tuple[ReleaseStore, str],
    tmp_path: Path,
    airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, release_id = release
    # Its own warehouse: an embedded Derby metastore admits one JVM, and this process may hold another.
    warehouse = tmp_path / "submitted-warehouse"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "retrain.cli",
            "demo-data",
            "--repo",
            str(tmp_path / "unused.db"),
            "--warehouse",
            str(warehouse),
            "--customers",
            "3",
            "--days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_LOCAL", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    source = f"""
import datetime as dt, sys
from airflow.sdk import DAG
from retrain_airflow.operators.scoring import HiveScoringOperator

with DAG("score_submitted", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    HiveScoringOperator(task_id="score", release_id={release_id!r}, input_table="requests", ds={DS!r},
                        output_table="scores", spark_conn_id="spark_local",
                        spark_conf={{"spark.sql.shuffle.partitions": "2"}},
                        warehouse={str(warehouse)!r}, workdir={str(tmp_path / "cache")!r},
                        env_vars={{"PYSPARK_PYTHON": sys.executable}})
"""
    run = load_dag(airflow_db, "score_submitted", source).test()
    assert run.state == "success"
    result = run.get_task_instance("score").xcom_pull(task_ids="score")
    assert result["customers_scored"] == {"acme_air": 20, "globex_bank": 20}
    assert result["missing_customers"] == {"initech_saas": 20}
    (attempt,) = (warehouse / "scores" / f"ds={DS}" / f"release={release_id}").glob("attempt-*")
    written = pd.read_parquet(attempt)
    assert len(written) == 40
    assert written["score"].between(0, 1).all()
