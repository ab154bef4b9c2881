"""Release fixtures: a real MLflow store (SQLite) with adapter versions whose files are written directly.

Training a real adapter takes seconds; the release store only reads a version's tags and its
logged model's files, so these tests register versions over small real folders instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import TAG_PREFIX, model_name
from retrain.release.store import PRODUCTION_ALIAS, ReleaseStore

WEIGHTS = "artifacts/adapter/adapter_model.safetensors"
Publish = Callable[[str], str]


@pytest.fixture
def release_store(tmp_path: Path) -> ReleaseStore:
    (tmp_path / "mlflow").mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    return ReleaseStore(MlflowClient(uri), uri)


@pytest.fixture
def publish(release_store: ReleaseStore, tmp_path: Path) -> Publish:
    """``publish(customer)``: a new model version of the customer over a logged-model folder,
    moved to ``production``; returns the version."""

    def publish_version(customer: str) -> str:
        client, name = release_store.client, model_name(customer)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        count = len(client.search_model_versions(f"name = '{name}'"))
        folder = tmp_path / "models" / customer / str(count + 1)
        (folder / WEIGHTS).parent.mkdir(parents=True)
        (folder / "MLmodel").write_text("flavors: {}\n")
        (folder / WEIGHTS).write_bytes(bytes(range(256)) * 64 + customer.encode() + bytes([count]))
        (folder / "artifacts/adapter/adapter_config.json").write_text('{"r": 4}')
        tags = {
            f"{TAG_PREFIX}customer": customer,
            f"{TAG_PREFIX}commit": "c" * 40,
            f"{TAG_PREFIX}artifact_uri": folder.as_uri(),
            f"{TAG_PREFIX}metric.roc_auc": "0.9",
        }
        version = str(client.create_model_version(name, folder.as_uri(), tags=tags).version)
        client.set_registered_model_alias(name, PRODUCTION_ALIAS, version)
        return version

    return publish_version


def weights_of(store: ReleaseStore, customer: str, version: str) -> Path:
    """The adapter weights file of a published version, in the artifact store."""
    uri = store.client.get_model_version(model_name(customer), version).tags[f"{TAG_PREFIX}artifact_uri"]
    return Path(uri.removeprefix("file://")) / WEIGHTS
