"""The ``retrain`` command as a whole: its groups, one-line argument errors with exit code 1."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from retrain.cli import (
    GROUPS,
    build_parser,
    demo,
    dolt,
    drift,
    release,
    score,
    serve,
    templates,
    train,
    validate,
)

from .invoke import run

ROOT = Path(__file__).resolve().parents[3]
COMMANDS = {
    dolt: ["dolt"],
    validate: ["validate", "migrate-suite"],
    train: ["train", "train-shard", "train-all"],
    release: ["release"],
    score: ["score"],
    drift: ["drift"],
    serve: ["serve"],
    templates: ["templates"],
    demo: ["demo-data"],
}


def handlers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, object]]:
    """Each command's ``prog`` and handler, subcommands included."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield parser.prog, parser.get_default("handler")
    for action in subcommands:
        for sub in action.choices.values():
            yield from handlers(sub)


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: group.__name__)
def test_each_group_registers_its_own_commands_and_handlers(group: ModuleType) -> None:
    parser = argparse.ArgumentParser(prog="retrain")
    commands = parser.add_subparsers(dest="command", required=True)
    group.register(commands)
    assert list(commands.choices) == COMMANDS[group]
    found = dict(handlers(parser))
    assert found
    assert {name: getattr(handler, "__module__", None) for name, handler in found.items()} == dict.fromkeys(
        found, group.__name__
    )


def test_the_parser_is_the_groups_in_order() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(commands.choices) == [name for group in GROUPS for name in COMMANDS[group]]


def test_python_m_retrain_cli_help_lists_every_group() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "--help"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: retrain ")
    listed = re.findall(r"^ {4}(\S+)", result.stdout, re.MULTILINE)  # help lines; theirs wrap deeper
    assert listed == [name for group in GROUPS for name in COMMANDS[group]]


def test_building_the_parser_imports_no_airflow_spark_kserve_or_torch() -> None:
    """``retrain serve`` runs from .venv-serve, which has neither Airflow nor Spark; --help stays fast."""
    heavy = ("airflow", "pyspark", "kserve", "torch", "transformers", "mlflow")
    code = (
        "import sys; from retrain.cli import build_parser; build_parser(); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


RELEASE = "0123456789abcdef0123456789abcdef"
TRAINING = ("--repo", "unused.db", "--table", "examples", "--commit", "main")
ONE_SHARD = ("--shard", "0", "--shards", "1")
CUSTOMER_RULE = "use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
RELEASE_RULE = "use 32 lowercase hex characters, the MD5 of a release manifest"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("train-shard", *TRAINING, "--selection", '{"customers":"acme_air"}', *ONE_SHARD),
            'train-shard: argument --selection: selection must be {"customers": ["id", ...]} or '
            '{"parent_run_artifact": "name"}, not {"customers":"acme_air"}',
        ),
        (
            ("train-shard", *TRAINING, "--selection", '{"customers":["ok","a b"]}', *ONE_SHARD),
            f"train-shard: argument --selection: invalid customer id 'a b': {CUSTOMER_RULE}",
        ),
        (
            ("train-shard", *TRAINING, "--selection", "customers", *ONE_SHARD),
            "train-shard: argument --selection: selection is not JSON (Expecting value): 'customers'",
        ),
        (
            ("train-shard", *TRAINING, "--selection", '{"customers":["a"]}', "--shard", "2", "--shards", "2"),
            "train-shard: argument --shard: 2 is outside 0..1",
        ),
        (
            ("train-shard", *TRAINING, "--selection", '{"customers":["a"]}', "--shard", "0", "--shards", "0"),
            "train-shard: argument --shards: must be at least 1, got 0",
        ),
        (
            (
                "train-shard",
                *TRAINING,
                "--selection",
                '{"customers":["a"]}',
                "--shard",
                "-1",
                "--shards",
                "2",
            ),
            "train-shard: argument --shard: must be at least 0, got -1",
        ),
        (
            ("train-all", *TRAINING, "--parallelism", "-2"),
            "train-all: argument --parallelism: must be at least 1, got -2",
        ),
        (
            ("train-all", *TRAINING, "--parallelism", "two"),
            "train-all: argument --parallelism: expected a whole number, got 'two'",
        ),
        (
            ("train-all", *TRAINING, "--retries", "-1"),
            "train-all: argument --retries: must be at least 0, got -1",
        ),
        (
            ("train-all", *TRAINING, "--epochs", "0"),
            "train-all: argument --epochs: must be at least 1, got 0",
        ),
        (
            ("train-all", *TRAINING, "--customers", "acme_air,../x"),
            f"train-all: argument --customers: invalid customer id '../x': {CUSTOMER_RULE}",
        ),
        *(
            (
                ("train-all", *TRAINING, "--customers", listed),
                f"train-all: argument --customers: expected comma-separated customer ids, got {listed!r} "
                "(an empty id)",
            )
            for listed in (",,", "", "acme_air,", ",acme_air", "a,,b")
        ),
        (
            ("train", *TRAINING, "--customer", "a'b"),
            f'train: argument --customer: invalid customer id "a\'b": {CUSTOMER_RULE}',
        ),
        (
            ("validate", *TRAINING, "--suite", "s.json", "--customers", "x y"),
            f"validate: argument --customers: invalid customer id 'x y': {CUSTOMER_RULE}",
        ),
        (
            ("release", "show", RELEASE, "--as-of", "2026-01-01"),
            "release show: argument --as-of: not allowed with argument release",
        ),
        (("release", "show"), "release show: one of the arguments release --as-of is required"),
        (
            ("release", "show", "--as-of", "yesterday"),
            "release show: argument --as-of: "
            "expected an ISO 8601 time such as 2026-11-01T12:00, got 'yesterday'",
        ),
        (
            ("release", "pin", RELEASE, "--from", "2026-13-01", "--to", "2026-12-31"),
            "release pin: argument --from: expected a date YYYY-MM-DD, got '2026-13-01'",
        ),
        (
            ("demo-data", "--repo", "unused.db", "--customers", "0"),
            "demo-data: argument --customers: must be at least 1, got 0",
        ),
        (
            ("release", "show", "HEAD"),
            f"release show: argument release: invalid release id 'HEAD': {RELEASE_RULE}",
        ),
        (
            ("release", "diff", RELEASE, RELEASE.upper()),
            f"release diff: argument new: invalid release id '{RELEASE.upper()}': {RELEASE_RULE}",
        ),
        (
            ("release", "rollback", "--customer", "a;b"),
            f"release rollback: argument --customer: invalid customer id 'a;b': {CUSTOMER_RULE}",
        ),
        (
            ("release", "pin", "abc", "--from", "2026-01-01", "--to", "2026-01-02"),
            f"release pin: argument release: invalid release id 'abc': {RELEASE_RULE}",
        ),
        (
            ("release", "context", "--release", "x", "--out", "o"),
            f"release context: argument --release: invalid release id 'x': {RELEASE_RULE}",
        ),
        (
            ("release", "check", "--endpoint", "http://h", "--release", RELEASE, "--timeout", "0"),
            "release check: argument --timeout: expected a positive number of seconds, got '0'",
        ),
        (
            ("score", "--release", "../../etc", "--table", "t", "--ds", "2026-01-01", "--out", "o"),
            f"score: argument --release: invalid release id '../../etc': {RELEASE_RULE}",
        ),
        (
            ("release", "check", "--endpoint", "http://h", "--release", RELEASE, "--tolerance", "nan"),
            "release check: argument --tolerance: expected a finite number >= 0, got 'nan'",
        ),
        (
            ("score", "--release", RELEASE, "--check-reference", "--tolerance", "-0.1"),
            "score: argument --tolerance: expected a finite number >= 0, got '-0.1'",
        ),
        (
            ("score", "--release", RELEASE, "--customer", "acme_air", "--customer", "x/y"),
            f"score: argument --customer: invalid customer id 'x/y': {CUSTOMER_RULE}",
        ),
        (
            ("serve", "--release", "latest"),
            f"serve: argument --release: invalid release id 'latest': {RELEASE_RULE}",
        ),
        (("no-such-command",), "argument command: invalid choice: 'no-such-command'"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_naming_the_argument(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    """Before any repository, MLflow store or JVM is opened: nothing here exists."""
    code, out, err = run(capsys, *args)
    assert (code, out) == (1, "")
    assert err.startswith(f"retrain: error: {message}")
    assert len(err.splitlines()) == 1
