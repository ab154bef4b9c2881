"""``retrain demo-data``: the demo training repository and Hive warehouse."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING

from retrain.cli import common

if TYPE_CHECKING:
    from retrain.cli.common import Commands


def _demo_data(args: argparse.Namespace) -> None:
    from retrain.demo.seed import seed_training_repo, seed_warehouse

    seeded = seed_training_repo(
        args.repo, customers=args.customers, examples=args.examples, seed=args.seed, force=args.force
    )
    result: dict[str, object] = {
        "repo": str(seeded.path),
        "customers": seeded.customers,
        "commits": seeded.commits,
        "changed_in_last_commit": seeded.changed_in_last_commit,
        "rows": seeded.rows,
    }
    if args.warehouse:
        warehouse = seed_warehouse(
            args.warehouse, customers=args.customers, start=args.start, days=args.days, seed=args.seed
        )
        result["requests_partitions"] = warehouse.request_days
        result["labelled_history_partitions"] = warehouse.history_days
    common.print_json(result)


def register(commands: Commands) -> None:
    """Add ``retrain demo-data``."""
    demo = commands.add_parser("demo-data", help="create the demo training repo and Hive warehouse")
    demo.add_argument("--repo", required=True, help="doltlite file to create")
    demo.add_argument("--warehouse", help="Hive warehouse directory (skipped when omitted)")
    demo.add_argument("--customers", type=common.at_least(1), default=8)
    demo.add_argument("--examples", type=common.at_least(1), default=200, help="examples per customer")
    demo.add_argument(
        "--days", type=common.at_least(1), default=3, help="daily partitions of requests and history"
    )
    demo.add_argument("--start", type=common.iso_date, default=dt.date(2026, 11, 1))
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--force", action="store_true", help="recreate an existing repo")
    demo.set_defaults(handler=_demo_data)
