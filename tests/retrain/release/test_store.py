"""Releases in a real MLflow store (SQLite) over really trained (tiny) adapters."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import (
    RegisteredAdapter,
    TrackingNotFoundError,
    filter_value,
    train_and_register,
)
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.errors import InputError
from retrain.identifiers import InvalidCustomerIdError
from retrain.release.manifest import AdapterFilesError, Manifest, diff
from retrain.release.promotion import promote
from retrain.release.store import PRODUCTION_ALIAS, ReleaseError, ReleaseStore

from .conftest import WEIGHTS, Publish, weights_of

FAST = TrainingParams(epochs=1, min_examples=10)


@pytest.fixture
def store(tmp_path: Path) -> ReleaseStore:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    return ReleaseStore(MlflowClient(uri), uri)


def train(repo: DoltRepository, store: ReleaseStore, customer: str, force: bool = False) -> RegisteredAdapter:
    return train_and_register(
        repo,
        table="examples",
        commit="main",
        customer=customer,
        params=FAST,
        mlflow_uri=store.tracking_uri,
        force=force,
    )


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
    with pytest.raises(ReleaseError, match=r"unknown release 'f{32}'"):
        store.pin("f" * 32, dt.date(2026, 2, 1), dt.date(2026, 2, 2))


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


# -- hostile input, stray runs, tampered manifests and adapter files (issue 15), MLflow failures (issue 13)

CRAFTED_RELEASE_IDS = [
    "{md5}' and tags.`retrain.event` != 'pin",  # closed its quotes to add a clause: resolved to {md5}
    "{md5}' or '1' = '1",
    "{md5}\\",
    "{md5} ",
    "{upper}",
    "feed",
    "",
]
CRAFTED_CUSTOMERS = ["o'brien", "acme' or name != '", "a/b", "../acme_air", "acme air", "", "a\\b"]


def test_crafted_release_ids_and_customers_are_refused_before_any_search(
    release_store: ReleaseStore, publish: Publish
) -> None:
    store = release_store
    publish("acme_air")
    release = store.register(store.production_manifest())
    md5 = release.release_id
    for template in CRAFTED_RELEASE_IDS:
        crafted = template.format(md5=md5, upper=md5.upper())
        with pytest.raises(InputError, match=r"^invalid release id .*: use 32 lowercase hex"):
            store.pin(crafted, dt.date(2026, 1, 1), dt.date(2026, 1, 2))
        for read in (store.manifest, store.failures, store.rollback, store.find):
            with pytest.raises(InputError, match=r"^invalid release id .*: use 32 lowercase hex"):
                read(crafted)
    for customer in CRAFTED_CUSTOMERS:
        with pytest.raises(InvalidCustomerIdError, match=r"^invalid customer id "):
            store.rollback_customer(customer)
        with pytest.raises(InvalidCustomerIdError):
            store.production_manifest(changed=[customer])
    assert [(e.event, e.release_id) for e in store.events()] == [("register", md5)]  # no pin recorded


def test_filter_values_that_could_close_their_quotes_are_refused() -> None:
    assert filter_value("adapter-acme_air") == "'adapter-acme_air'"
    for value in ("o'brien", "a\\", "x\\' or 1=1"):
        with pytest.raises(InputError, match="cannot be searched for in MLflow"):
            filter_value(value)


def test_stray_runs_in_the_releases_experiment_are_skipped_with_one_warning_each(
    release_store: ReleaseStore, publish: Publish, caplog: pytest.LogCaptureFixture
) -> None:
    store = release_store
    publish("acme_air")
    release = store.register(store.production_manifest())
    strays = []
    for tags in (
        {},
        {"retrain.release_id": "not-an-md5", "retrain.event": "register"},
        {"retrain.release_id": "0" * 32},
        {"retrain.release_id": "0" * 32, "retrain.event": "register", "retrain.adapter_count": "many"},
        {"retrain.release_id": release.release_id, "retrain.event": "celebrate"},
    ):
        run = store.client.create_run(store.experiment_id, tags=tags)
        store.client.set_terminated(run.info.run_id, status="FINISHED")
        strays.append(run.info.run_id)
    with caplog.at_level("WARNING", logger="retrain.release.store"):
        assert [e.run_id for e in store.events()] == [release.run_id]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for run_id in strays:
        assert (
            len([w for w in warned if w.startswith(f"run {run_id} in retrain-releases is not a release")])
            == 1
        )
    assert len(warned) == len(strays)
    assert store.latest() == store.find(release.release_id) == release
    assert store.manifest(release.release_id).release_id == release.release_id


def test_a_broken_or_altered_stored_manifest_is_a_one_line_error(
    release_store: ReleaseStore, publish: Publish
) -> None:
    store = release_store
    publish("acme_air")
    release = store.register(store.production_manifest())
    stored = (
        Path(store.client.get_run(release.run_id).info.artifact_uri.removeprefix("file://")) / "manifest.json"
    )
    original = stored.read_bytes()
    altered = json.loads(original)
    altered["adapters"][0]["version"] = "7"
    broken = [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"adapters": 5}',
        b'{"adapters": [{"customer": "acme_air"}]}',
        original.replace(b'"customer":"acme_air"', b'"customer":"../acme_air"'),
        original.replace(b'"adapters":[{', b'"adapters":[{"extra":1,'),
        original.replace(b'"roc_auc":0.9', b'"roc_auc":"high"'),
        original.replace(b'"sha256":{"', b'"sha256":{"../../', 1),
    ]
    for text in broken:
        stored.write_bytes(text)
        with pytest.raises(ReleaseError) as raised:
            store.manifest(release.release_id)
        assert str(raised.value).startswith(
            f"release {release.release_id}'s stored manifest (run {release.run_id}) is unreadable: "
        )
        assert "\n" not in str(raised.value)
    stored.write_text(json.dumps(altered))  # valid, but not the manifest registered under this id
    tampered = Manifest.from_json(stored.read_bytes()).release_id
    with pytest.raises(ReleaseError, match=f"stored manifest .* hashes to {tampered}: altered after"):
        store.manifest(release.release_id)
    with pytest.raises(ReleaseError, match="hashes to"):
        store.rollback(release.release_id)
    stored.write_bytes(original)
    assert store.manifest(release.release_id).release_id == release.release_id


def test_each_adapter_file_is_recorded_by_sha256_and_reused_for_released_versions(
    release_store: ReleaseStore, publish: Publish
) -> None:
    store = release_store
    publish("acme_air")
    (entry,) = store.production_manifest().adapters
    root = Path(entry.artifact_uri.removeprefix("file://"))
    assert entry.sha256 == {
        path: hashlib.sha256((root / path).read_bytes()).hexdigest()
        for path in ("MLmodel", "artifacts/adapter/adapter_config.json", WEIGHTS)
    }
    release = store.register(store.production_manifest())
    assert store.manifest(release.release_id).by_customer()["acme_air"].sha256 == entry.sha256
    publish("globex_bank")
    (root / "MLmodel").write_text("flavors: {changed: true}\n")  # a released version is not read again
    incremental = store.production_manifest(changed=["globex_bank"])
    assert incremental.by_customer()["acme_air"].sha256 == entry.sha256
    assert incremental == store.production_manifest()


def test_a_truncated_adapter_fails_rollback_naming_customer_version_and_file(
    release_store: ReleaseStore, publish: Publish
) -> None:
    store = release_store
    publish("acme_air")
    first = store.register(store.production_manifest())
    publish("acme_air")
    second = store.register(store.production_manifest())
    weights = weights_of(store, "acme_air", "1")
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, not empty: the size check passes
    with pytest.raises(AdapterFilesError) as raised:
        store.rollback(first.release_id)
    assert str(raised.value) == (
        f"adapter of customer acme_air (adapter-acme_air v1): {WEIGHTS} does not match the SHA-256 "
        "in the release manifest (truncated or altered)"
    )
    assert str(store.client.get_model_version_by_alias("adapter-acme_air", PRODUCTION_ALIAS).version) == "2"
    assert store.latest() == second  # nothing recorded, production untouched
    weights.unlink()
    with pytest.raises(ReleaseError, match=f"has no \\(or an empty\\) {WEIGHTS}"):
        store.rollback(first.release_id)


def test_build_checks_the_artifacts_of_a_release_already_in_production(
    release_store: ReleaseStore, publish: Publish
) -> None:
    store = release_store
    publish("acme_air")
    release = store.register(store.production_manifest())
    assert store.register(store.production_manifest()) == release  # unchanged: recorded once
    weights_of(store, "acme_air", "1").write_bytes(b"")
    with pytest.raises(
        ReleaseError, match=r"customer acme_air \(adapter-acme_air v1\) has no \(or an empty\)"
    ):
        store.register(store.production_manifest())
    assert store.events() == [release]


def test_mlflow_failures_become_one_line_retrain_errors(
    release_store: ReleaseStore, publish: Publish
) -> None:
    store = release_store
    publish("acme_air")
    first = store.register(store.production_manifest())
    publish("globex_bank")
    store.register(store.production_manifest())
    store.client.delete_registered_model("adapter-acme_air")  # deleted outside the suite
    with pytest.raises(TrackingNotFoundError) as raised:
        store.rollback(first.release_id)
    assert "adapter-acme_air" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert (raised.value.exit_code, raised.value.http_status, raised.value.retryable) == (1, 404, False)
