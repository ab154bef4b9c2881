"""Releases in a real MLflow store (SQLite) over really trained (tiny) adapters."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import RegisteredAdapter, train_and_register
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.release.manifest import diff
from retrain.release.promotion import promote
from retrain.release.store import PRODUCTION_ALIAS, ReleaseError, ReleaseStore

FAST = TrainingParams(epochs=1, min_examples=10)


@pytest.fixture
def store(tmp_path: Path) -> ReleaseStore:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    return ReleaseStore(MlflowClient(uri), uri)


def train(repo: DoltRepository, store: ReleaseStore, customer: str, force: bool = False) -> RegisteredAdapter:
    return train_and_register(repo, table="examples", commit="main", customer=customer, params=FAST,
                              mlflow_uri=store.tracking_uri, force=force)  # fmt: skip


def set_metric(store: ReleaseStore, adapter: RegisteredAdapter, value: float) -> None:
    store.client.set_model_version_tag(
        adapter.model_name, adapter.version, "retrain.metric.roc_auc", f"{value}"
    )


def test_release_lifecycle(repo: DoltRepository, store: ReleaseStore, tmp_path: Path) -> None:
    first = {c: train(repo, store, c) for c in ("acme_air", "globex_bank")}
    for adapter in first.values():
        assert promote(store.client, adapter.customer, adapter.version).promoted
    manifest = store.production_manifest()
    assert [(a.customer, a.version) for a in manifest.adapters] == [("acme_air", "1"), ("globex_bank", "1")]
    release_1 = store.register(manifest)
    assert release_1.release_id == manifest.release_id
    assert release_1.changes == "first release"
    assert store.register(store.production_manifest()).run_id == release_1.run_id  # same MD5: no-op
    time.sleep(0.05)
    before_second = dt.datetime.now(dt.UTC)
    time.sleep(0.05)

    repo.execute(Statement("UPDATE examples SET text = text || '!' WHERE customer_id = 'globex_bank'"))
    repo.commit("globex edit")
    retrained = train(repo, store, "globex_bank")
    set_metric(store, retrained, 1.0)
    assert promote(store.client, "globex_bank", retrained.version, tolerance=0.0).promoted
    release_2 = store.register(store.production_manifest())
    assert release_2.release_id != release_1.release_id
    assert release_2.changes == "+0 ~1 -0"
    mlflow.set_tracking_uri(
        f"sqlite:///{tmp_path / 'elsewhere.db'}"
    )  # the store must not rely on the global URI
    changes = diff(store.manifest(release_1.release_id), store.manifest(release_2.release_id))
    assert [(o.version, n.version) for o, n in changes.changed] == [("1", "2")]

    assert store.as_of(before_second).release_id == release_1.release_id  # type: ignore[union-attr]
    assert store.as_of(dt.datetime.now(dt.UTC)).release_id == release_2.release_id  # type: ignore[union-attr]

    rolled = store.rollback(release_1.release_id)
    assert (rolled.event, rolled.release_id) == ("rollback", release_1.release_id)
    assert store.production_manifest().release_id == release_1.release_id
    assert store.client.get_model_version_by_alias("adapter-globex_bank", PRODUCTION_ALIAS).version == 1
    assert store.as_of(dt.datetime.now(dt.UTC)).event == "rollback"  # type: ignore[union-attr]
    assert [e.event for e in store.events()] == ["rollback", "register", "register"]


def test_gate_rejects_worse_and_accepts_better(repo: DoltRepository, store: ReleaseStore) -> None:
    champion = train(repo, store, "acme_air")
    set_metric(store, champion, 0.90)
    promote(store.client, "acme_air", champion.version)
    worse = train(repo, store, "acme_air", force=True)
    set_metric(store, worse, 0.80)
    decision = promote(store.client, "acme_air", worse.version, tolerance=0.05)
    assert not decision.promoted
    assert (decision.challenger, decision.champion, decision.champion_version) == (
        0.80,
        0.90,
        champion.version,
    )
    assert "worse than production v1" in decision.reason
    assert store.client.get_model_version_by_alias("adapter-acme_air", PRODUCTION_ALIAS).version == 1
    run = store.client.get_run(worse.run_id)
    assert run.data.tags["retrain.promotion"] == "rejected"
    assert run.data.metrics["champion_roc_auc"] == 0.90
    within = train(repo, store, "acme_air", force=True)
    set_metric(store, within, 0.87)
    assert promote(store.client, "acme_air", within.version, tolerance=0.05).promoted
    assert (
        str(store.client.get_model_version_by_alias("adapter-acme_air", PRODUCTION_ALIAS).version)
        == within.version
    )


def test_rollback_one_customer_cuts_a_new_release(repo: DoltRepository, store: ReleaseStore) -> None:
    for customer in ("acme_air", "globex_bank"):
        promote(store.client, customer, train(repo, store, customer).version)
    first = store.register(store.production_manifest())
    newer = train(repo, store, "acme_air", force=True)
    promote(store.client, "acme_air", newer.version, tolerance=1.0)
    second = store.register(store.production_manifest())
    rolled = store.rollback_customer("acme_air")
    assert rolled.release_id == first.release_id  # acme back on v1, globex unchanged: the first set again
    assert rolled.event == "rollback"  # production returned to an earlier release: recorded, not skipped
    assert store.latest().release_id == first.release_id != second.release_id  # type: ignore[union-attr]
    assert "rollback of acme_air: v2 -> v1" in rolled.note
    with pytest.raises(ReleaseError, match="customer 'nobody' has no production adapter"):
        store.rollback_customer("nobody")


def test_pins_choose_the_release_for_a_day(repo: DoltRepository, store: ReleaseStore) -> None:
    promote(store.client, "acme_air", train(repo, store, "acme_air").version)
    release = store.register(store.production_manifest())
    store.pin(release.release_id, dt.date(2026, 1, 1), dt.date(2026, 1, 31))
    assert store.for_day(dt.date(2026, 1, 15)).release_id == release.release_id  # type: ignore[union-attr]
    assert store.for_day(dt.date(2025, 12, 31)) is None  # before anything was released, no pin
    with pytest.raises(ReleaseError, match="ends"):
        store.pin(release.release_id, dt.date(2026, 2, 1), dt.date(2026, 1, 1))
    with pytest.raises(ReleaseError, match="unknown release 'feed'"):
        store.pin("feed", dt.date(2026, 2, 1), dt.date(2026, 2, 2))


def test_missing_or_corrupted_artifacts_register_nothing(repo: DoltRepository, store: ReleaseStore) -> None:
    adapter = train(repo, store, "acme_air")
    promote(store.client, "acme_air", adapter.version)
    (entry,) = store.production_manifest().adapters
    weights = (
        Path(entry.artifact_uri.removeprefix("file://"))
        / "artifacts"
        / "adapter"
        / "adapter_model.safetensors"
    )
    weights.write_bytes(b"")
    with pytest.raises(
        ReleaseError, match=r"customer acme_air \(adapter-acme_air v1\) has no \(or an empty\)"
    ):
        store.register(store.production_manifest())
    weights.unlink()
    with pytest.raises(ReleaseError, match=r"adapter_model\.safetensors"):
        store.register(store.production_manifest())
    assert store.events() == []
    with pytest.raises(ReleaseError, match="empty release"):
        ReleaseStore(store.client, store.tracking_uri).register(type(store.production_manifest())(()))


def test_a_partial_release_names_its_failed_customers(repo: DoltRepository, store: ReleaseStore) -> None:
    adapter = train(repo, store, "acme_air")
    assert promote(store.client, adapter.customer, adapter.version).promoted
    reasons = {"globex_bank": "RuntimeError: worker crashed", "<b>odd</b>": "ValueError: no rows"}
    release = store.register(store.production_manifest(), failures=reasons)
    assert release.failed_count == 2
    assert store.failures(release.release_id) == dict(sorted(reasons.items()))
    assert store.find(release.release_id).failed_count == 2  # type: ignore[union-attr]
    # Failures sit beside the manifest, outside it: the release id is the manifest's MD5 alone.
    assert release.release_id == store.production_manifest().release_id
    assert [a.customer for a in store.manifest(release.release_id).adapters] == ["acme_air"]


def test_a_complete_release_has_no_failures(repo: DoltRepository, store: ReleaseStore) -> None:
    adapter = train(repo, store, "acme_air")
    assert promote(store.client, adapter.customer, adapter.version).promoted
    release = store.register(store.production_manifest())
    assert (release.failed_count, store.failures(release.release_id)) == (0, {})
    with pytest.raises(ReleaseError, match=r"unknown release 'f+'"):
        store.failures("f" * 32)


def test_a_release_for_changed_customers_reads_only_them_from_the_registry(
    repo: DoltRepository, store: ReleaseStore
) -> None:
    first = {c: train(repo, store, c) for c in ("acme_air", "globex_bank", "initech_saas")}
    for adapter in first.values():
        promote(store.client, adapter.customer, adapter.version)
    store.register(store.production_manifest())
    newer = train(repo, store, "acme_air", force=True)
    promote(store.client, "acme_air", newer.version, tolerance=1.0)
    store.client.delete_registered_model_alias("adapter-initech_saas", PRODUCTION_ALIAS)  # its gate said no
    calls: list[str] = []
    counted = store.client

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(counted, name)

    incremental = ReleaseStore(Counting(), store.tracking_uri).production_manifest(
        changed=["acme_air", "initech_saas"]
    )

    assert incremental == store.production_manifest()  # the same release as reading everything
    assert [(a.customer, a.version) for a in incremental.adapters] == [
        ("acme_air", "2"),
        ("globex_bank", "1"),
    ]
    assert not {"search_model_versions", "search_registered_models"} & set(calls)
    assert calls.count("get_registered_model") == 2  # the changed customers' aliases, not globex's
    assert calls.count("get_model_version") == 1  # initech has no production version any more


def test_the_first_release_for_changed_customers_reads_the_whole_registry(
    repo: DoltRepository, store: ReleaseStore
) -> None:
    for customer in ("acme_air", "globex_bank"):
        promote(store.client, customer, train(repo, store, customer).version)
    first = store.production_manifest(changed=["acme_air"])  # no release to start from
    assert [a.customer for a in first.adapters] == ["acme_air", "globex_bank"]
