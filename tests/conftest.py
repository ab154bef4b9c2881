"""Shared fixtures. Airflow's home is a fresh folder per test session, set before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="retrain-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "plugins")

from retrain.demo.seed import SeededRepository, seed_training_repo
from retrain.dolt import DoltRepository


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
