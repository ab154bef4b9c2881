"""``retrain validate`` (a table at a commit against an expectation suite) and ``retrain migrate-suite``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.dolt import DoltRepository

if TYPE_CHECKING:
    from retrain.cli.common import Commands

VALIDATION_FAILED = 2  # distinct from 1 (bad input) so schedulers can tell bad data from bad calls


def _validate(args: argparse.Namespace) -> int:
    from retrain.validation.gate import validate_commit
    from retrain.validation.suite import PACKAGED_SUITE

    customers = args.customers or None
    with DoltRepository.open(args.repo) as repo:
        report = validate_commit(
            repo,
            args.table,
            args.commit,
            args.suite or PACKAGED_SUITE,
            customers=customers,
            docs_dir=args.docs,
            engine=args.engine,
        )
    if args.json:
        common.print_json(report.to_json())
    else:
        print(report.summary())
        if args.quarantine and report.quarantined:
            healthy = ", ".join(report.healthy_customers)
            print(f"quarantined: {', '.join(report.quarantined)}; healthy: {healthy}")
    return 0 if report.passes(quarantine=args.quarantine) else VALIDATION_FAILED


def _migrate_suite(args: argparse.Namespace) -> None:
    from retrain.validation.suite import migrate_suite

    written = migrate_suite(args.suite, args.out, force=args.force)
    print(f"wrote {written}" if written else f"{args.suite} is already in the GX form; nothing written")


def register(commands: Commands) -> None:
    """Add ``retrain validate`` and ``retrain migrate-suite``."""
    validate = commands.add_parser(
        "validate", help="check a table as of a commit against an expectation suite (exit 2 when it fails)"
    )
    common.add_repo(validate)
    common.add_table_at_commit(validate)
    validate.add_argument(
        "--suite",
        help="suite JSON (default: the one shipped with retrain, retrain/validation/suites/examples.json)",
    )
    validate.add_argument(
        "--customers", type=common.customers, help="comma-separated: validate only these customers' rows"
    )
    validate.add_argument("--docs", help="build Great Expectations Data Docs in this folder")
    validate.add_argument("--quarantine", action="store_true", help="pass when only some customers fail")
    validate.add_argument("--json", action="store_true", help="print the structured result as JSON")
    validate.add_argument(
        "--engine",
        choices=["pandas", "spark"],
        default="pandas",
        help="spark: for tables too large for memory",
    )
    validate.set_defaults(handler=_validate)

    migrate = commands.add_parser(
        "migrate-suite", help="rewrite an old-form suite file in GX's own form (settings under meta.retrain)"
    )
    migrate.add_argument("suite", help="the suite JSON to migrate (rewritten in place unless --out)")
    migrate.add_argument("--out", help="write the migrated suite here instead (a new file, or --force)")
    migrate.add_argument("--force", action="store_true", help="replace the regular file already at --out")
    migrate.set_defaults(handler=_migrate_suite)
