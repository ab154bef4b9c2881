from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository, seed_warehouse
from retrain.dolt import DoltRepository
from retrain.release.promotion import promote
from retrain.release.store import ReleaseStore

from .argo_schema import load_definitions


@pytest.fixture(scope="session")
def argo_definitions() -> dict[str, Any]:
    """Argo's JSON Schema definitions (the test is skipped, saying why, when the schema is absent)."""
    return load_definitions()


@pytest.fixture
def release(repo: DoltRepository, seeded: SeededRepository, tmp_path: Path) -> tuple[ReleaseStore, str]:
    """A release of acme_air and globex_bank (the warehouse also has initech_saas, without adapter)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    for customer in ("acme_air", "globex_bank"):
        adapter = train_and_register(
            repo,
            table="examples",
            commit="main",
            customer=customer,
            mlflow_uri=uri,
            params=TrainingParams(epochs=1, min_examples=10),
        )
        promote(store.client, customer, adapter.version)
    return store, store.register(store.production_manifest()).release_id


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
    spark.sql("DROP TABLE IF EXISTS drift")
    spark.sql("DROP TABLE IF EXISTS requests")
    spark.sql("DROP TABLE IF EXISTS labelled_history")
