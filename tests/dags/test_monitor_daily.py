"""score_daily's event, then monitor_daily in real dag.test() runs: Spark, Hive, MLflow, doltlite."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.cli.cli_parser import get_parser
from airflow.models.asset import AssetEvent, AssetModel, AssetPartitionDagRun
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import seed_training_repo, seed_warehouse
from retrain.dolt import DoltRepository
from retrain.drift.history import DriftHistory
from retrain.release.build import promote_all
from retrain.release.store import ReleaseStore

from ..operators.dag_files import load_dag
from .test_partner_retro_test import DAGS, no_retries

DS = "2026-11-01"


def asset_events(name: str) -> list[Any]:
    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        events = session.scalars(query.where(AssetModel.name == name).order_by(AssetEvent.id)).all()
        session.expunge_all()
        return list(events)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Could not import graphviz:UserWarning")  # Airflow's `dags` CLI module
def test_a_scored_day_is_measured_and_drifting_customers_with_new_rows_retrained(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # Adapters of acme_air and globex_bank trained on the first commit; the second adds rows for
    # globex_bank (seed_training_repo), so only it can be retrained. 150 examples: holdouts of ~30,
    # enough for a trusted reference. initech_saas has requests but no adapter.
    seeded = seed_training_repo(tmp_path / "training.db", customers=4, examples=150)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    with DoltRepository.open(str(seeded.path)) as repo:
        trained = {
            customer: train_and_register(
                repo,
                table="examples",
                commit=seeded.commits[0],
                customer=customer,
                mlflow_uri=uri,
                params=TrainingParams(epochs=1, min_examples=10),
            ).version
            for customer in ("acme_air", "globex_bank")
        }
    release_id = promote_all(store, trained, floor=None).event.release_id
    day = dt.date.fromisoformat(DS)
    store.pin(release_id, day, day)
    seed_warehouse(tmp_path / "warehouse", customers=3, start=day, days=1, rows_per_customer=30)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOLT_DEFAULT", json.dumps({"conn_type": "dolt", "extra": {"path": str(seeded.path)}})
    )
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_SCORING_CACHE", str(tmp_path / "cache"))
    load_dag(airflow_db, "retrain_scheduled", (DAGS / "retrain_scheduled.py").read_text())
    monitor = load_dag(airflow_db, "monitor_daily", (DAGS / "monitor_daily.py").read_text())
    daily = load_dag(airflow_db, "score_daily", (DAGS / "score_daily.py").read_text())
    for dag in (monitor, daily):
        no_retries(dag)
    # As an operator deploys it: monitor_daily unpaused, so score_daily's event queues its day's run.
    for argv in (["dags", "reserialize"], ["dags", "unpause", "monitor_daily"]):
        args = get_parser().parse_args(argv)
        args.func(args)

    scored = daily.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    assert scored.state == "success"
    event = asset_events("scores")[-1]
    assert (event.partition_key, event.extra) == (
        DS,
        {"ds": DS, "release_id": release_id, "output_table": "scores"},
    )
    with create_session() as session:  # what the scheduler turns into a monitor_daily run for the day
        queued = session.scalars(
            select(AssetPartitionDagRun.partition_key).where(
                AssetPartitionDagRun.target_dag_id == "monitor_daily"
            )
        ).all()
    assert DS in queued

    # The scheduler's run takes the day from the event; a manual run names it.
    thresholds = {"min_rows": 10, "customers": {c: {"score_js": 1e-6} for c in ("acme_air", "globex_bank")}}
    conf = {"ds": DS, "release": release_id, "thresholds": thresholds, "retrain_drifting": True}
    capfd.readouterr()
    run = monitor.test(run_conf=conf)
    assert run.state == "success"
    logged = "".join(capfd.readouterr())
    measured = run.get_task_instance("measure_drift").xcom_pull(task_ids="measure_drift")
    assert sorted(measured["drifting"]) == ["acme_air", "globex_bank"]
    for customer, metrics in measured["drifting"].items():
        (score_js,) = [m for m in metrics if m["metric"] == "score_js"]
        assert f"drifting customer {customer}: " in logged
        assert f"score_js={score_js['value']:.3f} (threshold 1e-06)" in logged
    assert asset_events("drift")[-1].extra == {
        "ds": DS,
        "release_id": release_id,
        "drifting": ["acme_air", "globex_bank"],
        "count": 2,
    }
    plan = run.get_task_instance("plan_retraining").xcom_pull(task_ids="plan_retraining")
    assert plan == {"customers": ["globex_bank"], "commit": seeded.commits[-1], "need_labels": ["acme_air"]}
    needs_labels = "customer acme_air drifts, but examples has no new rows for it since its adapter's commit"
    assert f"{needs_labels} {seeded.commits[0]}: new labels are needed" in logged
    assert run.get_task_instance("retrain").state == "success"
    (retraining,) = DagRun.find(dag_id="retrain_scheduled")
    assert retraining.conf == {"customers": ["globex_bank"]}
    day_record = DriftHistory(uri).day(DS)
    assert day_record is not None
    assert {r.customer for r in day_record.rows} == {"acme_air", "globex_bank"}

    # The default settings, spelled out (in one process, dag.test() keeps a run's params for the
    # next): 30 rows a customer is too few to be trusted (min_rows 100), so nobody drifts, nothing
    # is retrained, and the day's drift partition is replaced.
    quiet = monitor.test(
        run_conf={"ds": DS, "release": release_id, "thresholds": {}, "retrain_drifting": False}
    )
    assert quiet.state == "success"
    assert quiet.get_task_instance("measure_drift").xcom_pull(task_ids="measure_drift")["insufficient"] == [
        "acme_air",
        "globex_bank",
    ]
    assert (quiet.get_task_instance("plan_retraining").state, quiet.get_task_instance("retrain").state) == (
        "skipped",
        "skipped",
    )
    assert len(DagRun.find(dag_id="retrain_scheduled")) == 1
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    statuses = {r[0] for r in spark.sql(f"SELECT DISTINCT status FROM drift WHERE ds = '{DS}'").collect()}
    assert "drift" not in statuses
    for table in ("drift", "scores", "requests", "labelled_history"):
        spark.sql(f"DROP TABLE IF EXISTS {table}")
