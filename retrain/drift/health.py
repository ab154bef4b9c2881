"""Each customer's drift over recent monitored days: what the Health page and ``retrain drift report`` show.

Built from the days :class:`~retrain.drift.history.DriftHistory` recorded, without Spark. A
customer's status and worst excess are those of its latest day in the window; its series hold one
row per day of the window (``None`` where it was not monitored that day).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from retrain.drift.history import DriftDay, DriftRow
from retrain.drift.metrics import METRICS, ROWS, VOLUME, Status

PLOTTED = tuple(metric for metric in METRICS if metric != ROWS)  # the drift metrics; rows is a count
# A customer's status on a day: the first of these any of its metrics has, else "ok".
_PRECEDENCE: tuple[Status, ...] = ("drift", "no_reference", "insufficient")


def excess(row: DriftRow) -> float | None:
    """How far a trusted value is past its threshold (1.0 at it); None when it was not measured,
    not trusted (too few rows, no reference) or is the row count."""
    if row.metric == ROWS or row.value is None or not row.threshold or row.status not in ("ok", "drift"):
        return None
    if row.metric == VOLUME:  # alarmed both ways: `threshold` times the usual rows, or 1/threshold of them
        return max(row.value, 1 / row.value) / row.threshold if row.value > 0 else None
    return row.value / row.threshold


def day_status(rows: Iterable[DriftRow]) -> Status:
    """One customer's status on one day. A volume change with no earlier days to compare with is
    ``insufficient`` on every first day: it only counts when it alarms."""
    statuses = {row.status for row in rows if row.metric != VOLUME or row.status == "drift"}
    return next((status for status in _PRECEDENCE if status in statuses), "ok")


@dataclass(frozen=True)
class CustomerHealth:
    customer: str
    day: int  # index of its latest monitored day in the window
    ds: str  # that day
    release: str  # the release that scored it
    adapter_version: str
    status: Status
    worst: float | None  # the largest excess of that day
    rows: int | None  # that day's scored rows
    series: dict[str, tuple[DriftRow | None, ...]]  # metric -> one row per day of the window

    def latest(self, metric: str) -> DriftRow | None:
        return self.series[metric][self.day]

    def flagged(self) -> list[DriftRow]:
        """The latest day's metrics in drift, worst first."""
        rows = [row for row in (self.latest(m) for m in PLOTTED) if row is not None and row.status == "drift"]
        return sorted(rows, key=lambda row: excess(row) or 0.0, reverse=True)


def customer_health(days: Sequence[DriftDay], release: str | None = None) -> list[CustomerHealth]:
    """Every customer monitored in ``days`` (oldest first), by customer id.

    :param release: only rows scored with this release (a customer's other days are gaps).
    """
    index = {day.ds: i for i, day in enumerate(days)}
    found: dict[str, dict[str, list[DriftRow | None]]] = {}
    for day in days:
        for row in day.rows:
            if row.metric not in METRICS or (release is not None and row.release != release):
                continue
            series = found.setdefault(row.customer, {metric: [None] * len(days) for metric in METRICS})
            series[row.metric][index[day.ds]] = row
    return [_health(customer, found[customer]) for customer in sorted(found)]


def _health(customer: str, series: dict[str, list[DriftRow | None]]) -> CustomerHealth:
    day = max(i for values in series.values() for i, row in enumerate(values) if row is not None)
    today = [row for values in series.values() if (row := values[day]) is not None]
    count = series[ROWS][day]
    return CustomerHealth(
        customer=customer,
        day=day,
        ds=today[0].ds,
        release=today[0].release,
        adapter_version=today[0].adapter_version,
        status=day_status(today),
        worst=max((e for e in map(excess, today) if e is not None), default=None),
        rows=int(count.value) if count is not None and count.value is not None else None,
        series={metric: tuple(values) for metric, values in series.items()},
    )
