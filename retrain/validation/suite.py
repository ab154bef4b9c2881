"""Expectation suite files that analysts edit: Great Expectations' own JSON, plus per-customer checks.

A suite file holds::

    {
      "name": "examples",
      "key_column": "customer_id",        # whose rows each failure is attributed to
      "label_column": "label",            # used to compute per-customer class balance
      "id_column": "example_id",          # optional: unique row id, needed by the Spark engine
      "expectations": [ ...GX expectation configurations on the table's rows... ],
      "per_customer": [ ...GX expectations on the per-customer columns below... ]
    }

The per-customer columns (``customer_examples``, ``customer_distinct_labels``,
``customer_minority_label_share``) are computed for each row from its customer's rows, so one GX
suite checks rows and customers together and one Data Docs page shows a commit's whole result.
Every threshold lives in the file; the code only computes those columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from retrain.errors import InputError

# Columns computed per customer that ``per_customer`` expectations may use.
PER_CUSTOMER_COLUMNS = ("customer_examples", "customer_distinct_labels", "customer_minority_label_share")
_COLUMN_KWARGS = ("column", "column_A", "column_B")


class SuiteError(InputError):
    """A suite file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class SuiteFile:
    path: Path
    name: str
    key_column: str
    label_column: str
    suite: gx.ExpectationSuite  # row expectations, then per-customer ones
    id_column: str | None = None  # a unique row id: the Spark engine streams rows in its order

    @property
    def labels(self) -> list[str] | None:
        """The allowed labels: the value set of the label column's in-set expectation, if any."""
        for expectation in self.suite.expectations:
            configuration = expectation.configuration
            if (
                configuration.type == "expect_column_values_to_be_in_set"
                and configuration.kwargs.get("column") == self.label_column
            ):
                return sorted(str(v) for v in configuration.kwargs["value_set"])
        return None

    def check_columns(self, table_columns: list[str], where: str) -> None:
        """Raise naming the expectation when it refers to a column the table lacks."""
        for role, column in (("key_column", self.key_column), ("label_column", self.label_column)):
            if column not in table_columns:
                raise SuiteError(f"{self.path}: {role} {column!r} is not a column of {where}")
        clashing = set(PER_CUSTOMER_COLUMNS) & set(table_columns)
        if clashing:
            raise SuiteError(
                f"{self.path}: {where} has columns reserved for per-customer checks: {sorted(clashing)}"
            )
        available = [*table_columns, *PER_CUSTOMER_COLUMNS]
        for expectation in self.suite.expectations:
            for column in expectation_columns(expectation.configuration):
                if column not in available:
                    raise SuiteError(
                        f"{self.path}: expectation {expectation.expectation_type} names column "
                        f"{column!r}, which {where} lacks (columns: {', '.join(table_columns)})"
                    )


def load_suite(path: str | Path) -> SuiteFile:
    """Read and check a suite file; every problem is a :class:`SuiteError` naming the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"expectation suite file {path} does not exist") from None
    except IsADirectoryError:
        raise SuiteError(f"expectation suite file {path} is a directory, not a JSON file") from None
    except OSError as error:
        raise SuiteError(f"cannot read expectation suite file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SuiteError(
            f"{path} is not UTF-8 text: byte 0x{error.object[error.start]:02x} at offset {error.start}"
        ) from None
    except json.JSONDecodeError as error:
        raise SuiteError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except RecursionError:  # json's C parser recurses once per nesting level
        raise SuiteError(f"{path} nests JSON too deeply to be an expectation suite") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: the suite must be a JSON object")
    for field in ("name", "key_column", "label_column", "expectations"):
        if field not in raw:
            raise SuiteError(f"{path}: missing required field {field!r}")
    suite = gx.ExpectationSuite(name=str(raw["name"]))
    _add_expectations(path, suite, raw["expectations"], "expectations")
    _add_expectations(path, suite, raw.get("per_customer", []), "per_customer")
    return SuiteFile(
        path=path,
        name=str(raw["name"]),
        key_column=str(raw["key_column"]),
        label_column=str(raw["label_column"]),
        suite=suite,
        id_column=str(raw["id_column"]) if raw.get("id_column") else None,
    )


def _add_expectations(path: Path, suite: gx.ExpectationSuite, expectations: Any, field: str) -> None:
    if not isinstance(expectations, list):
        raise SuiteError(f"{path}: {field!r} must be a list of expectations")
    for index, item in enumerate(expectations):
        if not isinstance(item, dict) or "type" not in item:
            raise SuiteError(
                f"{path}: {field}[{index}] needs a 'type' (e.g. expect_column_values_to_not_be_null)"
            )
        try:
            configuration = ExpectationConfiguration(
                type=item["type"], kwargs=item.get("kwargs", {}), meta=item.get("meta") or {}
            )
            suite.add_expectation_configuration(configuration)
        except Exception as error:  # GX raises several types for unknown types and bad kwargs
            why = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line
            raise SuiteError(
                f"{path}: {field}[{index}] ({item['type']}) is not a valid expectation: {why}"
            ) from None


def expectation_columns(configuration: ExpectationConfiguration) -> list[str]:
    """The columns an expectation reads (``column``, ``column_A``/``column_B``, ``column_list``)."""
    kwargs = configuration.kwargs
    columns = [str(kwargs[k]) for k in _COLUMN_KWARGS if k in kwargs]
    return columns + [str(c) for c in kwargs.get("column_list", [])]
