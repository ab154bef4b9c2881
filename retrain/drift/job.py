"""Drift of one scored partition, every customer at once, in one Spark pass into the Hive ``drift`` table.

The scoring pass already wrote each row's drift values beside its score (``tokens``, ``novelty``,
``embedding_*``: :mod:`retrain.scoring.inference`). This job groups the partition's rows by
customer on the executors (``applyInPandas``: each group is one customer's day, a few numbers a
row) and compares each group with its adapter version's reference bins, which travel in the task
closure (a few hundred bytes a customer, not the references' vocabularies and embeddings).

The ``drift`` partition ``ds`` is replaced atomically (:mod:`retrain.scoring.partitions`): a failed
run leaves the previous one, a rerun replaces it. The day is also recorded in MLflow
(:mod:`retrain.drift.history`) for the Health page and ``retrain drift report``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.drift.history import DriftHistory, DriftRow
from retrain.drift.metrics import METRICS, ROWS, Thresholds, customer_day
from retrain.drift.reference import FEATURES, DriftReference, read_references
from retrain.errors import InputError, NotFoundError
from retrain.release.store import ReleaseStore, UnknownReleaseError
from retrain.scoring.inference import DRIFT_COLUMNS
from retrain.scoring.partitions import check_partition, ensure_table, has_partition, replace_partition

log = logging.getLogger(__name__)

DRIFT_TABLE_COLUMNS = {
    "release": "string",
    "customer": "string",
    "adapter_version": "string",
    "metric": "string",
    "value": "double",
    "threshold": "double",
    "status": "string",
}
_OUT_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in DRIFT_TABLE_COLUMNS.items())


class DriftError(InputError):
    """Drift cannot be measured as asked; the message names the table, partition or release."""


class MissingScoresError(DriftError, NotFoundError):
    """The scores partition is not there (yet): retrying once scoring finished can succeed."""

    http_status = 404
    retryable = True


@dataclass(frozen=True)
class DriftReport:
    ds: str
    release_id: str
    scores_table: str
    drift_table: str
    seconds: float
    rows: int  # scored rows of the partition
    customers: int  # the release's customers, each with a status
    drifting: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # customer -> metric, value, threshold
    no_reference: dict[str, str] = field(default_factory=dict)  # customer -> why it has none
    insufficient: list[str] = field(default_factory=list)  # too few rows that day: never alarmed

    def summary(self) -> str:
        lines = [
            f"drift of {self.scores_table} ds={self.ds} release={self.release_id[:12]}: {self.rows} rows, "
            f"{self.customers} customers, {len(self.drifting)} drifting, {len(self.insufficient)} with "
            f"too few rows, {len(self.no_reference)} without a reference ({self.seconds:.1f}s)"
        ]
        for customer, metrics in self.drifting.items():
            shown = ", ".join(
                f"{m['metric']}={m['value']:.3f} (threshold {m['threshold']:g})" for m in metrics
            )
            lines.append(f"DRIFT {customer}: {shown}")
        for customer, why in sorted(self.no_reference.items()):
            lines.append(f"no reference for {customer}: {why}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        return cls(**data)


def drift_partition(
    spark: Any,
    store: ReleaseStore,
    *,
    release_id: str,
    ds: str,
    workdir: str | Path,
    scores_table: str = "scores",
    drift_table: str = "drift",
    thresholds: Thresholds | None = None,
    history: DriftHistory | None = None,
    history_days: int = 7,
) -> DriftReport:
    """Measure drift of ``scores_table`` partition (``ds``, ``release_id``) into ``drift_table`` ``ds``.

    :param workdir: the release cache scoring uses (:class:`retrain.scoring.job.ReleaseFiles`):
        the references are read from the adapters there, downloaded only if missing.
    :param history: where the day is recorded for the Health page (default: the tracking store).
    :param history_days: the volume change compares with the mean of this many previous days.
    """
    from pyspark.errors import AnalysisException

    from retrain.scoring.job import ReleaseFiles

    check_partition((scores_table, drift_table), ds, release_id, DriftError)
    thresholds = thresholds or Thresholds()
    started = time.perf_counter()
    try:
        scored = has_partition(spark, scores_table, {"ds": ds, "release": release_id})
    except AnalysisException as error:
        raise DriftError(f"cannot read Hive table {scores_table!r}: {str(error).splitlines()[0]}") from None
    if not scored:
        raise MissingScoresError(f"table {scores_table!r} has no partition ds={ds}, release={release_id}")
    try:
        release = ReleaseFiles.fetch(store, release_id, Path(workdir))
    except UnknownReleaseError:
        raise DriftError(
            f"partition ds={ds} of {scores_table!r} was scored with release {release_id}, which the "
            "release store does not have (deleted?): no references to compare with"
        ) from None
    adapters = {a.customer: a.version for a in release.manifest.adapters}
    references, no_reference = read_references({c: Path(release.adapter_dir(c)) for c in adapters})
    for customer, why in sorted(no_reference.items()):
        log.warning("customer %s: %s", customer, why)
    previous = _previous_rows(spark, drift_table, ds, history_days)
    measure = _measure(release_id, references, thresholds, previous)
    frame = spark.table(scores_table).where(f"ds = '{ds}' AND release = '{release_id}'")
    present = set(frame.columns)
    wanted = ["customer_id", "adapter_version", "score", *(c for c in DRIFT_COLUMNS if c in present)]
    frame = frame.where(frame.customer_id.isin(list(adapters)))
    # Who has rows that day, from one column of the partition: collecting it from the measured
    # frame would run the per-customer statistics twice (once here, once for the write).
    measured = {r[0] for r in frame.select("customer_id").distinct().collect()}
    per_customer = frame.select(*wanted).groupBy("customer_id").applyInPandas(measure, schema=_OUT_SCHEMA)
    quiet = [  # the release's customers without a row that day: insufficient, never alarmed
        _row(release_id, customer, adapters[customer], value)
        for customer in sorted(set(adapters) - measured)
        for value in customer_day(
            references.get(customer),
            {},
            0,
            thresholds.for_customer(customer),
            thresholds.min_rows,
            previous.get(customer),
            thresholds.min_reference_rows,
        )
    ]
    day = per_customer
    if quiet:
        day = day.unionByName(spark.createDataFrame(quiet, schema=_OUT_SCHEMA))
    ensure_table(spark, drift_table, DRIFT_TABLE_COLUMNS, ("ds",))
    replace_partition(spark, day, drift_table, {"ds": ds})
    written = [
        DriftRow(ds=ds, **{name: r[name] for name in DRIFT_TABLE_COLUMNS})
        for r in spark.table(drift_table).where(f"ds = '{ds}'").collect()
    ]
    (history or DriftHistory(store.tracking_uri)).record(ds, release_id, written)
    report = _report(ds, release_id, scores_table, drift_table, written, no_reference, started)
    log.info("%s", report.summary())
    return report


def _measure(
    release_id: str,
    references: dict[str, DriftReference],
    thresholds: Thresholds,
    previous: dict[str, float],
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The per-customer function the executors run; it carries only the references' bins."""
    bins_only = {
        c: replace(
            r,
            vocabulary=np.zeros(0, dtype=bool),
            centroid=np.zeros(0, dtype=np.float32),
            components=np.zeros((0, 0), dtype=np.float32),
        )
        for c, r in references.items()
    }

    def measure(rows: pd.DataFrame) -> pd.DataFrame:
        customer = str(rows["customer_id"].iloc[0])
        values = {f: rows[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in FEATURES if f in rows}
        version = str(rows["adapter_version"].iloc[0])
        day = customer_day(
            bins_only.get(customer),
            values,
            len(rows),
            thresholds.for_customer(customer),
            thresholds.min_rows,
            previous.get(customer),
            thresholds.min_reference_rows,
        )
        return pd.DataFrame(
            [_row(release_id, customer, version, v) for v in day], columns=list(DRIFT_TABLE_COLUMNS)
        )

    return measure


def _row(release_id: str, customer: str, version: str, value: Any) -> tuple[Any, ...]:
    return (release_id, customer, version, value.metric, value.value, value.threshold, value.status)


def _previous_rows(spark: Any, drift_table: str, ds: str, days: int) -> dict[str, float]:
    """Each customer's mean rows a day over the ``days`` days before ``ds`` (days it was monitored)."""
    from pyspark.errors import AnalysisException

    first = (dt.date.fromisoformat(ds) - dt.timedelta(days=days)).isoformat()
    try:
        recent = spark.table(drift_table).where(f"ds >= '{first}' AND ds < '{ds}' AND metric = '{ROWS}'")
        means = recent.groupBy("customer").avg("value").collect()
    except AnalysisException:  # no drift table yet: no history
        return {}
    return {str(r[0]): float(r[1]) for r in means if r[1] is not None}


def _report(
    ds: str,
    release_id: str,
    scores_table: str,
    drift_table: str,
    rows: list[DriftRow],
    no_reference: dict[str, str],
    started: float,
) -> DriftReport:
    drifting: dict[str, list[dict[str, Any]]] = {}
    insufficient: set[str] = set()
    scored_rows = 0
    for row in rows:
        if row.metric == ROWS:
            scored_rows += int(row.value or 0)
            if row.status == "insufficient":
                insufficient.add(row.customer)
        elif row.status == "drift":
            drifting.setdefault(row.customer, []).append(
                {"metric": row.metric, "value": row.value, "threshold": row.threshold}
            )
    order = {metric: i for i, metric in enumerate(METRICS)}
    for metrics in drifting.values():
        metrics.sort(key=lambda m: order[m["metric"]])
    return DriftReport(
        ds,
        release_id,
        scores_table,
        drift_table,
        time.perf_counter() - started,
        scored_rows,
        len({r.customer for r in rows}),
        dict(sorted(drifting.items())),
        dict(sorted(no_reference.items())),
        sorted(insufficient),
    )
