"""Shared fixtures. Airflow's home is a fresh folder per test session, set before Airflow is imported.

No process a test starts may outlive the run: ``tests.leftovers`` fails it, naming any still alive
at the end whose command line or environment names pytest's folders or this Airflow home.
"""

from __future__ import annotations

import contextlib
import multiprocessing.resource_tracker
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="retrain-test-airflow-")
# pytest-xdist's workers run under execnet, whose __main__ has neither a spec nor a file; pyspark's
# Spark Connect package takes that for its own doctest runner and exits the worker on import.
if getattr(sys.modules["__main__"], "__spec__", None) is None and not hasattr(
    sys.modules["__main__"], "__file__"
):
    sys.modules["__main__"].__file__ = "<pytest-xdist worker>"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from retrain import processes
from retrain.demo.seed import SeededRepository, seed_training_repo
from retrain.dolt import DoltRepository
from retrain.release.store import ReleaseStore

from . import leftovers


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(leftovers, "tests.leftovers")
    leftovers.watch(config, Path(os.environ["AIRFLOW_HOME"]))


@pytest.fixture(scope="session", autouse=True)
def _helper_processes_stopped() -> Iterator[None]:
    """Helpers this process started, which would live until it exits, end with the run instead:
    the Spark session's JVM and multiprocessing's resource tracker (the leftover check comes after).
    Their libraries keep them in private attributes only: no public call stops either."""
    yield
    multiprocessing.resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]
    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if (session := SparkSession.getActiveSession()) is not None:
        session.stop()  # its Python workers go with it
    gateway = SparkContext._gateway
    if gateway is None:
        return
    gateway.shutdown()
    gateway.proc.stdin.close()  # the JVM exits when this pipe closes
    with contextlib.suppress(subprocess.TimeoutExpired):
        gateway.proc.wait(timeout=30)
    processes.stop(gateway.proc, grace=5)  # nothing to do once it exited; else no more waiting
    SparkContext._gateway = SparkContext._jvm = None


@pytest.fixture
def seeded(tmp_path: Path) -> SeededRepository:
    """A small doltlite training repo: 4 customers x 20 examples, committed twice."""
    return seed_training_repo(tmp_path / "training.db", customers=4, examples=20)


@pytest.fixture
def repo(seeded: SeededRepository) -> Iterator[DoltRepository]:
    with DoltRepository.open(str(seeded.path)) as repository:
        yield repository


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    home = Path(os.environ["AIRFLOW_HOME"])
    (home / "dags").mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return home


@dataclass(frozen=True)
class TrainedRelease:
    """A real release: adapters trained on a seeded repo, registered in MLflow, written as a context."""

    store: ReleaseStore
    release_id: str
    release_dir: Path
    customers: list[str]
    texts: list[str]  # held-out requests, a few per customer
    text_customers: list[str]  # the customer of each text, shuffled across customers


@pytest.fixture(scope="session")
def trained_release(tmp_path_factory: pytest.TempPathFactory) -> TrainedRelease:
    """Four customers' adapters (one quick epoch each), shared by every test that only reads them."""
    from retrain.adapters.registry import train_and_register
    from retrain.adapters.training import TrainingParams
    from retrain.demo.corpus import customer_profiles, generate_examples
    from retrain.release.build import promote_all
    from retrain.release.context import write_context

    root = tmp_path_factory.mktemp("trained-release")
    seeded = seed_training_repo(root / "training.db", customers=4, examples=20)
    store = ReleaseStore.open(f"sqlite:///{root / 'mlflow.db'}")
    with DoltRepository.open(str(seeded.path)) as repository:
        trained = {
            customer: train_and_register(
                repository,
                table="examples",
                commit="main",
                customer=customer,
                mlflow_uri=store.tracking_uri,
                params=TrainingParams(epochs=1, min_examples=10),
            ).version
            for customer in seeded.customers
        }
    release_id = promote_all(store, trained, floor=None).event.release_id
    release_dir = write_context(store, release_id, root / "release")
    requests = [
        (example.text, profile.customer_id)
        for profile in customer_profiles(4)
        for example in generate_examples(profile, 12, seed=99)
    ]
    random.Random(5).shuffle(requests)
    return TrainedRelease(
        store, release_id, release_dir, seeded.customers, [t for t, _ in requests], [c for _, c in requests]
    )


@pytest.fixture
def release(repo: DoltRepository, seeded: SeededRepository, tmp_path: Path) -> tuple[ReleaseStore, str]:
    """A release of acme_air and globex_bank (the warehouse also has initech_saas, without adapter)."""
    from mlflow.tracking import MlflowClient

    from retrain.adapters.registry import train_and_register
    from retrain.adapters.training import TrainingParams
    from retrain.release.build import promote_all

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
    import datetime as dt

    from retrain.demo.seed import seed_warehouse

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
