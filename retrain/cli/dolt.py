"""``retrain dolt``: a Dolt repository's head and log, changed keys, and commit watermarks."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.dolt import DoltRepository
from retrain.dolt.watermark import CommitWatermark

if TYPE_CHECKING:
    from retrain.cli.common import Commands


def _head(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        print(repo.head(args.branch))


def _log(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        for commit in repo.log(since=args.since, until=args.until):
            print(commit.log_line())


def _changed(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        common.print_json(repo.changed_keys(args.table, args.key, args.from_commit, args.to_commit).to_json())


def _sense(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        found = CommitWatermark(repo, args.consumer, args.branch).sense(args.table, args.key)
        common.print_json(found.to_payload() if found else None)


def _advance(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        print(CommitWatermark(repo, args.consumer, args.branch).advance(args.commit))


def register(commands: Commands) -> None:
    """Add ``retrain dolt`` and its subcommands."""
    dolt = commands.add_parser("dolt", help="inspect a Dolt repository").add_subparsers(
        dest="dolt_command", required=True
    )

    def command(name: str, handler: common.Handler, help: str) -> argparse.ArgumentParser:
        sub = dolt.add_parser(name, help=help)
        common.add_repo(sub)
        sub.set_defaults(handler=handler)
        return sub

    head = command("head", _head, "print the head commit of a branch")
    head.add_argument("--branch", default="main")

    log = command("log", _log, "list commits, newest first")
    log.add_argument("--since", help="exclude this commit and its ancestors")
    log.add_argument("--until", default="main", help="commit or branch (default main)")

    changed = command("changed", _changed, "print the keys whose rows changed between commits")
    changed.add_argument("--table", required=True)
    changed.add_argument("--key", required=True, help="key column, e.g. customer_id")
    changed.add_argument("--from", dest="from_commit", required=True)
    changed.add_argument("--to", dest="to_commit", required=True)

    sense = command("sense", _sense, "print the new commit range since a watermark, or null")
    sense.add_argument("--consumer", required=True, help="watermark name, e.g. the DAG id")
    sense.add_argument("--branch", default="main")
    sense.add_argument("--table", required=True)
    sense.add_argument("--key", required=True)

    advance = command("advance", _advance, "move a watermark once work up to a commit finished")
    advance.add_argument("--consumer", required=True)
    advance.add_argument("--branch", default="main", help="the watched branch: --commit must be on it")
    advance.add_argument("--commit", required=True)
