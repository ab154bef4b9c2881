"""Manifests: canonical JSON, MD5 stable under reordering, diffs."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from retrain.release.manifest import (
    AdapterEntry,
    AdapterFilesError,
    InvalidManifestError,
    Manifest,
    diff,
    file_digests,
)


def entry(customer: str, version: str = "1", auc: float = 0.9) -> AdapterEntry:
    return AdapterEntry(
        customer,
        f"adapter-{customer}",
        version,
        f"run-{customer}-{version}",
        "c" * 40,
        f"file:///store/{customer}/{version}",
        {"roc_auc": auc, "accuracy": 0.8},
    )


def test_md5_is_stable_under_reordering_and_is_the_canonical_json_digest() -> None:
    a = Manifest((entry("b"), entry("a"), entry("c")))
    b = Manifest((entry("c"), entry("a"), entry("b")))
    assert a.canonical_json() == b.canonical_json()
    assert a.release_id == b.release_id == hashlib.md5(a.canonical_json().encode()).hexdigest()
    assert " " not in a.canonical_json()
    assert Manifest.from_json(a.canonical_json()) == a


def test_any_change_changes_the_id() -> None:
    base = Manifest((entry("a"), entry("b")))
    assert Manifest((entry("a"), entry("b", version="2"))).release_id != base.release_id
    assert Manifest((entry("a"),)).release_id != base.release_id
    assert Manifest((entry("a"), entry("b", auc=0.91))).release_id != base.release_id
    assert Manifest((entry("a"), entry("b", auc=0.9 + 1e-9))).release_id == base.release_id  # rounding noise


def test_one_adapter_per_customer() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        Manifest((entry("a"), entry("a", version="2")))


def test_diff_names_added_removed_and_changed_with_metric_deltas() -> None:
    old = Manifest((entry("a"), entry("b"), entry("c")))
    new = Manifest((entry("a"), entry("b", version="2", auc=0.95), entry("d")))
    changes = diff(old, new)
    assert [a.customer for a in changes.added] == ["d"]
    assert [a.customer for a in changes.removed] == ["c"]
    assert [(o.version, n.version) for o, n in changes.changed] == [("1", "2")]
    assert "~ b: v1 -> v2" in "\n".join(changes.lines())
    assert "roc_auc 0.900 -> 0.950 (+0.050)" in "\n".join(changes.lines())
    assert diff(old, old).empty


# A manifest as registered before entries recorded file digests: it must load under the same id.
OLD_MANIFEST = (
    '{"adapters":[{"artifact_uri":"file:///store/a/1","commit":"' + "c" * 40 + '","customer":"a",'
    '"metrics":{"accuracy":0.8,"roc_auc":0.9},"model_name":"adapter-a","run_id":"run-a-1","version":"1"}],'
    '"format":1}'
)


def test_a_manifest_from_before_file_digests_keeps_its_release_id() -> None:
    old = Manifest.from_json(OLD_MANIFEST)
    assert old.release_id == hashlib.md5(OLD_MANIFEST.encode()).hexdigest()
    assert old.canonical_json() == OLD_MANIFEST
    assert old.adapters[0].sha256 == {}
    digested = Manifest((replace(old.adapters[0], sha256={"MLmodel": "0" * 64}),))
    assert digested.release_id != old.release_id  # the digests are part of what was released
    assert Manifest.from_json(digested.canonical_json()) == digested


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        b"\xff\xfe",
        "[]",
        "{}",
        '{"adapters": 5}',
        '{"adapters": [5]}',
        '{"adapters": [{"customer": "a"}]}',
        OLD_MANIFEST.replace('"customer":"a"', '"customer":"../a"'),
        OLD_MANIFEST.replace('"customer":"a"', '"customer":7'),
        OLD_MANIFEST.replace('"version":"1"', '"version":1'),
        OLD_MANIFEST.replace('"roc_auc":0.9', '"roc_auc":"high"'),
        OLD_MANIFEST.replace('"metrics":{', '"sha256":{"../../etc/passwd":"00"},"metrics":{'),
        OLD_MANIFEST.replace('"metrics":{', '"sha256":{"/etc/passwd":"00"},"metrics":{'),
        OLD_MANIFEST.replace('"metrics":{', '"sha256":[],"metrics":{'),
        OLD_MANIFEST.replace('"metrics":{', '"extra":1,"metrics":{'),
        OLD_MANIFEST.replace('"adapters":[', '"adapters":[' + OLD_MANIFEST[13:-13] + ","),  # repeated
    ],
)
def test_text_that_is_not_a_manifest_is_a_one_line_input_error(text: str | bytes) -> None:
    with pytest.raises(InvalidManifestError, match=r"^not a release manifest: ") as raised:
        Manifest.from_json(text)
    assert "\n" not in str(raised.value)


def test_check_files_names_the_missing_or_changed_file(tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "artifacts" / "w.bin").write_bytes(b"weights")
    digests = file_digests(tmp_path)
    assert digests == {
        "MLmodel": hashlib.sha256(b"flavors: {}\n").hexdigest(),
        "artifacts/w.bin": hashlib.sha256(b"weights").hexdigest(),
    }
    adapter = replace(entry("a"), sha256=digests)
    adapter.check_files(tmp_path)
    (tmp_path / "artifacts" / "w.bin").write_bytes(b"weight")
    with pytest.raises(
        AdapterFilesError, match=r"^adapter of customer a \(adapter-a v1\): artifacts/w.bin does not"
    ):
        adapter.check_files(tmp_path)
    (tmp_path / "artifacts" / "w.bin").unlink()
    with pytest.raises(AdapterFilesError, match=r"artifacts/w.bin is missing$"):
        adapter.check_files(tmp_path)
