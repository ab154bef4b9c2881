"""What the command groups share: argument types, the options defined once, JSON output, the release store."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from retrain.errors import InputError
from retrain.identifiers import customer_id, release_id

if TYPE_CHECKING:
    from retrain.release.store import ReleaseStore

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int | None]

_REPO_HELP = (
    "doltlite:///path.db, a file path, or mysql://user@host:port/db[?timeout=SECONDS] "
    "($RETRAIN_DOLT_PASSWORD; timeout: $RETRAIN_DOLT_TIMEOUT, default 15)"
)


class UsageError(InputError):
    """An argument argparse refuses: missing, unknown, or not of its kind (the message names it)."""


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse ``type=`` from a check raising :class:`InputError`: its message (the rule) is the error."""

    def convert(text: str) -> str:
        try:
            return check(text)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


customer = _checked(customer_id)
release = _checked(release_id)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=``: a whole number not below ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def seconds(text: str) -> float:
    """An argparse ``type=``: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def iso_date(text: str) -> dt.date:
    """An argparse ``type=``: a day, ``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def timestamp(text: str) -> dt.datetime:
    """An argparse ``type=``: an ISO 8601 time, UTC unless it names its zone."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-01T12:00, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def customers(text: str) -> list[str]:
    """An argparse ``type=``: comma-separated customer ids, each checked; an empty one is refused,
    so ``,,`` is an error, never an empty list that means every customer."""
    listed = text.split(",")
    if "" in listed:
        raise argparse.ArgumentTypeError(f"expected comma-separated customer ids, got {text!r} (an empty id)")
    return [customer(c) for c in listed]


def _tolerance(text: str) -> float:
    """An argparse ``type=``: a golden-score tolerance, finite and >= 0."""
    from retrain.scoring.reference import check_tolerance

    try:
        return check_tolerance(float(text))
    except (ValueError, InputError) as error:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from error


def add_repo(parser: argparse.ArgumentParser, *, from_env: bool = False) -> None:
    """``--repo``, the Dolt repository.

    :param from_env: default to ``$RETRAIN_DOLT_REPO`` (required only when it is unset)
    """
    if from_env:
        default = os.environ.get("RETRAIN_DOLT_REPO")
        parser.add_argument(
            "--repo", default=default, required=not default, help=f"{_REPO_HELP}; default $RETRAIN_DOLT_REPO"
        )
    else:
        parser.add_argument("--repo", required=True, help=_REPO_HELP)


def add_table_at_commit(parser: argparse.ArgumentParser) -> None:
    """``--table`` and ``--commit``: the table as of a commit."""
    parser.add_argument("--table", required=True)
    parser.add_argument("--commit", required=True, help="commit hash or branch")


def _key_value(item: str) -> tuple[str, str]:
    """An argparse ``type=``: a Spark setting ``KEY=VALUE``."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    return key, value


def add_spark_conf(parser: argparse.ArgumentParser) -> None:
    """``--conf KEY=VALUE`` (repeatable): the Spark settings of the command's session, as pairs."""
    parser.add_argument(
        "--conf",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting (repeatable); under spark-submit pass them to spark-submit instead",
    )


def add_mlflow_uri(parser: argparse.ArgumentParser) -> None:
    """``--mlflow-uri``, read by :func:`release_store` and the training commands."""
    parser.add_argument("--mlflow-uri", help="tracking URI (default $MLFLOW_TRACKING_URI or var/mlflow)")


def add_release(parser: argparse.ArgumentParser, help: str | None = "release id (manifest MD5)") -> None:
    """``--release``, a required release id (the manifest's MD5, checked before anything is opened)."""
    parser.add_argument("--release", type=release, required=True, help=help)


def add_golden_tolerance(parser: argparse.ArgumentParser) -> None:
    """``--tolerance``: how far a rescored golden sample may be from the scores logged with the adapter."""
    parser.add_argument("--tolerance", type=_tolerance, default=1e-4, help="golden-score tolerance")


def release_store(args: argparse.Namespace, *, create: bool = True) -> ReleaseStore:
    """The release store at ``--mlflow-uri``; a command that only reads passes ``create=False``, so a
    mistyped local store is an error, never a new empty one that lists nothing."""
    from retrain.release.store import ReleaseStore
    from retrain.tracking import tracking_uri

    return ReleaseStore.open(tracking_uri(args.mlflow_uri, create=create))


def print_json(value: object) -> None:
    print(json.dumps(value, indent=None, sort_keys=True))
