"""The promotion gate: a challenger replaces the customer's production version only if it is good
enough on its own and not worse than the version in production.

Two checks on holdout metrics:

- the **quality floor**, which every version must pass, a customer's first included: each floor
  metric at least its minimum (default ROC AUC >= 0.6), and no label the adapter never predicts
  on its holdout (a classifier that always answers ``routine`` is not promoted, whatever its
  accuracy). A customer whose first version fails it has no production adapter;
- **champion/challenger** on one metric with a tolerance.

The decision and both metrics are logged on the challenger's run (tags ``retrain.promotion``,
``retrain.promotion_reason``; metrics ``champion_<metric>`` and ``challenger_<metric>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrain.adapters.registry import TAG_PREFIX, model_name, version_metrics
from retrain.adapters.training import HOLDOUT_METRICS, UNPREDICTED_LABELS
from retrain.errors import InputError
from retrain.release.store import PRODUCTION_ALIAS

DEFAULT_FLOOR: Mapping[str, float] = {"roc_auc": 0.6}
NO_PRODUCTION_ADAPTER = "no production adapter"
_METRIC_TITLES = {"roc_auc": "ROC AUC", "f1": "F1", "accuracy": "accuracy"}


class PromotionSettingsError(InputError):
    """A promotion metric, tolerance or quality floor that the gate cannot use."""


@dataclass(frozen=True)
class PromotionDecision:
    customer: str
    version: str
    promoted: bool
    metric: str
    challenger: float | None
    champion: float | None
    champion_version: str | None
    reason: str
    below_floor: bool = False  # rejected by the quality floor, not by the champion

    @property
    def no_production_adapter(self) -> bool:
        """A first version below the floor: the customer has no production adapter to release."""
        return self.below_floor and self.champion_version is None


def check_settings(metric: str, tolerance: float, floor: Mapping[str, float]) -> None:
    """Raise naming the setting when the gate cannot use it (before any alias moves)."""
    known = ", ".join(HOLDOUT_METRICS)
    if metric not in HOLDOUT_METRICS:
        raise PromotionSettingsError(f"unknown promotion metric {metric!r}: use one of {known}")
    if not isinstance(tolerance, int | float) or not math.isfinite(tolerance) or tolerance < 0:
        raise PromotionSettingsError(f"promotion tolerance must be a finite number >= 0, got {tolerance!r}")
    _check_floor(floor)


def _check_floor(floor: Mapping[str, float]) -> None:
    known = ", ".join(HOLDOUT_METRICS)
    for name, minimum in floor.items():
        if name not in HOLDOUT_METRICS:
            raise PromotionSettingsError(f"unknown quality floor metric {name!r}: use one of {known}")
        if not isinstance(minimum, int | float) or not 0 <= minimum <= 1:
            raise PromotionSettingsError(
                f"quality floor {name} must be a number between 0 and 1, got {minimum!r}"
            )


def parse_floor(items: list[str] | Mapping[str, Any] | None) -> dict[str, float]:
    """A floor from ``["roc_auc=0.6", ...]`` (CLI) or a mapping (DAG param); None: the default."""
    if items is None:
        return dict(DEFAULT_FLOOR)
    pairs: list[tuple[str, Any]] = []
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        for item in items:
            name, sep, value = str(item).partition("=")
            if not sep:
                raise PromotionSettingsError(f"quality floor takes METRIC=MINIMUM, got {item!r}")
            pairs.append((name.strip(), value))
    floor: dict[str, float] = {}
    for name, value in pairs:
        try:
            floor[str(name)] = float(value)
        except (TypeError, ValueError):
            raise PromotionSettingsError(f"quality floor {name} must be a number, got {value!r}") from None
    _check_floor(floor)
    return floor


def floor_failure(metrics: Mapping[str, float], floor: Mapping[str, float]) -> str | None:
    """Why a version with holdout ``metrics`` is below ``floor``, or None when it passes.

    A floor metric the version lacks (e.g. ROC AUC when its holdout held one class) fails: the
    gate promotes what it can show is good enough, not what it cannot measure.
    """
    for name, minimum in sorted(floor.items()):
        title = _METRIC_TITLES.get(name, name)
        value = metrics.get(name)
        if value is None:
            return f"no holdout {title} to hold against floor {minimum:g}"
        if value < minimum:
            return f"{title} {value:.2f} < floor {minimum:g}"
    unpredicted = metrics.get(UNPREDICTED_LABELS)
    if unpredicted:
        return f"never predicts {int(unpredicted)} of its labels on its holdout"
    return None


def promote(
    client: Any,
    customer: str,
    version: str,
    *,
    metric: str = "roc_auc",
    tolerance: float = 0.01,
    floor: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """Move ``adapter-<customer>``'s production alias to ``version`` when it passes ``floor`` and is
    not worse than the current one by more than ``tolerance`` on ``metric`` (accuracy when either
    version lacks ``metric``, and the reason says so).

    :param floor: minimum holdout metrics: the pipeline's callers (DAGs, ``retrain release build``,
        the demo) pass :func:`parse_floor` of their setting, :data:`DEFAULT_FLOOR` unless set;
        ``{}`` checks only that the adapter predicts each label of its holdout; ``None`` (the
        default) checks nothing, for adapters trained on a few rows (tests, benchmarks).
    """
    from mlflow.exceptions import MlflowException

    check_settings(metric, tolerance, floor or {})
    name = model_name(customer)
    challenger = client.get_model_version(name, version)
    try:
        champion = client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
    except MlflowException:
        champion = None
    new, old = version_metrics(challenger), version_metrics(champion) if champion else {}
    used = metric if metric in new and (champion is None or metric in old) else "accuracy"
    fallback = f" ({metric} missing, compared accuracy)" if used != metric else ""
    ours, theirs = new.get(used), old.get(used)
    below = floor_failure(new, floor) if floor is not None else None
    if champion is not None and str(champion.version) == str(version):
        promoted, reason = True, "already in production"
    elif below is not None:
        kept = f"production stays v{champion.version}" if champion else NO_PRODUCTION_ADAPTER
        promoted, reason = False, f"{kept}: {below}"
    elif champion is None:
        promoted, reason = True, "no production version yet"
    elif ours is None:
        promoted, reason = False, f"challenger has no {used} metric"
    elif theirs is None or ours >= theirs - tolerance:
        promoted, reason = (
            True,
            f"{used} {ours:.4f} vs production v{champion.version} {theirs}; tolerance {tolerance}{fallback}",
        )
    else:
        promoted, reason = (
            False,
            f"{used} {ours:.4f} is worse than production v{champion.version} {theirs:.4f} "
            f"by more than {tolerance}{fallback}",
        )
    if promoted:
        client.set_registered_model_alias(name, PRODUCTION_ALIAS, str(version))
    run_id = str(challenger.run_id)
    client.set_tag(run_id, f"{TAG_PREFIX}promotion", "promoted" if promoted else "rejected")
    client.set_tag(run_id, f"{TAG_PREFIX}promotion_reason", reason)
    if ours is not None:
        client.log_metric(run_id, f"challenger_{used}", ours)
    if theirs is not None:
        client.log_metric(run_id, f"champion_{used}", theirs)
    return PromotionDecision(
        customer,
        str(version),
        promoted,
        used,
        ours,
        theirs,
        str(champion.version) if champion else None,
        reason,
        below_floor=below is not None and not promoted,
    )


def floor_failures(decisions: list[PromotionDecision]) -> dict[str, str]:
    """Customer -> reason for each customer left without a production adapter by the floor: the
    ``failures`` a release records and the Releases view shows."""
    return {d.customer: d.reason for d in decisions if d.no_production_adapter}


def first_versions_below_floor(
    client: Any, candidates: Mapping[str, str], floor: Mapping[str, float]
) -> dict[str, str]:
    """Customer -> reason for each candidate that would leave its customer without a production
    adapter, found without moving any alias (to withhold a whole release before promoting)."""
    from mlflow.exceptions import MlflowException

    found: dict[str, str] = {}
    for customer, version in sorted(candidates.items()):
        name = model_name(customer)
        try:
            client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
            continue
        except MlflowException:
            pass
        below = floor_failure(version_metrics(client.get_model_version(name, version)), floor)
        if below is not None:
            found[customer] = f"{NO_PRODUCTION_ADAPTER}: {below}"
    return found
