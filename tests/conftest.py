"""Shared fixtures. Airflow's home is a fresh folder per test session, set before Airflow is imported."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="retrain-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from retrain.demo.seed import SeededRepository, seed_training_repo
from retrain.dolt import DoltRepository
from retrain.release.store import ReleaseStore


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
    from retrain.release.context import write_context
    from retrain.release.promotion import promote

    root = tmp_path_factory.mktemp("trained-release")
    seeded = seed_training_repo(root / "training.db", customers=4, examples=20)
    store = ReleaseStore.open(f"sqlite:///{root / 'mlflow.db'}")
    with DoltRepository.open(str(seeded.path)) as repository:
        for customer in seeded.customers:
            adapter = train_and_register(
                repository,
                table="examples",
                commit="main",
                customer=customer,
                mlflow_uri=store.tracking_uri,
                params=TrainingParams(epochs=1, min_examples=10),
            )
            promote(store.client, customer, adapter.version)
    release_id = store.register(store.production_manifest()).release_id
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
