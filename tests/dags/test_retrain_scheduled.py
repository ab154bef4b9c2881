"""retrain_scheduled triggered for one customer: the shared pipeline in a real dag.test() run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrain.demo.seed import SeededRepository, seed_warehouse
from retrain.release.store import ReleaseStore

from ..operators.dag_files import load_dag
from .test_partner_retro_test import DAGS, no_retries


@pytest.mark.slow
def test_a_manual_run_retrains_only_the_customers_asked_for(
    seeded: SeededRepository, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    dolt = {"conn_type": "dolt", "extra": {"path": str(seeded.path)}}
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_DEFAULT", json.dumps(dolt))
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_DATA_DOCS_DIR", str(tmp_path / "docs"))
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_WAREHOUSE", str(tmp_path / "warehouse"))
    # Requests exist, but not for today's date: scoring skips, the run still succeeds.
    start = dt.date(2026, 11, 1)
    seed_warehouse(tmp_path / "warehouse", customers=2, start=start, days=1, rows_per_customer=2)
    dag = load_dag(airflow_db, "retrain_scheduled", (DAGS / "retrain_scheduled.py").read_text())
    no_retries(dag)
    run = dag.test(run_conf={"customers": ["acme_air"]})
    assert run.state == "success"
    assert run.get_task_instance("score_today").state == "skipped"
    head = run.get_task_instance("head_commit").xcom_pull(task_ids="head_commit")
    assert head == {"commit": seeded.commits[-1], "changed_keys": ["acme_air"]}
    client = MlflowClient(uri)
    assert [m.name for m in client.search_registered_models()] == ["adapter-acme_air"]
    release = ReleaseStore(client, uri).latest()
    assert release is not None
    assert release.adapter_count == 1
