"""The ``retrain`` command line. Errors go to stderr as one line naming the problem, exit code 1."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from retrain.cli import demo, dolt, drift, release, score, serve, templates, train, validate
from retrain.cli.common import UsageError
from retrain.errors import RetrainError
from retrain.quiet import quiet_libraries

# Each group module adds its commands, in the order `retrain --help` lists them.
GROUPS = (dolt, validate, train, release, score, drift, serve, templates, demo)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 1, like every other bad input (2: data failed)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("retrain").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="retrain", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        quiet_libraries()  # stderr stays our lines and one-line errors
        return args.handler(args) or 0
    except RetrainError as error:
        print(f"retrain: error: {error}", file=sys.stderr)
        return error.exit_code
