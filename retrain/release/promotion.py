"""The promotion gate: a challenger replaces the customer's production version only if it is not worse.

Champion/challenger on a holdout metric with a tolerance. The decision and both metrics are
logged on the challenger's run (tags ``retrain.promotion``, ``retrain.promotion_reason``; metrics
``champion_<metric>`` and ``challenger_<metric>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrain.adapters.registry import TAG_PREFIX, model_name, version_metrics
from retrain.release.store import PRODUCTION_ALIAS


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


def promote(
    client: Any, customer: str, version: str, *, metric: str = "roc_auc", tolerance: float = 0.01
) -> PromotionDecision:
    """Move ``adapter-<customer>``'s production alias to ``version`` unless it is worse than the
    current one by more than ``tolerance`` on ``metric`` (accuracy when either lacks ``metric``)."""
    from mlflow.exceptions import MlflowException

    name = model_name(customer)
    challenger = client.get_model_version(name, version)
    try:
        champion = client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
    except MlflowException:
        champion = None
    new, old = version_metrics(challenger), version_metrics(champion) if champion else {}
    used = metric if metric in new and (champion is None or metric in old) else "accuracy"
    ours, theirs = new.get(used), old.get(used)
    if champion is None:
        promoted, reason = True, "no production version yet"
    elif str(champion.version) == str(version):
        promoted, reason = True, "already in production"
    elif ours is None:
        promoted, reason = False, f"challenger has no {used} metric"
    elif theirs is None or ours >= theirs - tolerance:
        promoted, reason = (
            True,
            f"{used} {ours:.4f} vs production v{champion.version} {theirs}; tolerance {tolerance}",
        )
    else:
        promoted, reason = (
            False,
            f"{used} {ours:.4f} is worse than production v{champion.version} {theirs:.4f} "
            f"by more than {tolerance}",
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
    )
