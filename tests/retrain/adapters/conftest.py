"""Fixtures for real (tiny) adapter training against a local MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.adapters.training import TrainingParams

FAST = TrainingParams(epochs=1, min_examples=10, batch_size=32)


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    store = tmp_path / "mlflow"
    store.mkdir()
    return f"sqlite:///{store / 'mlflow.db'}"
