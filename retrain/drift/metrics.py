"""One customer's day of scored rows against its adapter's reference: drift metrics and statuses.

Statistics come from scipy: PSI is the symmetric Kullback-Leibler divergence of the binned shares
(``scipy.special.rel_entr`` both ways), JS the Jensen-Shannon distance (base 2, from 0 to 1). Bins are
the reference's quantile bins, and both sides get half a row per bin so an empty bin stays finite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from retrain.drift.reference import DriftReference, FeatureBins
from retrain.errors import InputError
from retrain.identifiers import InvalidIdentifierError, customer_id

Status = Literal["ok", "drift", "insufficient", "no_reference"]
STATUSES: tuple[Status, ...] = ("ok", "drift", "insufficient", "no_reference")

# metric -> (per-row features, statistic). A PSI over several features is the sum of theirs: the
# PSI of their joint distribution if they were independent (KL divergence adds over independent
# coordinates), so a shift that moves the embedding a little along each of them still adds up.
# ``volume_change`` compares the day's rows with the mean of the customer's previous days in the
# ``drift`` table (a ratio: alarmed above t or below 1/t).
DISTRIBUTION_METRICS: dict[str, tuple[tuple[str, ...], Literal["psi", "js"]]] = {
    "length_psi": (("tokens",), "psi"),
    "novelty_psi": (("novelty",), "psi"),
    "embedding_psi": (("embedding_distance", "embedding_pc1", "embedding_pc2"), "psi"),
    "score_psi": (("score",), "psi"),
    "score_js": (("score",), "js"),
}
ROWS, VOLUME = "rows", "volume_change"
METRICS = (ROWS, *DISTRIBUTION_METRICS, VOLUME)
# PSI above 0.25 is the usual "significant shift"; these sit higher because a day's sample against a
# holdout of tens of rows alone gives PSIs up to ~0.6 (tests/retrain/drift/test_planted_shift.py).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "length_psi": 1.0,
    "novelty_psi": 1.0,
    "embedding_psi": 1.5,  # a sum over three coordinates (see DISTRIBUTION_METRICS)
    "score_psi": 1.0,
    "score_js": 0.4,
    VOLUME: 3.0,
}
DEFAULT_MIN_ROWS = 100
MIN_REFERENCE_ROWS = 20


class ThresholdsError(InputError):
    """A thresholds setting is malformed; the message names the file, customer or metric."""


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float | None
    threshold: float | None
    status: Status


@dataclass(frozen=True)
class Thresholds:
    """Defaults per metric, overridden per customer. Days with fewer than ``min_rows`` rows, and
    references measured on fewer than ``min_reference_rows`` holdout rows, are ``insufficient``:
    never alarmed."""

    defaults: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    customers: dict[str, dict[str, float]] = field(default_factory=dict)
    min_rows: int = DEFAULT_MIN_ROWS
    min_reference_rows: int = MIN_REFERENCE_ROWS

    def for_customer(self, customer: str) -> dict[str, float]:
        return {**self.defaults, **self.customers.get(customer, {})}

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], source: str = "drift thresholds") -> Thresholds:
        """Settings ``{"defaults": {m: t}, "customers": {c: {m: t}}, "min_rows": n,
        "min_reference_rows": n}``, each key optional."""
        unknown = set(settings) - {"defaults", "customers", "min_rows", "min_reference_rows"}
        if unknown:
            raise ThresholdsError(
                f"{source}: unknown key(s) {sorted(unknown)} "
                "(use defaults, customers, min_rows, min_reference_rows)"
            )
        defaults = {
            **DEFAULT_THRESHOLDS,
            **_metric_values(settings.get("defaults", {}), f"{source} defaults"),
        }
        customers = {}
        for customer, values in dict(settings.get("customers", {})).items():
            try:
                customer_id(customer)
            except InvalidIdentifierError as error:
                raise ThresholdsError(f"{source}: {error}") from None
            customers[customer] = _metric_values(values, f"{source} customer {customer!r}")
        counts = {"min_rows": DEFAULT_MIN_ROWS, "min_reference_rows": MIN_REFERENCE_ROWS}
        for name, default in counts.items():
            value = counts[name] = settings.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ThresholdsError(f"{source}: {name} must be a positive integer, got {value!r}")
        return cls(defaults, customers, counts["min_rows"], counts["min_reference_rows"])

    @classmethod
    def from_file(cls, path: Path) -> Thresholds:
        try:
            settings = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise ThresholdsError(f"drift thresholds file {path}: {error}") from None
        if not isinstance(settings, dict):
            raise ThresholdsError(f"drift thresholds file {path}: expected a JSON object")
        return cls.from_mapping(settings, f"drift thresholds file {path}")


def _metric_values(values: Any, source: str) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ThresholdsError(f"{source}: expected an object of metric -> threshold")
    out = {}
    for metric, value in values.items():
        if metric not in DEFAULT_THRESHOLDS:
            raise ThresholdsError(
                f"{source}: unknown metric {metric!r} (one of {sorted(DEFAULT_THRESHOLDS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ThresholdsError(f"{source}: threshold of {metric} must be a positive number, got {value!r}")
        out[metric] = float(value)
    return out


def psi(bins: FeatureBins, values: np.ndarray) -> float:
    """Population stability index of ``values`` against the reference's shares."""
    live, expected = _smoothed(bins, values)
    return float((rel_entr(live, expected) + rel_entr(expected, live)).sum())


def js_distance(bins: FeatureBins, values: np.ndarray) -> float:
    live, expected = _smoothed(bins, values)
    return float(jensenshannon(live, expected, base=2))


def _smoothed(bins: FeatureBins, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = bins.counts(values) + 0.5
    reference = np.asarray(bins.shares, dtype=np.float64) * max(1, len(values)) + 0.5
    return counts / counts.sum(), reference / reference.sum()


def customer_day(
    reference: DriftReference | None,
    values: Mapping[str, np.ndarray],
    rows: int,
    thresholds: Mapping[str, float],
    min_rows: int,
    previous_rows: float | None,
    min_reference_rows: int = MIN_REFERENCE_ROWS,
) -> list[MetricValue]:
    """Every metric of :data:`METRICS` for one customer's day.

    :param values: the day's per-row values (:func:`retrain.drift.values.row_values`); may be empty.
    :param previous_rows: the customer's mean rows a day over the previous days, if any were recorded.
    """
    enough = rows >= min_rows
    result = [MetricValue(ROWS, float(rows), float(min_rows), "ok" if enough else "insufficient")]
    for metric, (features, statistic) in DISTRIBUTION_METRICS.items():
        threshold = thresholds[metric]
        if reference is None:
            result.append(MetricValue(metric, None, threshold, "no_reference"))
            continue
        columns = {f: np.asarray(values.get(f, np.empty(0)), dtype=np.float64) for f in features}
        columns = {f: column[~np.isnan(column)] for f, column in columns.items()}
        measured = min(len(column) for column in columns.values())
        if not measured:  # rows scored before their features were recorded
            result.append(MetricValue(metric, None, threshold, "insufficient"))
            continue
        measure = psi if statistic == "psi" else js_distance
        value = sum(measure(reference.bins[f], column) for f, column in columns.items())
        trusted = enough and measured >= min_rows and reference.rows >= min_reference_rows
        status: Status = "insufficient" if not trusted else "drift" if value > threshold else "ok"
        result.append(MetricValue(metric, value, threshold, status))
    result.append(_volume(rows, previous_rows, thresholds[VOLUME], min_rows))
    return result


def _volume(rows: int, previous_rows: float | None, threshold: float, min_rows: int) -> MetricValue:
    if not previous_rows or not math.isfinite(previous_rows):
        return MetricValue(VOLUME, None, threshold, "insufficient")
    ratio = rows / previous_rows
    if rows < min_rows:  # a day with too few rows is never alarmed, its volume included
        return MetricValue(VOLUME, ratio, threshold, "insufficient")
    status: Status = "drift" if ratio > threshold or ratio < 1 / threshold else "ok"
    return MetricValue(VOLUME, ratio, threshold, status)
