"""The pipeline's parent run, on a real MLflow store: its tags, and the local fan-out starting it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import EXPERIMENT
from retrain.demo.seed import SeededRepository
from retrain.fanout.local import train_customers
from retrain.fanout.parent_run import start_parent_run


def test_the_parent_run_is_tagged_with_what_is_trained_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.delenv("RETRAIN_MLFLOW_UI_URL", raising=False)
    run = start_parent_run(
        uri,
        commit="c" * 40,
        table="examples",
        backend="argo",
        customers=3,
        run_name="retrain_on_commit.train",
        tags={"retrain.airflow_run_id": "manual__1"},
    )
    client = MlflowClient(uri)
    parent = client.get_run(run.run_id)
    assert parent.info.run_name == "retrain_on_commit.train"
    assert parent.info.status == "RUNNING"  # the caller ends it when training is over
    assert parent.info.experiment_id == client.get_experiment_by_name(EXPERIMENT).experiment_id  # type: ignore[union-attr]
    assert {k: v for k, v in parent.data.tags.items() if k.startswith("retrain.")} == {
        "retrain.commit": "c" * 40,
        "retrain.table": "examples",
        "retrain.backend": "argo",
        "retrain.customers": "3",
        "retrain.airflow_run_id": "manual__1",
    }
    assert run.url is None  # a local store has no UI unless one is named

    monkeypatch.setenv("RETRAIN_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    linked = start_parent_run(
        uri, commit="c" * 40, table="examples", backend="local", customers=1, run_name="r"
    )
    assert linked.url == (
        f"http://mlflow.example:5000/#/experiments/{parent.info.experiment_id}/runs/{linked.run_id}"
    )


def test_the_local_fan_out_starts_its_parent_run_here(seeded: SeededRepository, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_customers(str(seeded.path), table="examples", commit="main", customers=[], mlflow_uri=uri)
    parent = MlflowClient(uri).get_run(result.parent_run_id)
    head = seeded.commits[-1]
    assert parent.info.run_name == f"train-{head[:12]}"
    assert {k: v for k, v in parent.data.tags.items() if k.startswith("retrain.")} == {
        "retrain.commit": head,
        "retrain.table": "examples",
        "retrain.backend": "local",
        "retrain.customers": "0",
    }
    assert parent.info.status == "FINISHED"
