"""Benchmark: building and registering a release manifest of N adapters against a local MLflow store.

For N = 100 and 1,000 it prints the seconds and the MLflow client round trips of
``ReleaseStore.production_manifest() + register()`` (target: <= 10 s at 1,000, round trips not
growing with N), beside a naive build that asks the registry once per model (the production
version by alias, then its run's metrics), in the same run.

Setup (not timed): one adapter is really trained and logged; N registered models each get a
version with the lineage tags and that logged model's artifacts, and a ``production`` alias.

Run: ``.venv/bin/python bench/release.py``
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from retrain.adapters.registry import METRIC_TAG_PREFIX, TAG_PREFIX, model_name, train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import seed_training_repo
from retrain.dolt import DoltRepository
from retrain.release.manifest import AdapterEntry, Manifest
from retrain.release.store import PRODUCTION_ALIAS, ReleaseStore


class CountingClient:
    """An MlflowClient that counts the calls made through it (each one a round trip to the store)."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        counted.__name__ = name
        return counted


def populate(uri: str, workdir: Path, count: int) -> None:
    """``count`` registered adapters in production, all pointing at one really trained model."""
    with DoltRepository.open(
        str(seed_training_repo(workdir / "training.db", customers=1, examples=40).path)
    ) as repo:
        seed = train_and_register(
            repo,
            table="examples",
            commit="main",
            customer="acme_air",
            mlflow_uri=uri,
            params=TrainingParams(epochs=1, min_examples=10),
        )
    client = MlflowClient(uri)
    template = client.get_model_version(seed.model_name, seed.version)
    client.set_registered_model_alias(seed.model_name, PRODUCTION_ALIAS, seed.version)
    started = time.perf_counter()
    for i in range(count - 1):
        name = model_name(f"customer_{i:05d}")
        client.create_registered_model(name)
        tags = {
            **template.tags,
            f"{TAG_PREFIX}customer": f"customer_{i:05d}",
            f"{METRIC_TAG_PREFIX}roc_auc": "0.9",
        }
        version = client.create_model_version(name, str(template.source), run_id=template.run_id, tags=tags)
        client.set_registered_model_alias(name, PRODUCTION_ALIAS, version.version)
    print(f"  setup: {count:,} registered adapters in {time.perf_counter() - started:.0f}s (not timed below)")


def naive_manifest(client: Any, customers: list[str]) -> Manifest:
    """One registry call per model for its production version, one per run for its metrics."""
    entries = []
    for customer in customers:
        version = client.get_model_version_by_alias(model_name(customer), PRODUCTION_ALIAS)
        metrics = client.get_run(version.run_id).data.metrics
        holdout = {k: v for k, v in metrics.items() if k in ("accuracy", "f1", "roc_auc")}
        entries.append(
            AdapterEntry(
                customer,
                version.name,
                str(version.version),
                str(version.run_id),
                version.tags.get(f"{TAG_PREFIX}commit", ""),
                version.tags.get(f"{TAG_PREFIX}artifact_uri", ""),
                holdout,
            )
        )
    return Manifest(tuple(entries))


def measure(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        print(f"N = {count:,}")
        populate(uri, workdir, count)
        customers = ["acme_air", *(f"customer_{i:05d}" for i in range(count - 1))]

        client = CountingClient(MlflowClient(uri))
        store = ReleaseStore(client, uri)
        store.experiment_id  # noqa: B018 - create the releases experiment outside the timing
        started = time.perf_counter()
        manifest = store.production_manifest()
        event = store.register(manifest)
        ours = time.perf_counter() - started
        ours_calls = sum(client.calls.values())
        assert len(manifest.adapters) == count
        assert event.adapter_count == count

        naive_client = CountingClient(MlflowClient(uri))
        started = time.perf_counter()
        naive = naive_manifest(naive_client, customers)
        naive_seconds = time.perf_counter() - started
        assert len(naive.adapters) == count
        naive_calls = sum(naive_client.calls.values())
        print(f"  suite: build + register {ours:6.2f} s, {ours_calls:>5} round trips {dict(client.calls)}")
        print(f"  naive: build only       {naive_seconds:6.2f} s, {naive_calls:>5} round trips (2 per model)")
        ratio = f"{naive_seconds / ours:.1f}x time, {naive_calls / ours_calls:.0f}x round trips"
        print(f"  ratio naive/suite: {ratio}")


def main() -> None:
    for count in (100, 1_000):
        measure(count)


if __name__ == "__main__":
    main()
