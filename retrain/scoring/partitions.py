"""Hive partitions replaced atomically: written to a new attempt folder, then flipped in the metastore.

A failed or killed job leaves the previous partition exactly as it was, and a rerun replaces the
partition instead of appending to it. Shared by the ``scores`` and ``drift`` tables.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from retrain.errors import InputError
from retrain.identifiers import RELEASE_ID_RULE, is_release_id, sql_identifier

log = logging.getLogger(__name__)


class PartitionError(InputError):
    """A table's metadata cannot be read as expected; the message names the statement."""


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_partition(tables: tuple[str, ...], ds: str, release_id: str, error: type[InputError]) -> None:
    """Refuse, raising ``error`` naming the value, what cannot name a table or a day's partition:
    these values are spliced into Spark SQL and partition folders."""
    for table in tables:
        sql_identifier(table, "table")
    if not _DAY.fullmatch(ds):
        raise error(f"partition value ds={ds!r} is not a date (YYYY-MM-DD)")
    if not is_release_id(release_id):
        raise error(f"release {release_id!r} is not a release id ({RELEASE_ID_RULE})")


def ensure_table(spark: Any, table: str, columns: dict[str, str], partitioned_by: tuple[str, ...]) -> None:
    """Create ``table`` (Parquet) if missing, and add any of ``columns`` an older version of it lacks.

    :param table: validated by the caller (:func:`retrain.identifiers.sql_identifier`); so are the
        column names, which are the suite's own.
    """
    body = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    keys = ", ".join(f"{name} STRING" for name in partitioned_by)
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({body}) PARTITIONED BY ({keys}) STORED AS PARQUET")
    present = {field.name for field in spark.table(table).schema.fields}
    added = {name: kind for name, kind in columns.items() if name not in present}
    if added:
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({', '.join(f'{n} {k}' for n, k in added.items())})")
        log.info("table %s: added column(s) %s", table, ", ".join(added))


def has_partition(spark: Any, table: str, spec: dict[str, str]) -> bool:
    wanted = "/".join(f"{key}={value}" for key, value in spec.items())
    return wanted in {r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()}


def replace_partition(spark: Any, frame: Any, table: str, spec: dict[str, str]) -> str:
    """Make ``frame`` the whole of partition ``spec`` of ``table``; returns its new location.

    :param spec: partition column -> value, each value validated by the caller against a strict
        pattern (a date, a release id): they are spliced into DDL, which takes no bound values.
    """
    root = _location(spark, f"DESCRIBE FORMATTED {table}")
    folders = "/".join(f"{key}={value}" for key, value in spec.items())
    attempt = f"{root}/{folders}/attempt-{uuid.uuid4().hex}"
    clause = ", ".join(f"{key}='{value}'" for key, value in spec.items())
    frame.write.mode("errorifexists").parquet(attempt)
    previous = None
    if has_partition(spark, table, spec):
        previous = _location(spark, f"DESCRIBE FORMATTED {table} PARTITION ({clause})")
        spark.sql(f"ALTER TABLE {table} PARTITION ({clause}) SET LOCATION '{attempt}'")
    else:
        spark.sql(f"ALTER TABLE {table} ADD PARTITION ({clause}) LOCATION '{attempt}'")
    spark.sql(f"REFRESH TABLE {table}")
    if previous and "/attempt-" in previous:  # only ever delete what an earlier run of this job wrote
        jvm_path = spark._jvm.org.apache.hadoop.fs.Path(previous)
        jvm_path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(jvm_path, True)
    log.info("partition %s of %s now at %s", clause, table, attempt)
    return attempt


def _location(spark: Any, describe: str) -> str:
    for row in spark.sql(describe).collect():
        if str(row[0]).strip() == "Location":
            return str(row[1]).strip()
    raise PartitionError(f"no Location in `{describe}`")
