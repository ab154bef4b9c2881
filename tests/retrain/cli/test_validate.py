"""`retrain validate`: exit 0 when the data passes, 2 when it fails, 1 for a bad call."""

from __future__ import annotations

import json

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.validation.suite import PACKAGED_SUITE

from .invoke import run

SUITE = str(PACKAGED_SUITE)


@pytest.mark.parametrize("suite", [("--suite", SUITE), ()], ids=["named", "shipped-by-default"])
def test_validate_passes_with_exit_0(
    capsys: pytest.CaptureFixture[str], seeded: SeededRepository, suite: tuple[str, ...]
) -> None:
    code, out, _ = run(
        capsys, "validate", "--repo", str(seeded.path), "--table", "examples", "--commit", "main", *suite
    )
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
    code, _, err = run(
        capsys,
        "validate",
        "--repo",
        str(seeded.path),
        "--table",
        "examples",
        "--commit",
        "main",
        "--suite",
        "/nonexistent/suite.json",
    )
    assert code == 1
    assert err.strip() == "retrain: error: expectation suite file /nonexistent/suite.json does not exist"
