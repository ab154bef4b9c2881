"""partner_retro_test over 3 days (as a backfill runs it), then score_daily: real Spark, Hive, MLflow."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrain.demo.seed import seed_warehouse
from retrain.release.store import ReleaseStore

from ..operators.dag_files import load_dag
from ..retrain.scoring.test_job import DS

DAGS = Path(__file__).resolve().parents[2] / "dags"
HISTORY_DAYS = [dt.date(2026, 10, 29), dt.date(2026, 10, 30), dt.date(2026, 10, 31)]


def no_retries(dag: Any) -> None:
    """dag.test() waits out retry delays; a failure here should fail the test at once."""
    for task in dag.tasks:
        task.retries = 0


@pytest.mark.slow
def test_three_days_write_three_partitions_and_a_report_with_plots(
    released: tuple[Any, ReleaseStore, str],
    airflow_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spark, store, release_id = released
    start = dt.date(2026, 11, 1)
    seed_warehouse(tmp_path / "warehouse", customers=3, start=start, days=3, rows_per_customer=5)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_SCORING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_WAREHOUSE", str(tmp_path / "warehouse"))
    dag = load_dag(airflow_db, "partner_retro_test", (DAGS / "partner_retro_test.py").read_text())
    no_retries(dag)
    for day in HISTORY_DAYS:
        run = dag.test(
            logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC),
            run_conf={"customer": "acme_air", "release": release_id},
        )
        assert run.state == "success", day
    partitions = {r[0] for r in spark.sql("SHOW PARTITIONS retro_scores").collect()}
    assert partitions == {f"ds={day}/release={release_id}" for day in HISTORY_DAYS}
    scored = spark.table("retro_scores").toPandas()
    assert set(scored["customer_id"]) == {"acme_air"}  # only the partner's rows
    assert scored.groupby("ds").size().tolist() == [5, 5, 5]

    report = tmp_path / "reports" / "retro" / "acme_air"
    metrics = pd.read_csv(report / "metrics.csv")
    assert metrics["ds"].tolist() == [str(day) for day in HISTORY_DAYS]
    assert (metrics["labelled"] == 5).all()
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == ["daily_metrics.png", "score_distribution.png"]
    assert 'src="daily_metrics.png"' in (report / "index.html").read_text()
    spark.sql("DROP TABLE IF EXISTS retro_scores")

    # score_daily scores a day with the release pinned to it (else the one in production that day:
    # none, since this release was registered today, not on DS).
    store.pin(release_id, dt.date.fromisoformat(DS), dt.date.fromisoformat(DS))
    daily = load_dag(airflow_db, "score_daily", (DAGS / "score_daily.py").read_text())
    no_retries(daily)
    run = daily.test(logical_date=dt.datetime.fromisoformat(DS).replace(tzinfo=dt.UTC))
    assert run.state == "success"
    picked = run.get_task_instance("release_for_day").xcom_pull(task_ids="release_for_day")
    assert picked["release_id"] == release_id
    assert run.get_task_instance("score").xcom_pull(task_ids="score")["customers_scored"] == {
        "acme_air": 5,
        "globex_bank": 5,
    }
