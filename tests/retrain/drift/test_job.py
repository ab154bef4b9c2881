"""Drift of a scored partition for real: local Spark with Hive, real adapters and references, MLflow."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from retrain.demo.corpus import customer_profiles, shifted
from retrain.drift.history import DriftHistory
from retrain.drift.job import DriftError, MissingScoresError, drift_partition
from retrain.drift.metrics import METRICS, Thresholds
from retrain.drift.reference import REFERENCE_FILE
from retrain.release.store import ReleaseStore
from retrain.scoring.job import score_partition

DAY, EMPTY_DAY = "2026-11-02", "2026-11-03"
# The seeded customers have 20 examples, so 4 holdout rows: trusted here only to exercise the job.
LENIENT = Thresholds(min_rows=10, min_reference_rows=1)


def plant_requests(spark: Any) -> None:
    """30 requests each of acme_air (its vocabulary replaced) and globex_bank (as usual) on ``DAY``."""
    profiles = {p.customer_id: p for p in customer_profiles(2)}
    live = {"acme_air": shifted(profiles["acme_air"], "vocabulary"), "globex_bank": profiles["globex_bank"]}
    rng = random.Random(3)
    rows = [(f"{c}-{n}", c, profile.sample(rng).text, DAY) for c, profile in live.items() for n in range(30)]
    spark.createDataFrame(rows, ["request_id", "customer_id", "text", "ds"]).write.insertInto("requests")


def scored_day(spark: Any, store: ReleaseStore, release_id: str, tmp_path: Path) -> Path:
    """``DAY``'s planted requests scored; returns the release cache scoring filled."""
    plant_requests(spark)
    cache = tmp_path / "cache"
    score_partition(
        spark,
        store,
        release_id=release_id,
        input_table="requests",
        ds=DAY,
        output_table="scores",
        workdir=cache,
    )
    return cache


def drift_rows(spark: Any, ds: str) -> dict[tuple[str, str], tuple[Any, str]]:
    rows = spark.sql(f"SELECT customer, metric, value, status FROM drift WHERE ds = '{ds}'").collect()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


@pytest.mark.slow
def test_a_planted_shift_is_flagged_recorded_and_a_rerun_replaces_the_day(
    released: tuple[Any, ReleaseStore, str], tmp_path: Path
) -> None:
    spark, store, release_id = released
    cache = scored_day(spark, store, release_id, tmp_path)
    history = DriftHistory(store.tracking_uri)
    report = drift_partition(
        spark, store, release_id=release_id, ds=DAY, workdir=cache, thresholds=LENIENT, history=history
    )
    rows = drift_rows(spark, DAY)
    assert sorted(rows) == sorted((c, m) for c in ("acme_air", "globex_bank") for m in METRICS)
    assert rows[("acme_air", "novelty_psi")][1] == "drift"
    novelty = dict(
        spark.sql(
            f"SELECT customer_id, avg(novelty) FROM scores WHERE ds = '{DAY}' GROUP BY customer_id"
        ).collect()
    )
    assert novelty["acme_air"] > 3 * novelty["globex_bank"]  # its new product names: unseen tokens
    assert "acme_air" in report.drifting
    assert report.rows == 60
    assert "DRIFT acme_air: " in report.summary()
    recorded = history.day(DAY)
    assert recorded is not None
    assert {(r.customer, r.metric): r.status for r in recorded.rows} == {k: v[1] for k, v in rows.items()}

    drift_partition(spark, store, release_id=release_id, ds=DAY, workdir=cache, thresholds=LENIENT)
    assert len(drift_rows(spark, DAY)) == len(rows)  # replaced, not appended
    assert len(spark.sql(f"SHOW PARTITIONS drift PARTITION (ds='{DAY}')").collect()) == 1


@pytest.mark.slow
def test_missing_and_corrupt_references_an_empty_day_and_a_gone_release(
    released: tuple[Any, ReleaseStore, str], tmp_path: Path
) -> None:
    spark, store, release_id = released
    cache = scored_day(spark, store, release_id, tmp_path)
    adapters = next(cache.rglob("adapters"))  # the release cache scoring filled
    (adapters / "acme_air" / "artifacts" / "adapter" / REFERENCE_FILE).write_text('{"format": 1, "rows": ')
    (adapters / "globex_bank" / "artifacts" / "adapter" / REFERENCE_FILE).unlink()
    report = drift_partition(spark, store, release_id=release_id, ds=DAY, workdir=cache, thresholds=LENIENT)
    assert f"acme_air/artifacts/adapter/{REFERENCE_FILE} is unreadable" in report.no_reference["acme_air"]
    assert f"no {REFERENCE_FILE}" in report.no_reference["globex_bank"]
    statuses = {
        status
        for (_, metric), (_, status) in drift_rows(spark, DAY).items()
        if metric.endswith(("psi", "js"))
    }
    assert statuses == {"no_reference"}

    spark.sql(f"ALTER TABLE scores ADD PARTITION (ds='{EMPTY_DAY}', release='{release_id}')")
    empty = drift_partition(spark, store, release_id=release_id, ds=EMPTY_DAY, workdir=cache)
    assert empty.rows == 0
    assert sorted(empty.insufficient) == ["acme_air", "globex_bank"]
    assert not empty.drifting

    with pytest.raises(MissingScoresError, match=r"no partition ds=2026-11-04"):
        drift_partition(spark, store, release_id=release_id, ds="2026-11-04", workdir=cache)
    gone = "0" * 32
    spark.sql(f"ALTER TABLE scores ADD PARTITION (ds='2026-11-05', release='{gone}')")
    with pytest.raises(
        DriftError, match=f"scored with release {gone}, which the release store does not have"
    ):
        drift_partition(spark, store, release_id=gone, ds="2026-11-05", workdir=tmp_path / "other")
    assert not spark.sql("SHOW PARTITIONS drift PARTITION (ds='2026-11-05')").collect()  # nothing written
