"""Suite files: every way a file can be unusable is a SuiteError naming the file and the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from retrain.validation.suite import SuiteError, load_suite

SHIPPED = Path(__file__).resolve().parents[3] / "expectations" / "examples.json"


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def minimal(**overrides: object) -> dict[str, object]:
    return {
        "name": "s",
        "key_column": "customer_id",
        "label_column": "label",
        "expectations": [],
        **overrides,
    }


def test_shipped_suite_loads_with_thresholds_from_the_file() -> None:
    suite = load_suite(SHIPPED)
    types = [e.expectation_type for e in suite.suite.expectations]
    assert types.count("expect_column_values_to_not_be_null") == 3
    assert "expect_column_values_to_be_unique" in types
    assert suite.labels == ["routine", "urgent"]
    between = [
        e.configuration.kwargs
        for e in suite.suite.expectations
        if e.configuration.kwargs.get("column") == "customer_examples"
    ]
    assert between == [{"column": "customer_examples", "min_value": 20}]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"suite file .*nope.json does not exist"):
        load_suite(tmp_path / "nope.json")


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"name": "s",\n "expectations": [,]}')
    with pytest.raises(SuiteError, match=r"suite.json is not valid JSON: .* at line 2"):
        load_suite(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], "must be a JSON object"),
        ({"name": "s"}, "missing required field 'key_column'"),
        (minimal(expectations={"type": "x"}), "'expectations' must be a list"),
        (minimal(expectations=[{"kwargs": {}}]), r"expectations\[0\] needs a 'type'"),
        (minimal(expectations=[{"type": "expect_the_moon"}]), r"\[0\] \(expect_the_moon\) is not a valid"),
        (minimal(per_customer=[{"type": "expect_column_values_to_be_between", "kwargs": {"colum": "x"}}]),
         r"per_customer\[0\] \(expect_column_values_to_be_between\) is not a valid"),
    ],
)  # fmt: skip
def test_unusable_files(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, content))


def test_columns_are_checked_against_the_table(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path,
            minimal(
                expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "txt"}}]
            ),
        )
    )
    table = ["example_id", "customer_id", "text", "label"]
    with pytest.raises(
        SuiteError, match=r"expect_column_values_to_not_be_null names column 'txt', which table 'examples'"
    ):
        suite.check_columns(table, "table 'examples' at commit abc")
    with pytest.raises(SuiteError, match="key_column 'customer_id' is not a column"):
        suite.check_columns(["text", "label"], "table 'x'")
    with pytest.raises(SuiteError, match="reserved for per-customer checks"):
        suite.check_columns([*table, "customer_examples"], "table 'x'")


# GX explains this one over five lines (one per type it tried for min_value).
BAD_BOUND = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": "a"}}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "expectation suite file {path} is a directory, not a JSON file"),
        (lambda p: p.write_bytes(b'{"name": "caf\xe9"}'), "{path} is not UTF-8 text: byte 0xe9 at offset 13"),
        (lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
         "{path} nests JSON too deeply to be an expectation suite"),
        (lambda p: p.write_text(json.dumps(minimal(expectations=[BAD_BOUND]))),
         "{path}: expectations[0] (expect_column_values_to_be_between) is not a valid expectation: "),
    ],
    ids=["directory", "latin-1", "nested-100k", "multi-line-gx-error"],
)  # fmt: skip
def test_unreadable_files_are_one_line_naming_the_file(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "suite.json"
    make(path)
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert str(raised.value).startswith(message.format(path=path))
    assert "\n" not in str(raised.value)
