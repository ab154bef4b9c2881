"""Training/serving skew: the same rows score the same through every path a release is used by.

Three ways reach a released adapter: the Hive scoring job (Spark executors running the engine),
the model server's V2 API (clients, KServe), and each adapter's MLflow pyfunc (what a data
scientist loads from the registry). Any drift among them (a different tokenizer setting, merged
against unmerged LoRA weights, a different label order) would make offline scores disagree with
what customers are served, so all three must agree row for row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from retrain.release.manifest import Manifest
from retrain.release.store import MANIFEST_FILE
from retrain.scoring.job import score_partition
from retrain.serving.protocol import DEFAULT_MODEL_NAME

from .server_process import SERVE_BIN, needs_serve_venv, served

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease

DS = "2026-11-01"
TOLERANCE = 1e-5


@pytest.fixture
def spark(tmp_path: Path) -> Iterator[Any]:
    """This process's Spark session with Hive (an already running one is reused, as in production)."""
    from retrain.spark import SparkSettings, spark_session

    session = spark_session(SparkSettings(master="local[2]", warehouse=str(tmp_path / "warehouse")))
    yield session
    session.sql("DROP TABLE IF EXISTS skew_scores")
    session.sql("DROP TABLE IF EXISTS skew_requests")


def spark_scores(spark: Any, release: TrainedRelease, workdir: Path) -> list[float]:
    spark.sql("DROP TABLE IF EXISTS skew_requests")
    spark.sql(
        "CREATE TABLE skew_requests (request_id STRING, customer_id STRING, text STRING) "
        "PARTITIONED BY (ds STRING) STORED AS PARQUET"
    )
    rows = [
        (f"r{i:04d}", customer, text, DS)
        for i, (text, customer) in enumerate(zip(release.texts, release.text_customers, strict=True))
    ]
    spark.createDataFrame(rows, ["request_id", "customer_id", "text", "ds"]).write.insertInto(
        "skew_requests", overwrite=True
    )
    report = score_partition(
        spark,
        release.store,
        release_id=release.release_id,
        input_table="skew_requests",
        ds=DS,
        output_table="skew_scores",
        workdir=workdir,
    )
    assert report.rows_scored == len(rows)
    scored = spark.sql(
        f"SELECT request_id, score FROM skew_scores WHERE ds = '{DS}' AND release = '{release.release_id}'"
    ).collect()
    by_id = {str(r["request_id"]): float(r["score"]) for r in scored}
    return [by_id[row[0]] for row in rows]


def served_scores(endpoint: str, release: TrainedRelease) -> list[float]:
    body = {
        "inputs": [
            {"name": "text", "shape": [len(release.texts)], "datatype": "BYTES", "data": release.texts},
            {
                "name": "customer_id",
                "shape": [len(release.texts)],
                "datatype": "BYTES",
                "data": release.text_customers,
            },
        ]
    }
    response = requests.post(f"{endpoint}/v2/models/{DEFAULT_MODEL_NAME}/infer", json=body, timeout=60)
    response.raise_for_status()
    answer = response.json()
    assert answer["model_version"] == release.release_id
    (score,) = [o["data"] for o in answer["outputs"] if o["name"] == "score"]
    return [float(s) for s in score]


def pyfunc_scores(release: TrainedRelease) -> list[float]:
    """Each customer's rows through ``models:/<adapter>/<version>``: the probability of the last label."""
    manifest = Manifest.from_json((release.release_dir / MANIFEST_FILE).read_text())
    scores = [float("nan")] * len(release.texts)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(release.store.tracking_uri)
    try:
        for entry in manifest.adapters:
            rows = [i for i, c in enumerate(release.text_customers) if c == entry.customer]
            model = mlflow.pyfunc.load_model(f"models:/{entry.model_name}/{entry.version}")
            predicted = model.predict(pd.DataFrame({"text": [release.texts[i] for i in rows]}))
            last = sorted(c for c in predicted.columns if c.startswith("p_"))[-1]
            for i, value in zip(rows, predicted[last], strict=True):
                scores[i] = float(value)
    finally:
        mlflow.set_tracking_uri(previous)
    return scores


@needs_serve_venv
@pytest.mark.slow
def test_spark_server_and_pyfunc_score_the_same_rows_identically(
    trained_release: TrainedRelease, spark: Any, tmp_path: Path
) -> None:
    assert SERVE_BIN.is_file()
    assert set(trained_release.text_customers) == set(trained_release.customers)
    with served(trained_release.release_dir, tmp_path / "logs") as endpoint:
        server = np.array(served_scores(endpoint, trained_release))
    offline = np.array(spark_scores(spark, trained_release, tmp_path / "cache"))
    registry = np.array(pyfunc_scores(trained_release))
    assert not np.isnan(registry).any()
    for name, other in (("Spark", offline), ("MLflow pyfunc", registry)):
        worst = np.abs(other - server)
        bad = [
            f"{trained_release.text_customers[i]} row {i}: server {server[i]:.7f}, {name} {other[i]:.7f}"
            for i in np.flatnonzero(worst > TOLERANCE)
        ]
        assert not bad, f"{name} differs from the server by up to {worst.max():.2e}: " + "; ".join(bad[:5])
