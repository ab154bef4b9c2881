"""Drift references: written and read back exactly, bins as documented, bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrain.drift.reference import (
    FEATURES,
    REFERENCE_FILE,
    DriftReference,
    DriftReferenceError,
    FeatureBins,
    read_references,
)


def reference(seed: int = 0) -> DriftReference:
    rng = np.random.default_rng(seed)
    vocabulary = rng.random(30522) < 0.01
    bins = {name: FeatureBins.of(rng.normal(size=200)) for name in FEATURES}
    components = rng.normal(size=(2, 384)).astype(np.float32)
    return DriftReference(40, vocabulary, rng.normal(size=384).astype(np.float32), components, bins)


def test_a_reference_round_trips_through_its_file_and_stays_small(tmp_path: Path) -> None:
    original = reference()
    path = original.write(tmp_path)
    read = DriftReference.read(path)
    assert path.name == REFERENCE_FILE
    assert read.rows == 40
    assert np.array_equal(read.vocabulary, original.vocabulary)
    assert np.allclose(read.centroid, original.centroid, atol=1e-6)
    assert np.allclose(read.components, original.components, atol=1e-6)
    assert read.bins == original.bins
    assert path.stat().st_size < 40_000  # a few kB a customer, not rows


def test_bins_are_right_closed_quantile_bins_with_open_ends() -> None:
    bins = FeatureBins.of(np.arange(1.0, 11.0))  # 1..10: quintile edges 2.8, 4.6, 6.4, 8.2
    assert bins.edges == pytest.approx((2.8, 4.6, 6.4, 8.2))
    assert bins.shares == pytest.approx((0.2,) * 5)
    assert bins.counts(np.array([-100.0, 2.8, 2.81, 100.0])).tolist() == [2, 1, 0, 0, 1]


def test_a_point_mass_keeps_one_bin_for_itself() -> None:
    bins = FeatureBins.of(np.array([0.0] * 30 + [0.1, 0.2]))  # most rows have no unseen token
    assert bins.edges == (0.0,)
    assert bins.counts(np.array([0.0, 0.0, 0.05])).tolist() == [2, 1]


def test_missing_and_corrupt_references_are_named_not_raised(tmp_path: Path) -> None:
    good, missing, corrupt, truncated = (
        tmp_path / name for name in ("good", "missing", "corrupt", "truncated")
    )
    for folder in (good, missing, corrupt, truncated):
        folder.mkdir()
    reference().write(good)
    (corrupt / REFERENCE_FILE).write_text("{not json")
    text = reference().to_json()
    (truncated / REFERENCE_FILE).write_text(text.replace('"score"', '"scores"'))
    references, why = read_references(
        {"good": good, "missing": missing, "corrupt": corrupt, "truncated": truncated}
    )
    assert list(references) == ["good"]
    assert "no drift_reference.json" in why["missing"]
    assert str(corrupt / REFERENCE_FILE) in why["corrupt"]
    assert "expected one set per feature" in why["truncated"]
    with pytest.raises(DriftReferenceError, match=r"corrupt/drift_reference\.json is unreadable"):
        DriftReference.read(corrupt / REFERENCE_FILE)
