"""HiveScoringOperator: score one Hive partition with a release, writing the scores atomically."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from airflow.sdk import Asset, BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from retrain.release.store import ReleaseStore
from retrain.scoring import spark_submit
from retrain.scoring.job import ScoringReport, score_partition
from retrain.spark import SparkSettings, spark_session
from retrain.tracking import tracking_uri
from retrain_airflow.handoff import bounded_fields
from retrain_airflow.lineage import EmitsLineage, HiveTable, Lineage, Release
from retrain_airflow.operators.failures import fails_fast


class HiveScoringOperator(EmitsLineage, BaseOperator):
    """Score ``input_table`` partition ``ds`` with release ``release_id`` into ``output_table``.

    Two ways to run the same job (:func:`retrain.scoring.job.score_partition`):

    - ``spark_conn_id`` unset: in the task's own Spark session (``local[*]`` by default, or a master
      reachable from the worker), the embedded default;
    - ``spark_conn_id`` set: ``spark-submit`` through the Apache Spark provider's ``SparkSubmitHook``
      to the connection's master (YARN, Kubernetes, standalone), with the cluster's own settings.

    Returns the report: rows scored per customer, and the customers without an adapter in the
    release with their row counts (in client deploy mode; in cluster mode the driver logs it).
    Each outlet :class:`~airflow.sdk.Asset` gets an event naming the partition written (``ds``,
    ``release_id``, ``output_table``), partitioned by ``ds``.

    :param release_id: the release (manifest MD5) (templated).
    :param input_table: Hive table with ``request_id``, ``customer_id``, ``text`` by ``ds`` (templated).
    :param ds: the partition to score, e.g. ``{{ ds }}`` (templated).
    :param output_table: Hive table of scores, partitioned by ``ds`` and ``release`` (templated).
    :param customers: score only these customers' rows, keeping the partition's other rows
        (a partner's retro-test); None scores every customer (templated).
    :param if_missing: a missing input partition fails the task (``error``) or skips it (``skip``).
    :param spark_conn_id: a ``spark`` connection to ``spark-submit`` to; None runs in the task.
    :param spark_conf: Spark settings, e.g. executor memory and cores (templated).
    :param spark_master: master of the in-task session (default ``$RETRAIN_SPARK_MASTER``, else
        ``local[*]``); ignored with ``spark_conn_id``, whose master wins.
    :param warehouse: Hive warehouse (default ``$RETRAIN_WAREHOUSE``, else ``var/warehouse``) (templated).
    :param metastore_uri: ``thrift://`` Hive metastore (default ``$RETRAIN_HIVE_METASTORE``, else Derby).
    :param env_vars: environment of the ``spark-submit`` process (e.g. ``PYSPARK_PYTHON``).
    :param workdir: local cache of the release's adapters (templated).
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    template_fields: Sequence[str] = (
        "release_id",
        "input_table",
        "ds",
        "output_table",
        "customers",
        "spark_conf",
        "warehouse",
        "workdir",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"spark_conf": "json"}

    def __init__(
        self,
        *,
        release_id: str,
        input_table: str,
        ds: str,
        output_table: str,
        customers: list[str] | str | None = None,
        if_missing: Literal["error", "skip"] = "error",
        spark_conn_id: str | None = None,
        spark_conf: dict[str, str] | None = None,
        spark_master: str | None = None,
        warehouse: str | None = None,
        metastore_uri: str | None = None,
        env_vars: dict[str, str] | None = None,
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
        self.customers, self.if_missing = customers, if_missing
        self.spark_conn_id, self.spark_conf, self.spark_master = spark_conn_id, spark_conf or {}, spark_master
        self.warehouse, self.metastore_uri, self.env_vars = warehouse, metastore_uri, env_vars or {}
        self.workdir, self.mlflow_uri = workdir, mlflow_uri
        self._submit_hook: Any = None

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any] | None:
        report = self._submit() if self.spark_conn_id else self._run_in_task()
        if report is not None and report.skipped:
            raise AirflowSkipException(report.skipped)
        self._announce(context)
        self.lineage = self._lineage()
        if report is None:
            self.log.info("spark-submit finished; the scoring report is in the driver's log (cluster mode)")
            return None
        self.log.info("%s", report.summary())
        per_customer = ("customers_scored", "missing_customers")  # row counts by customer
        return bounded_fields(report.to_dict(), per_customer, context=context)

    def _announce(self, context: Context) -> None:
        """Name the partition written in the event of each outlet asset. The day is the event's
        partition key, so a DAG scheduled on the asset with ``PartitionedAssetTimetable`` runs once
        per day scored (``monitor_daily``)."""
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                event = context["outlet_events"][outlet]
                event.extra = {
                    "ds": self.ds,
                    "release_id": self.release_id,
                    "output_table": self.output_table,
                }
                event.add_partitions(self.ds)

    def _lineage(self) -> Lineage:
        """Read: the release and the input partition; written: the output partition of that release."""
        settings = self._settings()

        def table(name: str, **partition: str) -> HiveTable:
            return HiveTable(name, settings.metastore_uri, settings.warehouse, partition)

        return Lineage(
            inputs=(
                Release(tracking_uri(self.mlflow_uri), self.release_id),
                table(self.input_table, ds=self.ds),
            ),
            outputs=(table(self.output_table, ds=self.ds, release=self.release_id),),
        )

    def on_kill(self) -> None:
        if self._submit_hook is not None:
            self._submit_hook.on_kill()

    def _settings(self) -> SparkSettings:
        defaults = SparkSettings.from_env(warehouse=self.warehouse)
        return SparkSettings(
            master=self.spark_master or defaults.master,
            warehouse=defaults.warehouse,
            metastore_uri=self.metastore_uri or defaults.metastore_uri,
            conf=dict(self.spark_conf),
        )

    def _run_in_task(self) -> ScoringReport:
        return score_partition(
            spark_session(self._settings()),
            ReleaseStore.open(self.mlflow_uri),
            release_id=self.release_id,
            input_table=self.input_table,
            ds=self.ds,
            output_table=self.output_table,
            workdir=self.workdir,
            customers=self._customer_list(),
            if_missing=self.if_missing,
        )

    def _customer_list(self) -> list[str] | None:
        if self.customers is None or isinstance(self.customers, list):
            return self.customers
        # A templated single customer, or a comma-separated list from a param.
        return [c.strip() for c in str(self.customers).split(",") if c.strip()]

    def _submit(self) -> ScoringReport | None:
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        settings = self._settings()
        env = dict(self.env_vars)
        env.setdefault("RETRAIN_WAREHOUSE", settings.warehouse)
        if settings.metastore_uri:
            env.setdefault("RETRAIN_HIVE_METASTORE", settings.metastore_uri)
        if self.mlflow_uri:  # by environment, never on the command line that spark-submit logs
            env.setdefault("MLFLOW_TRACKING_URI", self.mlflow_uri)
        with tempfile.TemporaryDirectory(prefix="retrain-score-") as tmp:
            report_file = Path(tmp) / "report.json"
            self._submit_hook = SparkSubmitHook(
                conn_id=self.spark_conn_id or "spark_default",
                conf=dict(self.spark_conf),
                name=f"retrain-score-{self.input_table}-{self.ds}",
                application_args=self._score_args(report_file),
                env_vars=env,
            )
            self._submit_hook.submit(spark_submit.__file__)
            if not report_file.is_file():
                return None
            return ScoringReport.from_dict(json.loads(report_file.read_text()))

    def _score_args(self, report_file: Path) -> list[str]:
        options = {
            "--release": self.release_id,
            "--table": self.input_table,
            "--ds": self.ds,
            "--out": self.output_table,
            "--workdir": self.workdir,
            "--report-json": str(report_file),
        }
        args = [part for option, value in options.items() for part in (option, value)]
        args += ["--if-missing", self.if_missing]
        for customer in self._customer_list() or []:
            args += ["--customer", customer]
        return args
