"""Airflow fixtures: a ``dolt`` connection to the seeded repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain.demo.seed import SeededRepository


def dolt_connection_json(path: Path) -> str:
    return json.dumps({"conn_type": "dolt", "extra": {"path": str(path)}})


@pytest.fixture
def dolt_conn(monkeypatch: pytest.MonkeyPatch, seeded: SeededRepository) -> str:
    """``dolt_default`` pointing at the seeded doltlite repository."""
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_DEFAULT", dolt_connection_json(seeded.path))
    return "dolt_default"
