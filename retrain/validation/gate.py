"""Validate a Dolt table as of a commit with Great Expectations (pandas), and build Data Docs."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Literal

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint.actions import UpdateDataDocsAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from retrain.dolt import DoltRepository
from retrain.errors import InputError
from retrain.identifiers import CUSTOMER_ID_RULE, is_customer_id
from retrain.outputs import DATA_DOCS, claim
from retrain.spark import SparkSettings, spark_session
from retrain.validation.report import ExpectationFailure, ValidationReport
from retrain.validation.suite import (
    PER_CUSTOMER_COLUMNS,
    SuiteError,
    SuiteFile,
    expectation_columns,
    load_suite,
)

log = logging.getLogger(__name__)
SAMPLE_VALUES = 5
# GX forces this logger to INFO at import: every run printed "Created temporary directory ... for
# ephemeral docs site". Let it follow its parents' level like every other GX logger (-v shows them).
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)
# Failures the gate adds to GX's, for customers it cannot hand to GX or to training.
INVALID_CUSTOMER_ID = "customer_id_rule"
NO_ROWS = "customer_has_rows"


class ValidationInputError(InputError):
    """Nothing to validate: an empty table, or none of the requested customers' rows."""


def customer_statistics(
    rows: pd.DataFrame, key_column: str, label_column: str, labels: list[str] | None = None
) -> pd.DataFrame:
    """Per-customer columns, repeated on each of the customer's rows (see :mod:`retrain.validation.suite`).

    Class balance is measured over ``labels`` (default: every label seen): a customer lacking one
    of them has a minority share of 0. Rows with other labels count in ``customer_examples`` only.
    """
    totals = rows.groupby(key_column, dropna=True).size()
    counts = rows.groupby(key_column, dropna=True)[label_column].value_counts().unstack(fill_value=0)
    classes = counts.reindex(index=totals.index, columns=labels or counts.columns, fill_value=0)
    minority_share = classes.min(axis=1) / totals if classes.shape[1] > 1 else totals * 0.0
    stats = pd.DataFrame(
        {
            "customer_examples": totals,
            "customer_distinct_labels": (counts > 0).sum(axis=1),
            "customer_minority_label_share": minority_share,
        }
    )
    return rows.join(stats, on=key_column)


def validate_commit(
    repo: DoltRepository,
    table: str,
    commit: str,
    suite: str | Path | SuiteFile,
    *,
    customers: Collection[str] | None = None,
    docs_dir: str | Path | None = None,
    engine: Literal["pandas", "spark"] = "pandas",
    spark: SparkSettings | None = None,
    batch_rows: int = 200_000,
) -> ValidationReport:
    """Check ``table`` as of ``commit`` against ``suite``; only ``customers``' rows when given.

    :param docs_dir: build GX Data Docs there; the report's ``docs_page`` is this commit's page. A new
        folder, an empty one, or Data Docs the suite made (:func:`retrain.outputs.claim`).
    :param engine: ``pandas`` reads the rows into memory; ``spark`` streams them from Dolt in
        batches of ``batch_rows`` (ordered by the suite's ``id_column``) into Parquet and validates
        with GX's Spark datasource, for tables too large for memory.
    :param spark: Spark settings for the ``spark`` engine (default: from the environment).
    """
    suite_file = suite if isinstance(suite, SuiteFile) else load_suite(suite)
    docs = claim(docs_dir, DATA_DOCS) if docs_dir is not None else None  # before reading any rows
    commit_hash = repo.resolve(commit)
    suite_file.check_columns(repo.columns(table, commit_hash), f"table {table!r} at commit {commit_hash}")
    where = {suite_file.key_column: sorted(customers)} if customers is not None else None
    scope = f"rows of customers {', '.join(sorted(customers))}" if customers is not None else "rows"
    empty = ValidationInputError(
        f"table {table!r} has no {scope} at commit {commit_hash}: nothing to validate"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="retrain-validate-") as staging:
        if engine == "spark":
            if suite_file.id_column is None:
                raise SuiteError(
                    f"{suite_file.path}: the spark engine needs meta.retrain.id_column "
                    "to stream rows in order"
                )
            batches = repo.iter_table(
                table, commit_hash, key_column=suite_file.id_column, batch_size=batch_rows, where=where
            )
            if not _write_parquet(batches, Path(staging)):
                raise empty
            frame = spark_session(spark or SparkSettings.from_env()).read.parquet(staging)
            key, label = suite_file.key_column, suite_file.label_column
            invalid = _invalid_ids(r[0] for r in frame.select(key).distinct().collect() if r[0] is not None)
            if invalid:  # their rows are reported, never validated or trained
                frame = frame.where(frame[key].isNull() | ~frame[key].cast("string").isin(invalid))
            batch = customer_statistics_spark(frame, key, label, suite_file.labels)
            rows = frame.count()
            customers_seen = [str(r[0]) for r in frame.select(key).distinct().collect() if r[0] is not None]
        else:
            in_memory = repo.read_table(table, commit_hash, where=where)
            if in_memory.empty:
                raise empty
            invalid = _invalid_ids(in_memory[suite_file.key_column].dropna().unique())
            if invalid:  # their rows are reported, never validated or trained
                keys = in_memory[suite_file.key_column]
                in_memory = in_memory[keys.isna() | ~keys.astype(str).isin(invalid)]
            batch = customer_statistics(
                in_memory, suite_file.key_column, suite_file.label_column, suite_file.labels
            )
            rows = len(in_memory)
            customers_seen = [str(c) for c in in_memory[suite_file.key_column].dropna().unique()]
        read_seconds = time.perf_counter() - started
        result, docs_page = _run_gx(batch, suite_file, commit_hash, docs, engine)
    _raise_if_broken(result, suite_file)
    failures = [_failure(r, suite_file.key_column) for r in result.results if not r.success]
    invalid = sorted({*invalid, *_invalid_ids(customers or ())})  # requested ids too, with rows or not
    missing = sorted(set(customers or ()) - set(customers_seen) - set(invalid))
    failures += _customer_failures(suite_file.key_column, invalid, missing)
    report = ValidationReport(
        table=table,
        commit=commit_hash,
        suite=suite_file.name,
        rows_validated=rows,
        customers_validated=sorted(customers_seen),
        expectations_evaluated=len(result.results),
        failures=failures,
        docs_page=docs_page,
    )
    elapsed = time.perf_counter() - started
    log.info(
        "validated %d rows of %s at %s (%s) in %.2fs (read %.2fs, %.0f rows/s): %d of %d expectations failed",
        rows,
        table,
        commit_hash,
        engine,
        elapsed,
        read_seconds,
        rows / elapsed,
        len(failures),
        report.expectations_evaluated,
    )
    return report


def _invalid_ids(keys: Iterable[object]) -> list[str]:
    """The customer ids outside :data:`~retrain.identifiers.CUSTOMER_ID_RULE`, sorted."""
    return sorted({str(k) for k in keys if not is_customer_id(str(k))})


def _customer_failures(key_column: str, invalid: list[str], missing: list[str]) -> list[ExpectationFailure]:
    """Quarantine customers with an id that cannot name a model or a path, and requested customers
    without a row at the commit: reported like any failing customer, never a failed training."""
    failures = []
    if invalid:
        failures.append(
            ExpectationFailure(
                expectation=INVALID_CUSTOMER_ID,
                column=key_column,
                unexpected_count=len(invalid),
                sample_values=[],
                customers=[repr(c) for c in invalid],
                per_customer=True,
                notes=f"customer ids must be {CUSTOMER_ID_RULE}; these customers' rows were set aside",
            )
        )
    if missing:
        failures.append(
            ExpectationFailure(
                expectation=NO_ROWS,
                column=key_column,
                unexpected_count=len(missing),
                sample_values=[],
                customers=missing,
                per_customer=True,
                notes="requested, but no rows at this commit",
            )
        )
    return failures


def _raise_if_broken(result: Any, suite_file: SuiteFile) -> None:
    """An expectation that raised did not check the data (a bad regex, a bad kwarg): the suite is
    broken, which is not the same as bad data (exit 2 with "0 unexpected rows")."""
    for outcome in result.results:
        message = _exception_message(outcome.exception_info)
        if message is not None:
            configuration = outcome.expectation_config
            columns = expectation_columns(configuration)
            where = f" on column {columns[0]}" if columns else ""
            raise SuiteError(
                f"{suite_file.path}: expectation {configuration.type}{where} could not run: {message}"
            )


def _exception_message(info: Any) -> str | None:
    """The first line of the exception an expectation raised, if it raised: GX reports it flat
    (``raised_exception``) or per metric (``{metric id: {exception_message, ...}}``)."""
    if not isinstance(info, dict):
        return None
    if info.get("exception_message") and info.get("raised_exception", True):
        lines = str(info["exception_message"]).strip().splitlines()
        return lines[-1] if lines else "no message"
    for value in info.values():
        found = _exception_message(value)
        if found is not None:
            return found
    return None


def _write_parquet(batches: Iterable[pd.DataFrame], directory: Path) -> int:
    """Stream batches into Parquet part files with one schema; returns the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, written = None, 0
    for index, batch in enumerate(batches):
        table = pa.Table.from_pandas(batch, schema=schema, preserve_index=False, safe=False)
        schema = schema or table.schema
        pq.write_table(table, directory / f"part-{index:05d}.parquet")
        written += len(batch)
        log.info("staged %d rows for Spark validation (%d batches)", written, index + 1)
    return written


def customer_statistics_spark(
    frame: Any, key_column: str, label_column: str, labels: list[str] | None
) -> Any:
    """:func:`customer_statistics` for a Spark DataFrame: the same three columns, joined onto each row."""
    from pyspark.sql import functions as F

    classes = labels or sorted(
        str(r[0]) for r in frame.select(label_column).distinct().collect() if r[0] is not None
    )
    per_class = [F.sum(F.when(F.col(label_column) == c, 1).otherwise(0)) for c in classes]
    total = F.count(F.lit(1))
    minority = F.least(*per_class) if len(per_class) > 1 else F.lit(0)
    stats = (
        frame.where(F.col(key_column).isNotNull())
        .groupBy(key_column)
        .agg(
            total.alias("customer_examples"),
            F.countDistinct(label_column).alias("customer_distinct_labels"),
            (minority / total).alias("customer_minority_label_share"),
        )
    )
    return frame.join(stats, on=key_column, how="left")


def _run_gx(
    batch: Any, suite_file: SuiteFile, commit: str, docs_dir: Path | None, engine: str
) -> tuple[Any, str | None]:
    """Run the suite on ``batch``; with ``docs_dir``, in a file context whose Data Docs keep every commit."""
    context = (
        gx.get_context(mode="file", project_root_dir=str(docs_dir))
        if docs_dir is not None
        else gx.get_context(mode="ephemeral")
    )
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset_name = f"{suite_file.name}_rows"
    source = (
        context.data_sources.add_or_update_spark("dolt_spark")
        if engine == "spark"
        else context.data_sources.add_or_update_pandas("dolt")
    )
    asset = source.add_dataframe_asset(asset_name)
    batch_definition = asset.add_batch_definition_whole_dataframe("as_of_commit")
    suite = context.suites.add_or_update(
        gx.ExpectationSuite(
            name=suite_file.name,
            expectations=[e.configuration.to_domain_obj() for e in suite_file.suite.expectations],
        )
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_file.name, data=batch_definition, suite=suite)
    )
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [suite_file.key_column]}
    if docs_dir is None:
        return definition.run(batch_parameters={"dataframe": batch}, result_format=result_format), None
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{suite_file.name}_gate",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data_docs")],
            result_format=result_format,
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": batch}, run_id=RunIdentifier(run_name=commit))
    ((identifier, result),) = run.run_results.items()
    urls = context.get_docs_sites_urls(resource_identifier=identifier)
    return result, (urls[0]["site_url"] if urls else None)


def _failure(result: Any, key_column: str) -> ExpectationFailure:
    configuration = result.expectation_config
    columns = expectation_columns(configuration)
    outcome = result.result or {}
    customers = sorted(
        {
            str(row[key_column])
            for row in outcome.get("unexpected_index_list") or []
            if row.get(key_column) is not None
        }
    )
    per_customer = any(c in PER_CUSTOMER_COLUMNS for c in columns)
    samples = [repr(v) for v in (outcome.get("partial_unexpected_list") or [])[:SAMPLE_VALUES]]
    return ExpectationFailure(
        expectation=configuration.type,
        column=columns[0] if columns else None,
        unexpected_count=len(customers) if per_customer else int(outcome.get("unexpected_count") or 0),
        sample_values=samples,
        customers=customers,
        per_customer=per_customer,
        notes=(configuration.meta or {}).get("notes"),
    )
