"""`retrain score`: what it reaches before a JVM starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV

from ..sockets import BOUND, closed_port
from .invoke import run

RELEASE = "0123456789abcdef0123456789abcdef"


def test_score_reaches_mlflow_and_the_metastore_before_starting_spark(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pyspark.sql import SparkSession

    def started(builder: object) -> None:
        raise AssertionError("Spark started before MLflow and the metastore were reached")

    # A tripwire, not a stand-in: another test's session may already be up in this process.
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", started)
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    score = ("score", "--release", RELEASE, "--table", "requests", "--ds", "2026-11-01", "--out", "scores")
    code, _, err = run(capsys, *score, "--mlflow-uri", f"http://127.0.0.1:{closed_port()}")
    assert code == 1
    assert err.startswith("retrain: error: cannot reach MLflow tracking server http://127.0.0.1:")
    metastore = f"thrift://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("RETRAIN_HIVE_METASTORE", metastore)
    (tmp_path / "mlflow.db").touch()  # scoring reads a store, never creates one
    code, _, err = run(capsys, *score, "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert (code, err) == (
        1,
        f"retrain: error: cannot reach the Hive metastore at {metastore} (Connection refused)\n",
    )
