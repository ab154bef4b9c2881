"""``retrain score``: a Hive partition scored with a release, on Spark (``spark-submit``-able)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.errors import InputError

if TYPE_CHECKING:
    from retrain.cli.common import Commands


def _score(args: argparse.Namespace) -> None:
    from retrain.scoring.job import score_partition
    from retrain.spark import SparkSettings, spark_session

    store = common.release_store(
        args, create=False
    )  # ids were checked by argparse; MLflow is reached before a JVM starts
    if args.check_reference:
        from retrain.scoring.reference import check_reference

        checked = check_reference(store, args.release, args.workdir, tolerance=args.tolerance)
        for customer, rows in checked.checked_rows.items():
            worst = checked.max_difference[customer]
            print(f"{customer}: {rows} reference rows match (max difference {worst:.1e})")
        return
    if not (args.table and args.ds and args.out):
        raise InputError("retrain score needs --table, --ds and --out (or --check-reference)")
    settings = SparkSettings.from_env(warehouse=args.warehouse)
    spark = spark_session(replace(settings, conf=dict(args.conf)))
    report = score_partition(
        spark,
        store,
        release_id=args.release,
        input_table=args.table,
        ds=args.ds,
        output_table=args.out,
        workdir=args.workdir,
        customers=args.customer or None,
        if_missing=args.if_missing,
    )
    print(report.summary())
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))


def register(commands: Commands) -> None:
    """Add ``retrain score``."""
    score = commands.add_parser("score", help="score a Hive partition with a release (spark-submit-able)")
    common.add_release(score)
    score.add_argument("--table", help="input Hive table with request_id, customer_id, text")
    score.add_argument("--ds", help="input partition, YYYY-MM-DD")
    score.add_argument("--out", help="output Hive table, partitioned by ds and release")
    score.add_argument("--check-reference", action="store_true", help="rescore each adapter's golden sample")
    common.add_golden_tolerance(score)
    score.add_argument("--warehouse", help="Hive warehouse (default $RETRAIN_WAREHOUSE or var/warehouse)")
    score.add_argument("--workdir", default="var/scoring", help="local cache of the release's adapters")
    common.add_mlflow_uri(score)
    common.add_spark_conf(score)
    score.add_argument("--report-json", help="also write the scoring report to this JSON file")
    score.add_argument(
        "--customer",
        action="append",
        type=common.customer,
        help="score only this customer's rows (repeatable); others are kept",
    )
    score.add_argument(
        "--if-missing",
        choices=("error", "skip"),
        default="error",
        help="when the input partition does not exist: fail (default) or report it and exit 0",
    )
    score.set_defaults(handler=_score)
