"""Release contexts (a release's adapters on local disk) from a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.release.context import write_context
from retrain.release.promotion import promote
from retrain.release.store import ReleaseStore

FAST = TrainingParams(epochs=1, min_examples=10)


def test_a_release_changing_one_adapter_downloads_only_that_one(
    repo: DoltRepository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    for customer in ("acme_air", "globex_bank"):
        adapter = train_and_register(repo, table="examples", commit="main", customer=customer, params=FAST,
                                     mlflow_uri=uri)  # fmt: skip
        promote(store.client, customer, adapter.version)
    first = store.register(store.production_manifest()).release_id
    cache = tmp_path / "scoring"
    write_context(store, first, cache / first, reuse_from=cache)

    repo.execute(Statement("UPDATE examples SET text = text || '!' WHERE customer_id = 'globex_bank'"))
    retrained = train_and_register(repo, table="examples", commit=repo.commit("edit"), customer="globex_bank",
                                   params=FAST, mlflow_uri=uri)  # fmt: skip
    promote(store.client, "globex_bank", retrained.version, tolerance=1.0)
    second = store.register(store.production_manifest()).release_id
    assert second != first
    with caplog.at_level("INFO", logger="retrain.release.context"):
        write_context(store, second, cache / second, reuse_from=cache)
    assert f"release {second}: 1 adapters downloaded, 1 reused" in caplog.text
    kept, new = (cache / r / "adapters" for r in (first, second))
    weights = "artifacts/adapter/adapter_model.safetensors"
    assert (kept / "acme_air" / weights).stat().st_ino == (new / "acme_air" / weights).stat().st_ino  # linked
    assert (kept / "globex_bank" / weights).read_bytes() != (new / "globex_bank" / weights).read_bytes()
