"""Manifests: canonical JSON, MD5 stable under reordering, diffs."""

from __future__ import annotations

import hashlib

import pytest

from retrain.release.manifest import AdapterEntry, Manifest, diff


def entry(customer: str, version: str = "1", auc: float = 0.9) -> AdapterEntry:
    return AdapterEntry(customer, f"adapter-{customer}", version, f"run-{customer}-{version}", "c" * 40,
                        f"file:///store/{customer}/{version}", {"roc_auc": auc, "accuracy": 0.8})  # fmt: skip


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
