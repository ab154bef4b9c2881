"""The retrain CLI: JSON on stdout, one-line errors on stderr, non-zero exit on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain.cli import main
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement


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
