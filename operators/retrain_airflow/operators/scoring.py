"""HiveScoringOperator: score one Hive partition with a release, writing the scores atomically."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from retrain.release.store import ReleaseStore
from retrain.scoring.job import score_partition
from retrain.spark import SparkSettings, spark_session


class HiveScoringOperator(BaseOperator):
    """Score ``input_table`` partition ``ds`` with release ``release_id`` into ``output_table``.

    Runs the Spark job from the task (``spark_master`` ``local[*]`` by default, or a cluster
    master reachable from the worker). Returns the report: rows scored per customer, and the
    customers without an adapter in the release with their row counts.

    :param release_id: the release (manifest MD5) (templated).
    :param input_table: Hive table with ``request_id``, ``customer_id``, ``text`` by ``ds`` (templated).
    :param ds: the partition to score, e.g. ``{{ ds }}`` (templated).
    :param output_table: Hive table of scores, partitioned by ``ds`` and ``release`` (templated).
    :param spark_master: Spark master; for ``warehouse`` and ``metastore_uri`` see ``SparkSettings``.
    :param workdir: local cache of the release's adapters.
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    template_fields: Sequence[str] = ("release_id", "input_table", "ds", "output_table")

    def __init__(
        self,
        *,
        release_id: str,
        input_table: str,
        ds: str,
        output_table: str,
        spark_master: str = "local[2]",
        warehouse: str | None = None,
        metastore_uri: str | None = None,
        workdir: str = "var/scoring",
        mlflow_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.release_id, self.input_table, self.ds, self.output_table = (
            release_id,
            input_table,
            ds,
            output_table,
        )
        self.spark_master, self.warehouse, self.metastore_uri = spark_master, warehouse, metastore_uri
        self.workdir, self.mlflow_uri = workdir, mlflow_uri

    def execute(self, context: Context) -> dict[str, Any]:
        defaults = SparkSettings.from_env(warehouse=self.warehouse)
        settings = SparkSettings(
            master=self.spark_master, warehouse=defaults.warehouse, metastore_uri=self.metastore_uri
        )
        report = score_partition(
            spark_session(settings), ReleaseStore.open(self.mlflow_uri), release_id=self.release_id,
            input_table=self.input_table, ds=self.ds, output_table=self.output_table, workdir=self.workdir,
        )  # fmt: skip
        self.log.info("%s", report.summary())
        return {
            "release_id": report.release_id, "ds": report.ds, "rows_scored": report.rows_scored,
            "customers_scored": report.customers_scored, "missing_customers": report.missing_customers,
        }  # fmt: skip
