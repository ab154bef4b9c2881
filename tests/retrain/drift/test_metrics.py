"""One customer's day against its reference: statuses, thresholds and their settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from retrain.drift.metrics import (
    DEFAULT_THRESHOLDS,
    METRICS,
    Thresholds,
    ThresholdsError,
    customer_day,
    js_distance,
    psi,
)
from retrain.drift.reference import FEATURES, DriftReference, FeatureBins


def reference_of(values: dict[str, np.ndarray], rows: int = 200) -> DriftReference:
    bins = {name: FeatureBins.of(values[name]) for name in FEATURES}
    empty = np.zeros(4, dtype=np.float32)
    return DriftReference(rows, np.zeros(10, dtype=bool), empty, np.zeros((2, 4), dtype=np.float32), bins)


def sample(rng: np.random.Generator, rows: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "tokens": rng.poisson(14, rows).astype(float),
        "novelty": np.clip(rng.normal(0.02, 0.02, rows), 0, 1),
        "embedding_distance": rng.gamma(2.0, 0.1, rows) + shift,
        "embedding_pc1": rng.normal(0, 1, rows),
        "embedding_pc2": rng.normal(0, 0.5, rows),
        "score": rng.beta(2, 5, rows),
    }


def statuses(day: list) -> dict[str, str]:
    return {value.metric: value.status for value in day}


def test_a_fresh_sample_is_ok_and_a_moved_embedding_is_flagged() -> None:
    rng = np.random.default_rng(1)
    reference = reference_of(sample(rng, 200))
    fresh = customer_day(reference, sample(rng, 300), 300, DEFAULT_THRESHOLDS, 100, 290.0)
    assert statuses(fresh) == dict.fromkeys(METRICS, "ok")
    moved = customer_day(reference, sample(rng, 300, shift=0.3), 300, DEFAULT_THRESHOLDS, 100, 290.0)
    flagged = [v for v in moved if v.status == "drift"]
    assert [v.metric for v in flagged] == ["embedding_psi"]
    assert flagged[0].value is not None
    assert flagged[0].value > 3 * DEFAULT_THRESHOLDS["embedding_psi"]


def test_psi_and_js_grow_with_the_shift_and_vanish_without_it() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=5000)
    bins = FeatureBins.of(values)
    assert psi(bins, values) < 1e-3
    assert js_distance(bins, values) < 0.02
    shifts = [psi(bins, values + shift) for shift in (0.25, 0.5, 1.0)]
    assert shifts == sorted(shifts)
    assert shifts[0] > 0.05
    assert 0 < js_distance(bins, values + 1.0) < 1


def test_too_few_rows_are_insufficient_never_alarmed() -> None:
    rng = np.random.default_rng(3)
    reference = reference_of(sample(rng, 200))
    day = customer_day(reference, sample(rng, 20, shift=1.0), 20, DEFAULT_THRESHOLDS, 100, 300.0)
    assert set(statuses(day).values()) == {"insufficient"}
    nothing = customer_day(reference, {}, 0, DEFAULT_THRESHOLDS, 100, None)
    assert set(statuses(nothing).values()) == {"insufficient"}


def test_a_thin_reference_is_insufficient_and_a_missing_one_is_named() -> None:
    rng = np.random.default_rng(4)
    thin = reference_of(sample(rng, 10), rows=10)
    day = statuses(customer_day(thin, sample(rng, 200, shift=1.0), 200, DEFAULT_THRESHOLDS, 100, None))
    assert day["embedding_psi"] == "insufficient"
    assert day["rows"] == "ok"
    none = statuses(customer_day(None, sample(rng, 200), 200, DEFAULT_THRESHOLDS, 100, None))
    assert {none[m] for m in ("length_psi", "novelty_psi", "embedding_psi", "score_psi", "score_js")} == {
        "no_reference"
    }


def test_volume_change_against_the_previous_days() -> None:
    rng = np.random.default_rng(5)
    reference = reference_of(sample(rng, 200))
    for rows, previous, status in (
        (400, 100.0, "drift"),
        (120, 100.0, "ok"),
        (100, 400.0, "drift"),
        (20, 150.0, "insufficient"),
    ):
        (volume,) = [
            v
            for v in customer_day(reference, {}, rows, DEFAULT_THRESHOLDS, 100, previous)
            if v.metric == "volume_change"
        ]
        assert volume.status == status, (rows, previous)
        assert volume.value == pytest.approx(rows / previous)


def test_thresholds_from_a_file_with_a_customer_override(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(
        json.dumps(
            {"defaults": {"score_psi": 0.8}, "customers": {"acme_air": {"score_psi": 2}}, "min_rows": 50}
        )
    )
    thresholds = Thresholds.from_file(path)
    assert thresholds.for_customer("acme_air")["score_psi"] == 2.0
    assert thresholds.for_customer("globex_bank")["score_psi"] == 0.8
    assert thresholds.for_customer("globex_bank")["score_js"] == DEFAULT_THRESHOLDS["score_js"]
    assert thresholds.min_rows == 50


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"defaults": {"score_pis": 1}}, "unknown metric 'score_pis'"),
        ({"customers": {"-acme": {"score_psi": 1}}}, "invalid customer id '-acme'"),
        (
            {"customers": {"acme": {"score_psi": -1}}},
            "customer 'acme': threshold of score_psi must be a positive",
        ),
        ({"min_rows": 0}, "min_rows must be a positive integer"),
        ({"threshold": {}}, "unknown key(s) ['threshold']"),
    ],
)
def test_bad_threshold_settings_are_named(settings: dict, named: str) -> None:
    with pytest.raises(ThresholdsError, match=re.escape(named)):
        Thresholds.from_mapping(settings, "param thresholds")


def test_a_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text("score_psi: 1")
    with pytest.raises(ThresholdsError, match=re.escape(str(path))):
        Thresholds.from_file(path)
