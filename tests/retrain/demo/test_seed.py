"""Seeding the demo's Dolt repository and Hive warehouse (real doltlite, real local Spark + Derby)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from retrain.demo.seed import SeededRepository, seed_training_repo, seed_warehouse
from retrain.dolt import DoltRepository


def test_two_commits_and_two_changed_customers(repo: DoltRepository, seeded: SeededRepository) -> None:
    assert len(seeded.commits) == 2
    assert repo.changed_keys("examples", "customer_id", *seeded.commits).keys == set(
        seeded.changed_in_last_commit
    )
    assert len(seeded.changed_in_last_commit) == 2
    data = repo.read_table("examples", "main")
    assert data["example_id"].is_unique
    assert len(data) == seeded.rows


def test_force_recreates_identically(seeded: SeededRepository) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        before = repo.read_table("examples", "main")
    again = seed_training_repo(seeded.path, customers=4, examples=20, force=True)
    with DoltRepository.open(str(again.path)) as repo:
        after = repo.read_table("examples", "main")
    assert after.equals(before)
    assert again.changed_in_last_commit == seeded.changed_in_last_commit


def test_warehouse_has_daily_partitions_and_reseeding_is_idempotent(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    seeded = seed_warehouse(warehouse, customers=2, start=dt.date(2026, 11, 1), days=2, rows_per_customer=5)
    assert seeded.request_days == ["2026-11-01", "2026-11-02"]
    assert seeded.history_days == ["2026-10-30", "2026-10-31"]
    seed_warehouse(warehouse, customers=2, start=dt.date(2026, 11, 1), days=2, rows_per_customer=5)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    partitions = [r[0] for r in spark.sql("SHOW PARTITIONS requests").collect()]
    assert partitions == ["ds=2026-11-01", "ds=2026-11-02"]
    counts = {
        r["ds"]: r["n"] for r in spark.sql("SELECT ds, count(*) AS n FROM requests GROUP BY ds").collect()
    }
    assert counts == {"2026-11-01": 10, "2026-11-02": 10}  # re-seeding overwrote, did not append
    history = spark.table("labelled_history")
    assert set(history.columns) == {"request_id", "customer_id", "text", "label", "ds"}
    assert {r["label"] for r in history.select("label").distinct().collect()} <= {"urgent", "routine"}
    assert history.select("request_id").distinct().count() == history.count() == 20


def test_a_single_customer_still_gets_two_commits(tmp_path: Path) -> None:
    seeded = seed_training_repo(tmp_path / "one.db", customers=1, examples=20)
    assert len(seeded.commits) == 2
    assert seeded.changed_in_last_commit == ["acme_air"]
