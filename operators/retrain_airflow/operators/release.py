"""Release operators: build a release through the promotion gate, resolve, roll back or pin one.

Each returns ``{"release_id", "event", "changes", "diff", "promotions", "note"}``: the release
event it registered or found, and, when it changed what serves, the manifest diff from the release
in production before (logged line by line). ``diff`` and ``promotions`` are handed off as files
when large (:mod:`retrain_airflow.handoff`). The release id (the manifest's MD5) is the serving
image tag.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from retrain.errors import InputError
from retrain.release.build import promote_all
from retrain.release.manifest import diff
from retrain.release.promotion import DEFAULT_FLOOR, check_settings, parse_floor
from retrain.release.store import SERVING_EVENTS, ReleaseError, ReleaseEvent, ReleaseStore
from retrain_airflow.arguments import as_flag
from retrain_airflow.handoff import bounded, resolve
from retrain_airflow.lineage import EmitsLineage, Lineage, ModelVersion, Release
from retrain_airflow.operators.failures import fails_fast


class BaseReleaseOperator(EmitsLineage, BaseOperator):
    """Base of the release operators: the release store and the result every one of them returns.

    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    def __init__(self, *, mlflow_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_uri = mlflow_uri

    @cached_property
    def store(self) -> ReleaseStore:
        return ReleaseStore.open(self.mlflow_uri)

    def _result(
        self,
        context: Context,
        event: ReleaseEvent,
        *,
        previous: ReleaseEvent | None = None,
        promotions: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """What the task returns for ``event``, logging the diff from ``previous`` (the release in
        production before, for an operator that changes it)."""
        changes: list[str] = []
        if previous is not None and previous.release_id != event.release_id:
            changes = diff(
                self.store.manifest(previous.release_id), self.store.manifest(event.release_id)
            ).lines()
        for line in changes:
            self.log.info("%s", line)
        return {
            "release_id": event.release_id,
            "event": event.event,
            "changes": event.changes,
            "diff": bounded(changes, context=context, name="diff"),
            "promotions": bounded(list(promotions), context=context, name="promotions"),
            "note": event.note,
        }

    def _release(self, release_id: str) -> Release:
        """The release as a dataset of this operator's lineage."""
        return Release(self.store.tracking_uri, release_id)

    def _required(self, name: str, value: str | None) -> str:
        if not value:
            raise InputError(f"{type(self).__name__} needs {name}")
        return value


class BuildReleaseOperator(BaseReleaseOperator):
    """Pass trained adapters through the promotion gate, then register the production adapters as a
    release.

    ``candidates`` (customer -> model version, e.g. the ``adapters`` of an
    :class:`~retrain_airflow.operators.training.AdapterTrainingOperator`) go through the gate
    first; ``promotions`` in the result says what it decided for each. ``failures`` (a partial
    training's failed customers) are recorded with the release and shown in the Releases view;
    those customers keep their previous production adapter. So is each customer whose first
    version is below the quality ``floor`` ("no production adapter: ROC AUC 0.52 < floor 0.6"):
    the release goes out without it, unless ``require_floor``.

    :param candidates: customer -> version (or a training result's ``adapters`` mapping), or a
        handoff reference to it (templated).
    :param failures: customer -> reason, or a handoff reference (templated).
    :param metric: promotion metric.
    :param tolerance: how much worse than the production adapter a challenger may be.
    :param floor: minimum holdout metrics every version must reach, e.g. ``{"roc_auc": 0.6}`` (the
        default), or a template of a DAG param; ``{}`` checks only that an adapter predicts each of
        its labels; None promotes without a floor (adapters trained on a handful of rows) (templated).
    :param require_floor: withhold the whole release (fail the task, moving no alias) when a
        customer's first version is below the floor (templated).
    """

    template_fields: Sequence[str] = ("candidates", "failures", "floor", "require_floor")

    def __init__(
        self,
        *,
        candidates: Mapping[str, Any] | str | None = None,
        failures: Mapping[str, str] | str | None = None,
        metric: str = "roc_auc",
        tolerance: float = 0.01,
        floor: Mapping[str, float] | str | None = DEFAULT_FLOOR,
        require_floor: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_settings(metric, tolerance, DEFAULT_FLOOR)  # a bad metric or tolerance fails the DAG's import
        self.candidates, self.failures, self.metric, self.tolerance = candidates, failures, metric, tolerance
        self.floor, self.require_floor = floor, require_floor

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        candidates = _mapping("candidates", resolve(self.candidates), "customers to versions")
        failures = _mapping("failures", resolve(self.failures), "customers to reasons")
        floor = (
            None if self.floor is None else parse_floor(_mapping("floor", self.floor, "metrics to minimums"))
        )
        built = promote_all(
            self.store,
            {
                customer: candidate["version"] if isinstance(candidate, Mapping) else str(candidate)
                for customer, candidate in candidates.items()
            },
            metric=self.metric,
            tolerance=self.tolerance,
            floor=floor,
            require_floor=as_flag(self.require_floor),
            changed_only=True,  # only the candidates' aliases can have moved: the rest stands as it is
            training_failures=failures,
        )
        self.lineage = Lineage(
            inputs=tuple(
                ModelVersion(self.store.tracking_uri, a.model_name, a.version)
                for a in built.manifest.adapters
            ),
            outputs=(self._release(built.event.release_id),),
        )
        for line in built.decision_lines():
            self.log.info("%s", line)
        for customer, reason in built.failures.items():
            self.log.warning("not in this release: %s (%s)", customer, reason)
        return self._result(context, built.event, previous=built.previous, promotions=built.promotions())


class ResolveReleaseOperator(BaseReleaseOperator):
    """Find the release to score ``day`` with: ``release_id`` when given (checked to exist), else a
    pin covering the day, else the release in production that day, so a rerun or backfill of a day
    picks the same release.

    :param release_id: the release to use; empty picks by ``day`` (templated).
    :param day: the day to pick a release for, ISO date (templated).
    """

    template_fields: Sequence[str] = ("release_id", "day")

    def __init__(self, *, release_id: str | None = None, day: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release_id, self.day = release_id, day

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        found = self._find()
        self.lineage = Lineage(inputs=(self._release(found.release_id),))
        return self._result(context, found)

    def _find(self) -> ReleaseEvent:
        if self.release_id:
            found = self.store.find(self.release_id, events=(*SERVING_EVENTS, "pin"))
            if found is None:
                raise ReleaseError(f"release {self.release_id!r} was never registered")
            return found
        day = dt.date.fromisoformat(self._required("day", self.day))
        found = self.store.for_day(day)
        if found is None:
            raise ReleaseError(f"no release was in production on {day} and no pin covers it")
        self.log.info("release for %s: %s (%s)", day, found.release_id, found.event)
        return found


class RollbackReleaseOperator(BaseReleaseOperator):
    """Put a released state back in production and record it as a new release event.

    Give exactly one of ``release_id`` (every customer back to that release's version) or
    ``customer`` (only that customer, back to its version before the current one in the release
    history; the others keep theirs).

    :param release_id: the release to roll back to (templated).
    :param customer: the customer whose adapter to roll back (templated).
    """

    template_fields: Sequence[str] = ("release_id", "customer")

    def __init__(self, *, release_id: str | None = None, customer: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (release_id is None) == (customer is None):
            raise InputError(
                "RollbackReleaseOperator takes exactly one of release_id (roll every customer back to "
                f"that release) or customer (roll one customer back), got release_id={release_id!r}, "
                f"customer={customer!r}"
            )
        self.release_id, self.customer = release_id, customer

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        previous = self.store.latest()
        if self.customer is not None:
            event = self.store.rollback_customer(self._required("customer", self.customer))
        else:
            event = self.store.rollback(self._required("release_id", self.release_id))
        self.lineage = Lineage(outputs=(self._release(event.release_id),))
        return self._result(context, event, previous=previous)


class PinReleaseOperator(BaseReleaseOperator):
    """Pin a release to a period: scoring any day from ``pin_from`` to ``pin_to`` uses it
    (:class:`ResolveReleaseOperator`), whatever was in production then.

    :param release_id: the release to pin (templated).
    :param pin_from: first day of the pin, ISO date (templated).
    :param pin_to: last day of the pin, ISO date (templated).
    """

    template_fields: Sequence[str] = ("release_id", "pin_from", "pin_to")

    def __init__(self, *, release_id: str, pin_from: str, pin_to: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release_id, self.pin_from, self.pin_to = release_id, pin_from, pin_to

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        start = _date("pin_from", self._required("pin_from", self.pin_from))
        end = _date("pin_to", self._required("pin_to", self.pin_to))
        event = self.store.pin(self._required("release_id", self.release_id), start, end)
        self.lineage = Lineage(outputs=(self._release(event.release_id),))
        return self._result(context, event)


def _date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None


def _mapping(name: str, value: object, what: str) -> Mapping[str, Any]:
    """``value`` when it is a mapping (of ``what``, e.g. "customers to versions"); None is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(
            f"{name} must map {what}, got {type(value).__name__}; render it natively "
            "(DAG render_template_as_native_obj=True) or pass an XComArg"
        )
    return value
