"""``retrain drift``: measure a scored partition's drift on Spark, and report a day's flagged customers."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.errors import NotFoundError

if TYPE_CHECKING:
    from retrain.cli.common import Commands
    from retrain.drift.health import CustomerHealth

DEFAULT_DAYS = 14
REPORTS = Path("var/drift-report")


class NoDriftRecordedError(NotFoundError):
    """The day asked for was never monitored in this tracking store."""


def _run(args: argparse.Namespace) -> None:
    from retrain.drift.job import drift_partition
    from retrain.drift.metrics import Thresholds
    from retrain.spark import SparkSettings, spark_session

    thresholds = Thresholds.from_file(args.thresholds) if args.thresholds else None  # before any service
    store = common.release_store(args, create=False)  # MLflow is reached before a JVM starts
    settings = SparkSettings.from_env(warehouse=args.warehouse)
    spark = spark_session(replace(settings, conf=dict(args.conf)))
    report = drift_partition(
        spark,
        store,
        release_id=args.release,
        ds=args.ds.isoformat(),
        workdir=args.workdir,
        scores_table=args.scores_table,
        drift_table=args.drift_table,
        thresholds=thresholds,
    )
    print(report.summary())


def _report(args: argparse.Namespace) -> None:
    from retrain.drift.health import customer_health
    from retrain.drift.history import DriftHistory
    from retrain.reports.drift import write_drift_plots
    from retrain.tracking import tracking_uri

    ds = args.ds.isoformat()
    uri = tracking_uri(args.mlflow_uri, create=False)
    days = DriftHistory(uri).days(last=args.days, until=ds)
    if not days or days[-1].ds != ds:
        shown = ", ".join(day.ds for day in days[-3:]) or "none"
        raise NoDriftRecordedError(
            f"no drift recorded for ds={ds} in {uri} (latest days before it: {shown}); "
            f"run `retrain drift run --ds {ds}` or monitor_daily first"
        )
    today = [h for h in customer_health(days) if h.ds == ds]
    flagged = sorted((h for h in today if h.status == "drift"), key=lambda h: -(h.worst or 0.0))
    out = Path(args.out) if args.out else REPORTS / ds
    plots = write_drift_plots([day.ds for day in days], flagged, out)
    _print_table(flagged)
    counts = {
        status: sum(1 for h in today if h.status == status) for status in ("insufficient", "no_reference")
    }
    print(
        f"drift report ds={ds} release={days[-1].release_id[:12]}: {len(today)} customers, "
        f"{len(flagged)} flagged, {counts['insufficient']} with too few rows, {counts['no_reference']} "
        f"without a reference; {len(plots.plots)} PNG(s) of the last {len(days)} day(s) in {plots.folder}"
    )


def _print_table(flagged: list[CustomerHealth]) -> None:
    if not flagged:
        return
    rows = [("customer", "metric", "value", "threshold")]
    rows += [
        (h.customer, row.metric, f"{row.value:.3f}", f"{row.threshold:g}")
        for h in flagged
        for row in h.flagged()
        if row.value is not None and row.threshold is not None
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def register(commands: Commands) -> None:
    """Add ``retrain drift`` and its subcommands."""
    drift = commands.add_parser(
        "drift", help="per-customer drift of scored partitions: measure, report"
    ).add_subparsers(dest="drift_command", required=True)

    run = drift.add_parser("run", help="measure a scored partition's drift into the Hive drift table (Spark)")
    common.add_release(run, help="the release that scored the partition (manifest MD5)")
    run.add_argument("--ds", type=common.iso_date, required=True, help="the scored partition, YYYY-MM-DD")
    run.add_argument(
        "--thresholds",
        type=Path,
        help='JSON settings {"defaults": {metric: t}, "customers": {id: {metric: t}}, "min_rows": n}',
    )
    run.add_argument("--scores-table", default="scores", help="Hive table of scores (default scores)")
    run.add_argument("--drift-table", default="drift", help="Hive table of drift results (default drift)")
    run.add_argument("--warehouse", help="Hive warehouse (default $RETRAIN_WAREHOUSE or var/warehouse)")
    run.add_argument("--workdir", default="var/scoring", help="local cache of the release's adapters")
    common.add_spark_conf(run)
    common.add_mlflow_uri(run)
    run.set_defaults(handler=_run)

    report = drift.add_parser("report", help="print a day's flagged customers and plot each one's last days")
    report.add_argument("--ds", type=common.iso_date, required=True, help="the monitored day, YYYY-MM-DD")
    report.add_argument(
        "--days", type=common.at_least(1), default=DEFAULT_DAYS, help=f"days plotted (default {DEFAULT_DAYS})"
    )
    report.add_argument(
        "--out",
        help=f"folder of the PNGs (default {REPORTS}/DS); an earlier drift report there is replaced",
    )
    common.add_mlflow_uri(report)
    report.set_defaults(handler=_report)
