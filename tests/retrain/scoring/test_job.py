"""Scoring a Hive partition for real: local Spark with Hive support, real adapters, a real MLflow store."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository, seed_warehouse
from retrain.dolt import DoltRepository
from retrain.release.build import promote_all
from retrain.release.store import ReleaseStore
from retrain.scoring.job import ScoringError, score_partition
from retrain.scoring.reference import ReferenceMismatchError, check_reference

DS = "2026-11-01"


@pytest.fixture
def release(repo: DoltRepository, seeded: SeededRepository, tmp_path: Path) -> tuple[ReleaseStore, str]:
    """A release of acme_air and globex_bank (the warehouse also has initech_saas, without adapter)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    trained = {
        customer: train_and_register(
            repo,
            table="examples",
            commit="main",
            customer=customer,
            mlflow_uri=uri,
            params=TrainingParams(epochs=1, min_examples=10),
        ).version
        for customer in ("acme_air", "globex_bank")
    }
    return store, promote_all(store, trained, floor=None).event.release_id


@pytest.fixture
def released(release: tuple[ReleaseStore, str], tmp_path: Path) -> Iterator[tuple[Any, ReleaseStore, str]]:
    """The release, and this process's Spark session over a warehouse with requests of 3 customers."""
    store, release_id = release
    seed_warehouse(
        tmp_path / "warehouse", customers=3, start=dt.date(2026, 11, 1), days=1, rows_per_customer=5
    )
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    yield spark, store, release_id
    spark.sql("DROP TABLE IF EXISTS scores")
    spark.sql("DROP TABLE IF EXISTS requests")
    spark.sql("DROP TABLE IF EXISTS labelled_history")


def score(spark: Any, store: ReleaseStore, release_id: str, workdir: Path, **overrides: Any) -> Any:
    arguments = {"input_table": "requests", "ds": DS, "output_table": "scores", **overrides}
    return score_partition(spark, store, release_id=release_id, workdir=workdir, **arguments)


def partition_rows(spark: Any, release_id: str) -> list[tuple[str, str, float]]:
    rows = spark.sql(
        f"SELECT request_id, customer_id, score FROM scores WHERE ds = '{DS}' AND release = '{release_id}'"
    )
    return sorted((r[0], r[1], r[2]) for r in rows.collect())


@pytest.mark.slow
def test_scores_a_partition_reports_missing_customers_and_reruns_cleanly(
    released: tuple[Any, ReleaseStore, str], tmp_path: Path
) -> None:
    spark, store, release_id = released
    report = score(spark, store, release_id, tmp_path / "cache")
    assert report.customers_scored == {"acme_air": 5, "globex_bank": 5}
    assert report.missing_customers == {"initech_saas": 5}  # counted and reported, not silently dropped
    assert "NOT SCORED, no adapter in the release: initech_saas (5 rows)" in report.summary()
    first = partition_rows(spark, release_id)
    assert len(first) == 10
    assert all(0.0 <= s <= 1.0 for _, _, s in first)
    versions = {r[0] for r in spark.sql("SELECT DISTINCT adapter_version FROM scores").collect()}
    assert versions == {"1"}

    again = score(spark, store, release_id, tmp_path / "cache")
    assert again.rows_scored == 10
    assert partition_rows(spark, release_id) == first  # replaced, not appended; same scores
    described = spark.sql(
        f"DESCRIBE FORMATTED scores PARTITION (ds='{DS}', release='{release_id}')"
    ).collect()
    location = next(str(r[1]).strip() for r in described if str(r[0]).strip() == "Location")
    partition_dir = Path(location.removeprefix("file:")).parent
    assert [p.name.startswith("attempt-") for p in partition_dir.iterdir()] == [
        True
    ]  # the old attempt is gone


@pytest.mark.slow
def test_a_failed_job_keeps_the_previous_partition(
    released: tuple[Any, ReleaseStore, str], tmp_path: Path
) -> None:
    spark, store, release_id = released
    score(spark, store, release_id, tmp_path / "cache")
    before = partition_rows(spark, release_id)
    # A fresh copy of the adapters with a broken file: Spark's reused workers must load it and fail.
    shutil.copytree(tmp_path / "cache", tmp_path / "broken")
    weights = tmp_path / "broken" / release_id / "adapters" / "acme_air" / "artifacts" / "adapter"
    (weights / "adapter_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(Exception, match=r"(?i)safetensor|header|deserializ"):
        score(spark, store, release_id, tmp_path / "broken")
    assert partition_rows(spark, release_id) == before


@pytest.mark.slow
def test_bad_requests_are_named(released: tuple[Any, ReleaseStore, str], tmp_path: Path) -> None:
    spark, store, release_id = released
    with pytest.raises(
        ScoringError, match=r"'requests' has no partition ds=2026-12-24 \(partitions: ds=2026-11-01\)"
    ):
        score(spark, store, release_id, tmp_path, ds="2026-12-24")
    with pytest.raises(ScoringError, match="not a date"):
        score(spark, store, release_id, tmp_path, ds="yesterday")
    with pytest.raises(ScoringError, match="not a release id"):
        score(spark, store, "latest", tmp_path)
    with pytest.raises(ScoringError, match="cannot read Hive table 'nope'"):
        score(spark, store, release_id, tmp_path, input_table="nope")
    spark.sql(
        "CREATE TABLE narrow (request_id STRING, customer_id STRING) "
        "PARTITIONED BY (ds STRING) STORED AS PARQUET"
    )
    spark.sql(f"INSERT INTO narrow PARTITION (ds='{DS}') VALUES ('r1', 'acme_air')")
    try:
        with pytest.raises(ScoringError, match=r"'narrow' lacks column\(s\) text needed for scoring"):
            score(spark, store, release_id, tmp_path, input_table="narrow")
    finally:
        spark.sql("DROP TABLE narrow")


@pytest.mark.slow
def test_golden_scores_pass_and_a_swapped_adapter_fails_naming_customer_and_rows(
    released: tuple[Any, ReleaseStore, str], tmp_path: Path
) -> None:
    _, store, release_id = released
    checked = check_reference(store, release_id, tmp_path / "cache")
    assert sorted(checked.checked_rows) == ["acme_air", "globex_bank"]
    assert all(n > 0 for n in checked.checked_rows.values())
    assert max(checked.max_difference.values()) < 1e-4
    adapters = tmp_path / "cache" / release_id / "adapters"
    shutil.copy(  # acme_air's files now hold globex_bank's weights
        adapters / "globex_bank" / "artifacts" / "adapter" / "adapter_model.safetensors",
        adapters / "acme_air" / "artifacts" / "adapter" / "adapter_model.safetensors",
    )
    with pytest.raises(
        ReferenceMismatchError, match=r"acme_air \(adapter-acme_air v1\): \d+ of \d+ rows differ"
    ) as raised:
        check_reference(store, release_id, tmp_path / "cache")
    assert "globex_bank (" not in str(raised.value)


@pytest.mark.slow
def test_scoring_some_customers_keeps_the_other_customers_rows(
    released: tuple[Any, ReleaseStore, str], tmp_path: Path
) -> None:
    spark, store, release_id = released
    score(spark, store, release_id, tmp_path / "cache")
    before = partition_rows(spark, release_id)
    report = score(spark, store, release_id, tmp_path / "cache", customers=["acme_air"])
    assert report.customers_scored == {"acme_air": 5}
    assert report.missing_customers == {}
    after = partition_rows(spark, release_id)
    # globex_bank's rows kept, acme_air's replaced: equal scores, up to the float rounding of rows
    # batched with other rows than before
    assert [row[:2] for row in after] == [row[:2] for row in before]
    assert [row[2] for row in after] == pytest.approx([row[2] for row in before], abs=1e-6)
