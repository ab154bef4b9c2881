"""From trained candidates to a registered release: the one promote-then-register of the suite.

``BuildReleaseOperator``, ``retrain release build``, ``make demo``, the tests' helpers and the
benchmarks all call :func:`promote_all`; each of them only prints or logs what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrain import identifiers
from retrain.release.manifest import Manifest
from retrain.release.promotion import (
    DEFAULT_FLOOR,
    PromotionDecision,
    check_settings,
    first_versions_below_floor,
    floor_failures,
    promote,
)
from retrain.release.store import ReleaseError, ReleaseEvent, ReleaseStore


@dataclass(frozen=True)
class ReleaseBuild:
    """What :func:`promote_all` did: the gate's decision per candidate and the release registered.

    ``failures`` (customer -> reason) are recorded with the release: the training failures it was
    given and each customer left without a production adapter by the floor. ``previous`` is the
    release in production before (None for the first release).
    """

    event: ReleaseEvent
    manifest: Manifest
    decisions: tuple[PromotionDecision, ...]
    failures: dict[str, str]
    previous: ReleaseEvent | None

    def decision_lines(self) -> list[str]:
        """One line per candidate: ``promoted acme_air v3: <reason>``."""
        return [
            f"{'promoted' if d.promoted else 'rejected'} {d.customer} v{d.version}: {d.reason}"
            for d in self.decisions
        ]

    def promotions(self) -> list[dict[str, Any]]:
        """The decisions as JSON-safe records (customer, version, promoted, reason)."""
        return [
            {"customer": d.customer, "version": d.version, "promoted": d.promoted, "reason": d.reason}
            for d in self.decisions
        ]


def promote_all(
    store: ReleaseStore,
    candidates: Mapping[str, str],
    *,
    metric: str = "roc_auc",
    tolerance: float = 0.01,
    floor: Mapping[str, float] | None = DEFAULT_FLOOR,
    require_floor: bool = False,
    changed_only: bool = False,
    training_failures: Mapping[str, str] | None = None,
) -> ReleaseBuild:
    """Pass each candidate (customer -> model version) through the promotion gate, then register
    every customer's production version as a release.

    :param floor: minimum holdout metrics (:func:`~retrain.release.promotion.promote`); None
        promotes without a floor (adapters trained on a handful of rows).
    :param require_floor: withhold the whole release, moving no alias, when a candidate is its
        customer's first version and below the floor (:class:`ReleaseError` naming them).
    :param changed_only: build the manifest from the release in production, reading only the
        candidates' aliases (flat in the number of customers); else from the whole registry, which
        also picks up an alias moved by hand.
    :param training_failures: customers whose training failed (customer -> reason), recorded with
        the release; they keep their previous production adapter.
    """
    check_settings(metric, tolerance, floor or {})
    versions = {identifiers.customer_id(c): str(v) for c, v in sorted(candidates.items())}
    if floor is not None and require_floor:
        below = first_versions_below_floor(store.client, versions, floor)
        if below:
            raise ReleaseError(
                "release withheld (require_floor): "
                + "; ".join(f"{customer}: {reason}" for customer, reason in below.items())
            )
    decisions = tuple(
        promote(store.client, customer, version, metric=metric, tolerance=tolerance, floor=floor)
        for customer, version in versions.items()
    )
    failures = {**(training_failures or {}), **floor_failures(list(decisions))}
    previous = store.latest()
    manifest = store.production_manifest(changed=list(versions) if changed_only else None)
    event = store.register(manifest, failures=failures)
    return ReleaseBuild(event, manifest, decisions, dict(sorted(failures.items())), previous)
