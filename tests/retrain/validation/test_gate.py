"""The validation gate on real doltlite data with real Great Expectations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.validation.gate import ValidationInputError, validate_commit
from retrain.validation.report import ValidationReport
from retrain.validation.suite import PACKAGED_SUITE, SuiteError

# The shipped suite as it was before its settings moved under meta (byte for byte).
OLD_FORM = Path(__file__).resolve().parent / "old_form_examples.json"


@pytest.fixture
def sheet(repo: DoltRepository) -> DoltRepository:
    """A copy of ``examples`` without constraints, like a spreadsheet synced into Dolt."""
    repo.execute(
        Statement("CREATE TABLE sheet (example_id INTEGER, customer_id TEXT, text TEXT, label TEXT)")
    )
    repo.execute(Statement("INSERT INTO sheet SELECT example_id, customer_id, text, label FROM examples"))
    repo.commit("sheet copy")
    return repo


def broken(repo: DoltRepository, *statements: str) -> str:
    for sql in statements:
        repo.execute(Statement(sql))
    return repo.commit("break the sheet")


def failed(report: ValidationReport) -> dict[tuple[str, str | None], list[str]]:
    return {(f.expectation, f.column): f.customers for f in report.failures}


def test_clean_commit_passes(sheet: DoltRepository) -> None:
    report = validate_commit(sheet, "sheet", "main", PACKAGED_SUITE)
    assert report.success, report.summary()
    assert report.rows_validated == 84
    assert report.customers_validated == ["acme_air", "globex_bank", "initech_saas", "umbrella_health"]
    assert report.expectations_evaluated == 8


@pytest.mark.parametrize(
    ("statements", "expectation", "column", "customers"),
    [
        (
            ["UPDATE sheet SET text = NULL WHERE example_id = 1"],
            "expect_column_values_to_not_be_null",
            "text",
            ["acme_air"],
        ),
        (
            ["UPDATE sheet SET text = '' WHERE example_id = 25"],
            "expect_column_value_lengths_to_be_between",
            "text",
            ["globex_bank"],
        ),
        (
            ["UPDATE sheet SET label = NULL WHERE example_id = 41"],
            "expect_column_values_to_not_be_null",
            "label",
            ["initech_saas"],
        ),
        (
            ["UPDATE sheet SET label = 'maybe' WHERE example_id = 61"],
            "expect_column_values_to_be_in_set",
            "label",
            ["umbrella_health"],
        ),
        (
            ["INSERT INTO sheet SELECT * FROM sheet WHERE example_id = 2"],
            "expect_column_values_to_be_unique",
            "example_id",
            ["acme_air"],
        ),
        (
            ["UPDATE sheet SET customer_id = NULL WHERE example_id = 81"],  # globex_bank keeps 21 rows
            "expect_column_values_to_not_be_null",
            "customer_id",
            [],
        ),
        (
            ["DELETE FROM sheet WHERE customer_id = 'globex_bank' AND example_id > 25"],
            "expect_column_values_to_be_between",
            "customer_examples",
            ["globex_bank"],
        ),
        (
            ["UPDATE sheet SET label = 'urgent' WHERE customer_id = 'initech_saas'"],
            "expect_column_values_to_be_between",
            "customer_minority_label_share",
            ["initech_saas"],
        ),
    ],
)
def test_each_shipped_expectation_catches_its_breakage(
    sheet: DoltRepository, statements: list[str], expectation: str, column: str, customers: list[str]
) -> None:
    commit = broken(sheet, *statements)
    report = validate_commit(sheet, "sheet", commit, PACKAGED_SUITE)
    assert not report.success
    assert failed(report) == {(expectation, column): customers}
    assert expectation in report.summary()
    assert f"on column {column}" in report.summary()
    assert commit in report.summary()


def test_only_changed_customers_rows_are_validated(repo: DoltRepository, seeded: SeededRepository) -> None:
    changed = repo.changed_keys("examples", "customer_id", *seeded.commits).keys
    report = validate_commit(repo, "examples", seeded.commits[-1], PACKAGED_SUITE, customers=changed)
    assert report.customers_validated == sorted(changed)
    assert report.rows_validated == 2 * 22


def test_quarantine_splits_healthy_from_broken_customers(sheet: DoltRepository) -> None:
    commit = broken(
        sheet,
        "UPDATE sheet SET label = 'maybe' WHERE example_id = 1",
        "UPDATE sheet SET label = 'urgent' WHERE customer_id = 'initech_saas'",
    )
    report = validate_commit(sheet, "sheet", commit, PACKAGED_SUITE)
    assert not report.passes()
    assert report.passes(quarantine=True)
    assert list(report.quarantined) == ["acme_air", "initech_saas"]
    assert report.quarantined["acme_air"] == ["expect_column_values_to_be_in_set on label"]
    assert report.healthy_customers == ["globex_bank", "umbrella_health"]
    assert report.to_json()["healthy_customers"] == ["globex_bank", "umbrella_health"]


def test_an_old_form_suite_gives_the_same_result(
    seeded: SeededRepository, sheet: DoltRepository, tmp_path: Path
) -> None:
    commit = broken(
        sheet,
        "UPDATE sheet SET label = 'maybe' WHERE example_id = 1",
        "UPDATE sheet SET label = 'urgent' WHERE customer_id = 'initech_saas'",
        "DELETE FROM sheet WHERE customer_id = 'globex_bank' AND example_id > 25",
    )
    old = tmp_path / "old.json"
    old.write_bytes(OLD_FORM.read_bytes())
    expected = validate_commit(sheet, "sheet", commit, PACKAGED_SUITE)
    assert set(expected.quarantined) == {"acme_air", "globex_bank", "initech_saas"}  # rows and customers
    assert validate_commit(sheet, "sheet", commit, old).to_json() == expected.to_json()
    where = ["--repo", str(seeded.path), "--table", "sheet", "--commit", commit]
    cli = run_cli("validate", *where, "--suite", str(old))
    assert (cli.returncode, cli.stdout) == (2, expected.summary() + "\n")
    assert cli.stderr.count("\n") == 1
    assert cli.stderr.endswith(
        f"WARNING retrain.validation.suite: {old} uses the deprecated suite form (top-level key_column, "
        f"label_column, id_column, per_customer); run `retrain migrate-suite {old}` to move them under "
        "meta.retrain\n"
    )


def test_unattributable_failure_blocks_even_in_quarantine(sheet: DoltRepository) -> None:
    commit = broken(sheet, "UPDATE sheet SET customer_id = NULL WHERE example_id = 1")
    report = validate_commit(sheet, "sheet", commit, PACKAGED_SUITE)
    assert not report.passes(quarantine=True)
    assert [f.column for f in report.unattributed_failures] == ["customer_id"]


def test_data_docs_page_per_commit(sheet: DoltRepository, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    good = validate_commit(sheet, "sheet", "main", PACKAGED_SUITE, docs_dir=docs)
    commit = broken(sheet, "UPDATE sheet SET label = 'maybe' WHERE example_id = 1")
    bad = validate_commit(sheet, "sheet", commit, PACKAGED_SUITE, docs_dir=docs)
    pages = [good.docs_page, bad.docs_page]
    assert all(p is not None and p.startswith("file://") for p in pages)
    paths = [Path(str(p).removeprefix("file://")) for p in pages]
    assert all(p.is_file() for p in paths)
    assert good.commit in str(paths[0])
    assert commit in str(paths[1])
    assert "values must belong to this set" in paths[1].read_text()
    assert "maybe" in paths[1].read_text()
    index = (docs / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    assert good.commit in index
    assert commit in index


def test_bad_inputs_are_clear_errors(sheet: DoltRepository, tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="does not exist"):
        validate_commit(sheet, "sheet", "main", tmp_path / "missing.json")
    sheet.execute(
        Statement("CREATE TABLE empty_sheet (example_id INTEGER, customer_id TEXT, text TEXT, label TEXT)")
    )
    commit = sheet.commit("empty table")
    with pytest.raises(ValidationInputError, match=r"'empty_sheet' has no rows at commit"):
        validate_commit(sheet, "empty_sheet", commit, PACKAGED_SUITE)
    with pytest.raises(ValidationInputError, match="no rows of customers ghost_co"):
        validate_commit(sheet, "sheet", commit, PACKAGED_SUITE, customers=["ghost_co"])
    sheet.execute(Statement("CREATE TABLE narrow (example_id INTEGER, customer_id TEXT, label TEXT)"))
    commit = sheet.commit("no text column")
    with pytest.raises(SuiteError, match=r"names column 'text', which table 'narrow' at commit"):
        validate_commit(sheet, "narrow", commit, PACKAGED_SUITE)


def test_summary_names_at_most_ten_customers_per_failure(repo: DoltRepository, tmp_path: Path) -> None:
    suite = tmp_path / "strict.json"
    suite.write_text(
        PACKAGED_SUITE.read_text().replace(
            '"customer_examples", "min_value": 20', '"customer_examples", "min_value": 999'
        )
    )
    repo.insert_rows(
        "examples",
        ["example_id", "customer_id", "text", "label"],
        [(1000 + i, f"extra_{i:02d}", "a new customer", ("urgent", "routine")[i % 2]) for i in range(12)],
    )
    report = validate_commit(repo, "examples", repo.commit("12 tiny customers"), suite)
    (failure,) = [f for f in report.failures if f.column == "customer_examples"]
    assert len(failure.customers) == 16
    named = failure.describe().split("customers: ")[1].split(" and ")[0].split(", ")
    assert named == failure.customers[:10]
    assert " and 6 more" in failure.describe()


def test_spark_engine_streams_batches_and_agrees_with_pandas(sheet: DoltRepository, tmp_path: Path) -> None:
    from retrain.spark import SparkSettings

    commit = broken(
        sheet,
        "UPDATE sheet SET label = 'maybe' WHERE example_id = 1",
        "UPDATE sheet SET label = 'urgent' WHERE customer_id = 'initech_saas'",
        "UPDATE sheet SET text = NULL WHERE example_id = 25",
        COPY_AS_BAD_ID,
    )
    settings = SparkSettings(warehouse=str(tmp_path / "warehouse"))
    spark = validate_commit(
        sheet, "sheet", commit, PACKAGED_SUITE, engine="spark", spark=settings, batch_rows=10
    )
    pandas = validate_commit(sheet, "sheet", commit, PACKAGED_SUITE)
    assert (
        failed(spark)
        == failed(pandas)
        == {
            ("expect_column_values_to_be_in_set", "label"): ["acme_air"],
            ("expect_column_values_to_not_be_null", "text"): ["globex_bank"],
            ("expect_column_values_to_be_between", "customer_minority_label_share"): ["initech_saas"],
            ("customer_id_rule", "customer_id"): ["'acme air'"],
        }
    )
    assert spark.rows_validated == pandas.rows_validated
    assert spark.customers_validated == pandas.customers_validated
    only = validate_commit(
        sheet, "sheet", commit, PACKAGED_SUITE, customers=["umbrella_health"], engine="spark", spark=settings
    )
    assert only.success
    assert only.customers_validated == ["umbrella_health"]


# A healthy customer's rows under an id that cannot name a model, a folder or an Argo parameter.
COPY_AS_BAD_ID = (
    "INSERT INTO sheet SELECT example_id + 1000, 'acme air', text, label FROM sheet "
    "WHERE customer_id = 'acme_air'"
)


def test_a_bad_customer_id_is_quarantined_not_trained(sheet: DoltRepository) -> None:
    report = validate_commit(sheet, "sheet", broken(sheet, COPY_AS_BAD_ID), PACKAGED_SUITE)
    assert report.quarantined == {"'acme air'": ["customer_id_rule on customer_id"]}
    assert report.healthy_customers == ["acme_air", "globex_bank", "initech_saas", "umbrella_health"]
    assert report.rows_validated == 84  # its rows were set aside, not validated
    assert report.passes(quarantine=True)
    assert not report.passes()
    (line,) = [x for x in report.summary().splitlines() if "FAILED" in x]
    assert line == (
        "  FAILED customer_id_rule on column customer_id: 1 unexpected customer(s); customers: 'acme air' "
        "(customer ids must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit; "
        "these customers' rows were set aside)"
    )


def test_a_requested_customer_without_rows_is_named(sheet: DoltRepository) -> None:
    report = validate_commit(
        sheet, "sheet", "main", PACKAGED_SUITE, customers=["acme_air", "ghost_co", "bad id"]
    )
    assert report.quarantined == {
        "'bad id'": ["customer_id_rule on customer_id"],
        "ghost_co": ["customer_has_rows on customer_id"],
    }
    assert report.healthy_customers == ["acme_air"]
    assert "customers: ghost_co (requested, but no rows at this commit)" in report.summary()


def test_an_expectation_that_cannot_run_is_a_broken_suite(sheet: DoltRepository, tmp_path: Path) -> None:
    suite = json.loads(PACKAGED_SUITE.read_text())
    suite["expectations"].append(
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "text", "regex": "(unclosed"}}
    )
    path = tmp_path / "bad_regex.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(SuiteError) as raised:
        validate_commit(sheet, "sheet", "main", path)
    assert str(raised.value) == (
        f"{path}: expectation expect_column_values_to_match_regex on column text could not run: "
        "missing ), unterminated subpattern at position 0"
    )


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``retrain`` in a child process: its stderr is what a user sees (no pytest log capture)."""
    return subprocess.run(
        [sys.executable, "-m", "retrain.cli", *argv], capture_output=True, text=True, timeout=300, check=False
    )


def test_validate_cli_reports_bad_input_not_bad_data(seeded: SeededRepository, tmp_path: Path) -> None:
    base = ["validate", "--repo", str(seeded.path), "--table", "examples", "--commit", "main", "--suite"]
    ghost = run_cli(*base, str(PACKAGED_SUITE), "--customers", "acme_air,ghost_co")
    assert ghost.returncode == 2
    assert "customers: ghost_co (requested, but no rows at this commit)" in ghost.stdout
    assert ghost.stderr == ""  # GX's "Created temporary directory ... ephemeral docs site" is gone
    quarantined = run_cli(*base, str(PACKAGED_SUITE), "--customers", "acme_air,ghost_co", "--quarantine")
    assert quarantined.returncode == 0
    assert "quarantined: ghost_co; healthy: acme_air" in quarantined.stdout
    suite = json.loads(PACKAGED_SUITE.read_text())
    suite["expectations"][0] = {
        "type": "expect_column_values_to_match_regex",
        "kwargs": {"column": "text", "regex": "["},
    }
    (tmp_path / "bad.json").write_text(json.dumps(suite))
    broken_suite = run_cli(*base, str(tmp_path / "bad.json"))
    assert broken_suite.returncode == 1
    assert broken_suite.stderr.startswith(f"retrain: error: {tmp_path / 'bad.json'}: expectation ")
    assert broken_suite.stderr.count("\n") == 1
    (tmp_path / "folder.json").mkdir()
    folder = run_cli(*base, str(tmp_path / "folder.json"))
    assert (folder.returncode, folder.stderr) == (
        1,
        f"retrain: error: expectation suite file {tmp_path / 'folder.json'} is a directory, "
        "not a JSON file\n",
    )


def test_spark_engine_needs_an_id_column(sheet: DoltRepository, tmp_path: Path) -> None:
    suite = tmp_path / "no_id.json"
    native = json.loads(PACKAGED_SUITE.read_text())
    del native["meta"]["retrain"]["id_column"]
    suite.write_text(json.dumps(native))
    with pytest.raises(SuiteError, match=r"the spark engine needs meta\.retrain\.id_column to stream"):
        validate_commit(sheet, "sheet", "main", suite, engine="spark")
