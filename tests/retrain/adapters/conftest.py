"""Fixtures for real (tiny) adapter training against a local MLflow SQLite store."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from retrain.adapters.training import TrainingParams

FAST = TrainingParams(epochs=1, min_examples=10, batch_size=32)
ROOT = Path(__file__).resolve().parents[3]


def host_paths_in(folder: Path) -> dict[str, list[str]]:
    """Each file under ``folder`` that names a folder of this (training) host, with those it names:
    the checkout, the interpreters, the temporary folders (the tests' stores, training workdirs)."""
    hosts = [str(ROOT), sys.prefix, sys.base_prefix, tempfile.gettempdir() + os.sep]
    named = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (found := [host for host in hosts if host.encode() in path.read_bytes()]):
            named[str(path.relative_to(folder))] = found
    return named


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    store = tmp_path / "mlflow"
    store.mkdir()
    return f"sqlite:///{store / 'mlflow.db'}"
