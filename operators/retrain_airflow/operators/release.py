"""ReleaseManifestOperator: promote trained adapters through the gate and register the release."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context

from retrain.release.manifest import diff
from retrain.release.promotion import (
    DEFAULT_FLOOR,
    check_settings,
    first_versions_below_floor,
    floor_failures,
    parse_floor,
    promote,
)
from retrain.release.store import SERVING_EVENTS, ReleaseError, ReleaseEvent, ReleaseStore
from retrain_airflow.handoff import bounded, resolve
from retrain_airflow.operators.training import as_flag

Action = Literal["build", "resolve", "rollback", "rollback_customer", "pin"]


class ReleaseManifestOperator(BaseOperator):
    """Run one release action against the MLflow registry and return what happened.

    ``build`` first passes ``candidates`` (customer -> model version, e.g. the ``adapters`` of an
    :class:`~retrain_airflow.operators.training.AdapterTrainingOperator`) through the promotion
    gate, then registers the production adapters as a release: ``{"release_id", "event",
    "changes", "diff", "promotions"}``, ``diff`` and ``promotions`` handed off as files when large
    (:mod:`retrain_airflow.handoff`). The release id (the manifest's MD5) is the serving image tag.
    ``failures`` (a partial training's failed customers) are recorded with the release and shown
    in the Releases view; those customers keep their previous production adapter. So is each
    customer whose first version is below the quality ``floor`` ("no production adapter: ROC AUC
    0.52 < floor 0.6"): the release goes out without it, unless ``require_floor``.

    ``resolve`` finds the release to score ``day`` with: ``release_id`` when given (checked to
    exist), else a pin covering the day, else the release in production that day, so a rerun or
    backfill of a day picks the same release.

    :param action: ``build``, ``resolve``, ``rollback`` (to ``release_id``), ``rollback_customer``
        or ``pin``.
    :param candidates: customer -> version (or a training result's ``adapters`` mapping), or a
        handoff reference to it (templated).
    :param failures: customer -> reason, or a handoff reference (templated); ``build`` only.
    :param metric: promotion metric; ``tolerance``: how much worse a challenger may be.
    :param floor: minimum holdout metrics every version must reach, e.g. ``{"roc_auc": 0.6}`` (the
        default), or a template of a DAG param; ``{}`` checks only that an adapter predicts each of
        its labels; None promotes without a floor (adapters trained on a handful of rows) (templated).
    :param require_floor: withhold the whole release (fail the task, moving no alias) when a
        customer's first version is below the floor (templated).
    :param release_id: the release to roll back to or pin (templated).
    :param customer: the customer to roll back (templated).
    :param pin_from: first day of a pin, ISO date (templated); ``pin_to``: last day (templated).
    :param day: the day ``resolve`` picks a release for, ISO date (templated).
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    template_fields: Sequence[str] = (
        "candidates", "failures", "floor", "require_floor", "release_id", "customer", "pin_from", "pin_to",
        "day",
    )  # fmt: skip

    def __init__(
        self,
        *,
        action: Action = "build",
        candidates: Mapping[str, Any] | str | None = None,
        failures: Mapping[str, str] | str | None = None,
        metric: str = "roc_auc",
        tolerance: float = 0.01,
        floor: Mapping[str, float] | str | None = DEFAULT_FLOOR,
        require_floor: bool | str = False,
        release_id: str | None = None,
        customer: str | None = None,
        pin_from: str | None = None,
        pin_to: str | None = None,
        day: str | None = None,
        mlflow_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_settings(metric, tolerance, DEFAULT_FLOOR)  # a bad metric or tolerance fails the DAG's import
        self.action, self.candidates, self.metric, self.tolerance = action, candidates, metric, tolerance
        self.floor, self.require_floor = floor, require_floor
        self.failures = failures
        self.release_id, self.customer, self.pin_from, self.pin_to = release_id, customer, pin_from, pin_to
        self.day, self.mlflow_uri = day, mlflow_uri

    def execute(self, context: Context) -> dict[str, Any]:
        store = ReleaseStore.open(self.mlflow_uri)
        promotions: list[dict[str, Any]] = []
        if self.action == "build":
            candidates: Mapping[str, Any] = _mapping("candidates", resolve(self.candidates))
            failures: dict[str, str] = dict(_mapping("failures", resolve(self.failures)))
            floor = None if self.floor is None else parse_floor(_mapping("floor", self.floor))
            versions = {
                customer: candidate["version"] if isinstance(candidate, Mapping) else str(candidate)
                for customer, candidate in candidates.items()
            }
            if (
                floor is not None
                and as_flag(self.require_floor)
                and (below := first_versions_below_floor(store.client, versions, floor))
            ):
                raise ReleaseError(
                    "release withheld (require_floor): "
                    + "; ".join(f"{customer}: {reason}" for customer, reason in below.items())
                )
            decisions = []
            for customer, version in sorted(versions.items()):
                decision = promote(
                    store.client, customer, version, metric=self.metric, tolerance=self.tolerance, floor=floor
                )
                decisions.append(decision)
                verdict = "promoted" if decision.promoted else "rejected"
                self.log.info("%s %s v%s: %s", verdict, customer, version, decision.reason)
                promotions.append({"customer": customer, "version": version, "promoted": decision.promoted,
                                   "reason": decision.reason})  # fmt: skip
            failures.update(floor_failures(decisions))
            previous = store.latest()
            for customer, reason in sorted(failures.items()):
                self.log.warning("not in this release: %s (%s)", customer, reason)
            # Only the candidates' aliases can have moved: the rest of the release stands as it is.
            manifest = store.production_manifest(changed=list(candidates))
            event = store.register(manifest, failures=failures)
        elif self.action == "resolve":
            previous, event = None, self._resolve(store)
        elif self.action == "rollback":
            previous, event = store.latest(), store.rollback(self._required("release_id", self.release_id))
        elif self.action == "rollback_customer":
            previous, event = (
                store.latest(),
                store.rollback_customer(self._required("customer", self.customer)),
            )
        elif self.action == "pin":
            start = dt.date.fromisoformat(self._required("pin_from", self.pin_from))
            end = dt.date.fromisoformat(self._required("pin_to", self.pin_to))
            previous, event = None, store.pin(self._required("release_id", self.release_id), start, end)
        else:
            raise ValueError(f"unknown release action {self.action!r}")
        changes: list[str] = []
        if previous is not None and previous.release_id != event.release_id:
            changes = diff(store.manifest(previous.release_id), store.manifest(event.release_id)).lines()
        for line in changes:
            self.log.info("%s", line)
        return {
            "release_id": event.release_id, "event": event.event, "changes": event.changes,
            "diff": bounded(changes, context=context, name="diff"),
            "promotions": bounded(promotions, context=context, name="promotions"), "note": event.note,
        }  # fmt: skip

    def _resolve(self, store: ReleaseStore) -> ReleaseEvent:
        if self.release_id:
            found = store.find(self.release_id, events=(*SERVING_EVENTS, "pin"))
            if found is None:
                raise ReleaseError(f"release {self.release_id!r} was never registered")
            return found
        day = dt.date.fromisoformat(self._required("day", self.day))
        found = store.for_day(day)
        if found is None:
            raise ReleaseError(f"no release was in production on {day} and no pin covers it")
        self.log.info("release for %s: %s (%s)", day, found.release_id, found.event)
        return found

    def _required(self, name: str, value: str | None) -> str:
        if not value:
            raise ValueError(f"release action {self.action!r} needs {name}")
        return value


def _mapping(name: str, value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{name} must map customers to values, got {type(value).__name__}; render it natively "
            "(DAG render_template_as_native_obj=True) or pass an XComArg"
        )
    return value
