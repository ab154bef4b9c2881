"""Training registered in a real MLflow store (SQLite): lineage, parent/child, pyfunc, idempotency."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.model import BaseModelError
from retrain.adapters.registry import (
    TAG_PREFIX,
    TrackingNotFoundError,
    model_name,
    train_and_register,
    versions_for_commit,
)
from retrain.adapters.training import TrainingDataError, rows_fingerprint
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.errors import InputError
from retrain.identifiers import InvalidCustomerIdError
from retrain.tracking import TrackingUnreachableError, ensure_experiment

from .conftest import FAST, host_paths_in


def test_lineage_parent_child_and_pyfunc(
    repo: DoltRepository, seeded: SeededRepository, mlflow_uri: str
) -> None:
    client = MlflowClient(mlflow_uri)
    parent = client.create_run(ensure_experiment("pipeline", mlflow_uri), run_name="pipeline").info.run_id
    registered = train_and_register(
        repo,
        table="examples",
        commit=seeded.commits[0],
        customer="acme_air",
        params=FAST,
        mlflow_uri=mlflow_uri,
        parent_run_id=parent,
    )
    assert (registered.model_name, registered.version, registered.reused) == ("adapter-acme_air", "1", False)
    version = client.get_model_version("adapter-acme_air", "1")
    rows = repo.read_table("examples", seeded.commits[0], where={"customer_id": "acme_air"})
    assert version.tags["retrain.commit"] == seeded.commits[0]
    assert version.tags["retrain.customer"] == "acme_air"
    assert version.tags["retrain.table"] == "examples"
    assert version.tags["retrain.row_count"] == str(len(rows))
    assert version.tags["retrain.rows_fingerprint"] == rows_fingerprint(rows)
    assert version.tags["retrain.dolt_repo"] == f"doltlite://{seeded.path.resolve()}"
    assert version.tags["retrain.code_version"]
    run = client.get_run(registered.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.experiment_id == client.get_run(parent).info.experiment_id
    assert set(run.data.metrics) >= {"accuracy", "f1", "train_rows", "holdout_rows"}
    assert "reference_scores.json" in [a.path for a in client.list_artifacts(registered.run_id)]
    # MLmodel, the adapter's config and model card, the code it carries: no folder of this host.
    assert host_paths_in(Path(urlparse(version.tags["retrain.artifact_uri"]).path)) == {}

    mlflow.set_tracking_uri(mlflow_uri)
    model = mlflow.pyfunc.load_model(f"models:/adapter-acme_air/{registered.version}")
    scored = model.predict(pd.DataFrame({"text": ["my flight ticket refund", "the booking app looks nice"]}))
    assert list(scored.columns) == ["label", "p_routine", "p_urgent"]
    assert scored[["p_routine", "p_urgent"]].sum(axis=1).round(5).tolist() == [1.0, 1.0]


def test_same_training_is_reused_unless_forced(repo: DoltRepository, mlflow_uri: str) -> None:
    first = train_and_register(
        repo, table="examples", commit="main", customer="acme_air", params=FAST, mlflow_uri=mlflow_uri
    )
    again = train_and_register(
        repo, table="examples", commit="main", customer="acme_air", params=FAST, mlflow_uri=mlflow_uri
    )
    assert again.reused
    assert (again.version, again.run_id) == (first.version, first.run_id)
    forced = train_and_register(
        repo,
        table="examples",
        commit="main",
        customer="acme_air",
        params=FAST,
        mlflow_uri=mlflow_uri,
        force=True,
    )
    assert forced.version == "2"
    assert not forced.reused


def test_a_version_registered_by_a_worker_that_died_before_returning_is_reused(
    repo: DoltRepository, mlflow_uri: str
) -> None:
    """A worker killed after registering leaves its run RUNNING and returns nothing: the rerun reuses."""
    first = train_and_register(
        repo, table="examples", commit="main", customer="acme_air", params=FAST, mlflow_uri=mlflow_uri
    )
    client = MlflowClient(mlflow_uri)
    client.update_run(first.run_id, status="RUNNING")  # what SIGKILL leaves behind
    again = train_and_register(
        repo, table="examples", commit="main", customer="acme_air", params=FAST, mlflow_uri=mlflow_uri
    )
    assert (again.version, again.run_id, again.reused) == (first.version, first.run_id, True)
    assert len(client.search_model_versions("name = 'adapter-acme_air'")) == 1


def test_bad_input_registers_nothing(repo: DoltRepository, mlflow_uri: str, tmp_path: Path) -> None:
    repo.execute(Statement("UPDATE examples SET label = 'urgent' WHERE customer_id = 'initech_saas'"))
    commit = repo.commit("one class")
    with pytest.raises(
        TrainingDataError, match=f"customer 'initech_saas' at commit {commit} has a single class"
    ):
        train_and_register(
            repo, table="examples", commit=commit, customer="initech_saas", params=FAST, mlflow_uri=mlflow_uri
        )
    with pytest.raises(TrainingDataError, match=r"customer .ghost. at commit .* has no training rows"):
        train_and_register(
            repo, table="examples", commit=commit, customer="ghost", params=FAST, mlflow_uri=mlflow_uri
        )
    with pytest.raises(BaseModelError, match="not found"):
        train_and_register(
            repo,
            table="examples",
            commit=commit,
            customer="acme_air",
            params=FAST,
            mlflow_uri=mlflow_uri,
            base_model=str(tmp_path / "missing"),
        )
    client = MlflowClient(mlflow_uri)
    assert client.search_model_versions(f"name = '{model_name('initech_saas')}'") == []
    assert client.search_model_versions(f"name = '{model_name('ghost')}'") == []
    failed = client.search_runs(client.get_experiment_by_name("retrain-adapters").experiment_id)
    assert {r.info.status for r in failed} == {"FAILED"}  # runs record the failure; no version points at them


def test_unreachable_tracking_server_is_named(repo: DoltRepository) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        TrackingUnreachableError, match=f"cannot reach MLflow tracking server http://127.0.0.1:{port}"
    ):
        train_and_register(
            repo,
            table="examples",
            commit="main",
            customer="acme_air",
            params=FAST,
            mlflow_uri=f"http://127.0.0.1:{port}",
        )


def test_versions_for_commit_reads_every_page_and_keeps_each_customers_newest(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    commit, other = "a" * 32, "b" * 32
    customers = [f"customer_{i:02d}" for i in range(12)]
    newest: dict[str, str] = {}
    for customer, at in [(c, commit) for c in customers] + [(customers[0], commit), (customers[1], other)]:
        if customer not in newest and at == commit:
            client.create_registered_model(model_name(customer))
        tags = {f"{TAG_PREFIX}commit": at, f"{TAG_PREFIX}customer": customer}
        version = client.create_model_version(model_name(customer), "file:///adapter", tags=tags)
        if at == commit:
            newest[customer] = str(version.version)
    calls: list[str] = []

    class Counting:
        def search_model_versions(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs.get("page_token") or "first")
            return client.search_model_versions(*args, **kwargs)

    found = versions_for_commit(Counting(), commit, [*customers, "not_trained"], page_size=5)

    assert {c: a.version for c, a in found.items()} == newest
    assert found["customer_00"].version == "2"  # the newer of its two at this commit
    assert found["customer_01"].version == "1"  # its version 2 is another commit's
    assert len(calls) == 3  # 13 versions at the commit in pages of 5, read to the end


def test_crafted_customer_ids_fail_before_anything_is_trained_or_searched(
    repo: DoltRepository, mlflow_uri: str
) -> None:
    for customer in ["o'brien", "acme_air' or name != '", "a/b", "../acme_air", "acme air", "", "a\\b"]:
        with pytest.raises(InvalidCustomerIdError, match=r"^invalid customer id .*: use 1-128 letters"):
            train_and_register(
                repo, table="examples", commit="main", customer=customer, params=FAST, mlflow_uri=mlflow_uri
            )
        with pytest.raises(InvalidCustomerIdError):
            versions_for_commit(MlflowClient(mlflow_uri), "a" * 32, [customer])
    with pytest.raises(InputError, match="cannot be searched for in MLflow"):
        versions_for_commit(MlflowClient(mlflow_uri), "a' or name != '", ["acme_air"])
    assert MlflowClient(mlflow_uri).search_experiments(filter_string="name = 'retrain-adapters'") == []


def test_a_bogus_parent_run_is_one_line_naming_it(repo: DoltRepository, mlflow_uri: str) -> None:
    with pytest.raises(TrackingNotFoundError) as raised:
        train_and_register(
            repo,
            table="examples",
            commit="main",
            customer="acme_air",
            params=FAST,
            mlflow_uri=mlflow_uri,
            parent_run_id="0123456789abcdef",
        )
    assert "0123456789abcdef" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert MlflowClient(mlflow_uri).search_model_versions("name = 'adapter-acme_air'") == []
