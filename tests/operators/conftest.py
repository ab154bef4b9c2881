"""Airflow fixtures: a migrated metadata DB in the session's AIRFLOW_HOME and a ``dolt`` connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.demo.seed import SeededRepository


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    home = Path(os.environ["AIRFLOW_HOME"])
    (home / "dags").mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return home


def dolt_connection_json(path: Path) -> str:
    return json.dumps({"conn_type": "dolt", "extra": {"path": str(path)}})


@pytest.fixture
def dolt_conn(monkeypatch: pytest.MonkeyPatch, seeded: SeededRepository) -> str:
    """``dolt_default`` pointing at the seeded doltlite repository."""
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_DEFAULT", dolt_connection_json(seeded.path))
    return "dolt_default"
