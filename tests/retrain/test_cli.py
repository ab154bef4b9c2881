"""The retrain CLI: JSON on stdout, one-line errors on stderr, non-zero exit on failure."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from retrain.cli import main
from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.tracking import MLFLOW_HTTP_DEFAULTS

from .sockets import BOUND, MARGIN, Elapsed, closed_port, health_only_port, silent_port

PASSWORD = "pa55-w0rd"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_head_log_changed(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    repo = str(seeded.path)
    assert run(capsys, "dolt", "head", "--repo", repo) == (0, seeded.commits[-1] + "\n", "")
    code, out, _ = run(capsys, "dolt", "log", "--repo", f"doltlite://{seeded.path.resolve()}")
    assert code == 0
    assert out.splitlines()[0].startswith(seeded.commits[-1])
    code, out, _ = run(
        capsys, "dolt", "changed", "--repo", repo, "--table", "examples", "--key", "customer_id",
        "--from", seeded.commits[0], "--to", "main",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == {"keys": sorted(seeded.changed_in_last_commit)}


def test_sense_then_advance(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    repo = str(seeded.path)
    sense = (
        "dolt",
        "sense",
        "--repo",
        repo,
        "--consumer",
        "cli",
        "--table",
        "examples",
        "--key",
        "customer_id",
    )
    code, out, _ = run(capsys, *sense)
    assert code == 0
    assert json.loads(out)["all_changed"] is True
    assert json.loads(run(capsys, *sense)[1]) is None
    head = seeded.commits[-1]
    assert run(capsys, "dolt", "advance", "--repo", repo, "--consumer", "cli", "--commit", head)[:2] == (
        0,
        head + "\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dolt", "head", "--branch", "release"), "unknown branch 'release'"),
        (("dolt", "changed", "--table", "examples", "--key", "customer_id", "--from", "zz", "--to", "main"),
         "unknown commit 'zz'"),
        (("dolt", "changed", "--table", "exmples", "--key", "customer_id", "--from", "main", "--to", "main"),
         "table 'exmples' does not exist"),
        (("dolt", "changed", "--table", "examples", "--key", "tenant", "--from", "main", "--to", "main"),
         "column 'tenant' does not exist"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_exit_code_1(
    capsys: pytest.CaptureFixture[str], seeded: SeededRepository, args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, args[0], args[1], "--repo", str(seeded.path), *args[2:])
    assert code == 1
    assert out == ""
    assert err.startswith("retrain: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_dolt_file(capsys: pytest.CaptureFixture[str], tmp_path: pytest.TempPathFactory) -> None:
    code, _, err = run(capsys, "dolt", "head", "--repo", "/nonexistent/training.db")
    assert code == 1
    assert "does not exist" in err


def test_demo_data_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    code, _, err = run(capsys, "demo-data", "--repo", str(seeded.path))
    assert code == 1
    assert "already exists" in err
    assert "--force" in err


SUITE = str(Path(__file__).resolve().parents[2] / "expectations" / "examples.json")


def test_validate_passes_with_exit_0(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(seeded.path), "--table", "examples", "--commit", "main",  # noqa: E501
                       "--suite", SUITE)  # fmt: skip
    assert code == 0
    assert "8 expectations, 0 failed" in out


def test_validate_failure_exits_2_naming_expectation_and_customers(
    capsys: pytest.CaptureFixture[str], seeded: SeededRepository
) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        repo.execute(Statement("UPDATE examples SET label = 'maybe' WHERE example_id IN (1, 2)"))
        commit = repo.commit("bad labels")
    args = (
        "validate",
        "--repo",
        str(seeded.path),
        "--table",
        "examples",
        "--commit",
        commit,
        "--suite",
        SUITE,
    )
    code, out, _ = run(capsys, *args)
    assert code == 2
    assert "FAILED expect_column_values_to_be_in_set on column label: 2 unexpected row(s)" in out
    assert "customers: acme_air" in out
    code, out, _ = run(capsys, *args, "--quarantine")
    assert code == 0
    assert "quarantined: acme_air; healthy: globex_bank, initech_saas, umbrella_health" in out
    code, out, _ = run(capsys, *args, "--customers", "globex_bank,initech_saas", "--json")
    assert code == 0
    assert json.loads(out)["customers_validated"] == ["globex_bank", "initech_saas"]


def test_validate_missing_suite_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], seeded: SeededRepository
) -> None:
    code, _, err = run(capsys, "validate", "--repo", str(seeded.path), "--table", "examples", "--commit", "main",  # noqa: E501
                       "--suite", "/nonexistent/suite.json")  # fmt: skip
    assert code == 1
    assert err.strip() == "retrain: error: expectation suite file /nonexistent/suite.json does not exist"


RELEASE = "0123456789abcdef0123456789abcdef"
TRAINING = ("--repo", "unused.db", "--table", "examples", "--commit", "main")
ONE_SHARD = ("--shard", "0", "--shards", "1")
CUSTOMER_RULE = "use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
RELEASE_RULE = "use 32 lowercase hex characters, the MD5 of a release manifest"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train-shard", *TRAINING, "--selection", '{"customers":"acme_air"}', *ONE_SHARD),
         'train-shard: argument --selection: selection must be {"customers": ["id", ...]} or '
         '{"parent_run_artifact": "name"}, not {"customers":"acme_air"}'),
        (("train-shard", *TRAINING, "--selection", '{"customers":["ok","a b"]}', *ONE_SHARD),
         f"train-shard: argument --selection: invalid customer id 'a b': {CUSTOMER_RULE}"),
        (("train-shard", *TRAINING, "--selection", "customers", *ONE_SHARD),
         "train-shard: argument --selection: selection is not JSON (Expecting value): 'customers'"),
        (("train-shard", *TRAINING, "--selection", '{"customers":["a"]}', "--shard", "2", "--shards", "2"),
         "train-shard: argument --shard: 2 is outside 0..1"),
        (("train-shard", *TRAINING, "--selection", '{"customers":["a"]}', "--shard", "0", "--shards", "0"),
         "train-shard: argument --shards: must be at least 1, got 0"),
        (("train-shard", *TRAINING, "--selection", '{"customers":["a"]}', "--shard", "-1", "--shards", "2"),
         "train-shard: argument --shard: must be at least 0, got -1"),
        (("train-all", *TRAINING, "--parallelism", "-2"),
         "train-all: argument --parallelism: must be at least 1, got -2"),
        (("train-all", *TRAINING, "--parallelism", "two"),
         "train-all: argument --parallelism: expected a whole number, got 'two'"),
        (("train-all", *TRAINING, "--retries", "-1"),
         "train-all: argument --retries: must be at least 0, got -1"),
        (("train-all", *TRAINING, "--epochs", "0"),
         "train-all: argument --epochs: must be at least 1, got 0"),
        (("train-all", *TRAINING, "--customers", "acme_air,../x"),
         f"train-all: argument --customers: invalid customer id '../x': {CUSTOMER_RULE}"),
        (("train", *TRAINING, "--customer", "a'b"),
         f"train: argument --customer: invalid customer id \"a'b\": {CUSTOMER_RULE}"),
        (("validate", *TRAINING, "--suite", "s.json", "--customers", "x y"),
         f"validate: argument --customers: invalid customer id 'x y': {CUSTOMER_RULE}"),
        (("release", "show", RELEASE, "--as-of", "2026-01-01"),
         "release show: argument --as-of: not allowed with argument release"),
        (("release", "show"), "release show: one of the arguments release --as-of is required"),
        (("release", "show", "HEAD"),
         f"release show: argument release: invalid release id 'HEAD': {RELEASE_RULE}"),
        (("release", "diff", RELEASE, RELEASE.upper()),
         f"release diff: argument new: invalid release id '{RELEASE.upper()}': {RELEASE_RULE}"),
        (("release", "rollback", "--customer", "a;b"),
         f"release rollback: argument --customer: invalid customer id 'a;b': {CUSTOMER_RULE}"),
        (("release", "pin", "abc", "--from", "2026-01-01", "--to", "2026-01-02"),
         f"release pin: argument release: invalid release id 'abc': {RELEASE_RULE}"),
        (("release", "context", "--release", "x", "--out", "o"),
         f"release context: argument --release: invalid release id 'x': {RELEASE_RULE}"),
        (("release", "check", "--endpoint", "http://h", "--release", RELEASE, "--timeout", "0"),
         "release check: argument --timeout: expected a positive number of seconds, got '0'"),
        (("score", "--release", "../../etc", "--table", "t", "--ds", "2026-01-01", "--out", "o"),
         f"score: argument --release: invalid release id '../../etc': {RELEASE_RULE}"),
        (("release", "check", "--endpoint", "http://h", "--release", RELEASE, "--tolerance", "nan"),
         "release check: argument --tolerance: expected a finite number >= 0, got 'nan'"),
        (("score", "--release", RELEASE, "--check-reference", "--tolerance", "-0.1"),
         "score: argument --tolerance: expected a finite number >= 0, got '-0.1'"),
        (("score", "--release", RELEASE, "--customer", "acme_air", "--customer", "x/y"),
         f"score: argument --customer: invalid customer id 'x/y': {CUSTOMER_RULE}"),
        (("serve", "--release", "latest"),
         f"serve: argument --release: invalid release id 'latest': {RELEASE_RULE}"),
        (("no-such-command",), "argument command: invalid choice: 'no-such-command'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_in_one_line_naming_the_argument(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    """Before any repository, MLflow store or JVM is opened: nothing here exists."""
    code, out, err = run(capsys, *args)
    assert (code, out) == (1, "")
    assert err.startswith(f"retrain: error: {message}")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_an_unreachable_tracking_server_is_one_line_in_bound_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", *MLFLOW_HTTP_DEFAULTS):
        monkeypatch.delenv(name, raising=False)
    with ExitStack() as stack:
        port = stack.enter_context(silent_port()) if server == "silent" else closed_port()
        with Elapsed() as timer:
            code, out, err = run(
                capsys, "release", "list", "--mlflow-uri", f"http://bob:{PASSWORD}@127.0.0.1:{port}"
            )
    assert timer.seconds < BOUND + MARGIN
    assert (code, out) == (1, "")
    reason = (
        "Connection refused"
        if server == "closed"
        else f"no answer within {BOUND:g}s ($RETRAIN_CONNECT_TIMEOUT)"
    )
    assert (
        err
        == f"retrain: error: cannot reach MLflow tracking server http://bob:***@127.0.0.1:{port}: {reason}\n"
    )


def test_mlflows_own_errors_never_show_the_password(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that is up but failing: MLflow's message names the URI, which no longer holds the password."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with health_only_port() as port:
        code, out, err = run(
            capsys, "-v", "release", "list", "--mlflow-uri", f"http://bob:{PASSWORD}@127.0.0.1:{port}"
        )
    assert (code, out) == (1, "")
    assert f"http://127.0.0.1:{port}/api/" in err
    assert len(err.splitlines()) == 1
    assert PASSWORD not in err + caplog.text
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD  # MLflow sends it as basic auth instead


def test_score_reaches_mlflow_and_the_metastore_before_starting_spark(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pyspark.sql import SparkSession

    def started(builder: object) -> None:
        raise AssertionError("Spark started before MLflow and the metastore were reached")

    # A tripwire, not a stand-in: another test's session may already be up in this process.
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", started)
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    score = ("score", "--release", RELEASE, "--table", "requests", "--ds", "2026-11-01", "--out", "scores")
    code, _, err = run(capsys, *score, "--mlflow-uri", f"http://127.0.0.1:{closed_port()}")
    assert code == 1
    assert err.startswith("retrain: error: cannot reach MLflow tracking server http://127.0.0.1:")
    metastore = f"thrift://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("RETRAIN_HIVE_METASTORE", metastore)
    code, _, err = run(capsys, *score, "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert (code, err) == (
        1,
        f"retrain: error: cannot reach the Hive metastore at {metastore} (Connection refused)\n",
    )
