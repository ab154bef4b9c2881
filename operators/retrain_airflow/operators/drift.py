"""Drift operators: measure a scored partition's drift; pick the drifting customers retraining can help."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from retrain.drift.job import DriftReport, drift_partition
from retrain.drift.metrics import Thresholds, ThresholdsError
from retrain.drift.retraining import plan_retraining
from retrain.release.store import ReleaseStore
from retrain.spark import SparkSettings, spark_session
from retrain.tracking import tracking_uri
from retrain_airflow.arguments import as_flag
from retrain_airflow.handoff import bounded, bounded_fields, resolve
from retrain_airflow.hooks.dolt import DoltHook
from retrain_airflow.lineage import EmitsLineage, HiveTable, Lineage, Release
from retrain_airflow.operators.failures import fails_fast

PER_CUSTOMER = ("drifting", "no_reference", "insufficient")  # the report's fields that grow with customers


class DriftOperator(EmitsLineage, BaseOperator):
    """Measure drift of ``scores_table`` partition (``ds``, ``release_id``) into Hive ``drift_table``.

    Every customer of the release against its adapter's reference, in one pass in the task's Spark
    session (:func:`retrain.drift.job.drift_partition`; master ``$RETRAIN_SPARK_MASTER``, else
    ``local[*]``), the day also recorded in MLflow for the Health page. Each drifting customer is
    logged with its metrics, values and thresholds. Each outlet :class:`~airflow.sdk.Asset` gets an
    event naming the day, the release and the ``drifting`` customers. Returns the
    :class:`~retrain.drift.job.DriftReport` as a dict, its per-customer fields handed off when large.

    :param release_id: the release that scored the partition (templated).
    :param ds: the scored day (templated).
    :param scores_table: Hive table of scores, partitioned by ``ds`` and ``release`` (templated).
    :param drift_table: Hive table of drift results, partitioned by ``ds`` (templated).
    :param thresholds: overrides of the default thresholds, ``{"defaults": {metric: t}, "customers":
        {id: {metric: t}}, "min_rows": n}`` (:meth:`Thresholds.from_mapping`), a dict or its JSON
        (templated).
    :param warehouse: Hive warehouse (default ``$RETRAIN_WAREHOUSE``, else ``var/warehouse``) (templated).
    :param workdir: local cache of the release's adapters, shared with scoring (templated).
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    template_fields: Sequence[str] = (
        "release_id",
        "ds",
        "scores_table",
        "drift_table",
        "thresholds",
        "warehouse",
        "workdir",
    )

    def __init__(
        self,
        *,
        release_id: str,
        ds: str,
        scores_table: str = "scores",
        drift_table: str = "drift",
        thresholds: Mapping[str, Any] | str | None = None,
        warehouse: str | None = None,
        workdir: str = "var/scoring",
        mlflow_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.release_id, self.ds, self.scores_table, self.drift_table = (
            release_id,
            ds,
            scores_table,
            drift_table,
        )
        self.thresholds, self.warehouse, self.workdir, self.mlflow_uri = (
            thresholds,
            warehouse,
            workdir,
            mlflow_uri,
        )

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        thresholds = self._thresholds()  # a bad setting fails before Spark starts
        settings = SparkSettings.from_env(warehouse=self.warehouse)
        report = drift_partition(
            spark_session(settings),
            ReleaseStore.open(self.mlflow_uri),
            release_id=self.release_id,
            ds=self.ds,
            workdir=self.workdir,
            scores_table=self.scores_table,
            drift_table=self.drift_table,
            thresholds=thresholds,
        )
        for customer, metrics in report.drifting.items():
            shown = ", ".join(
                f"{m['metric']}={m['value']:.3f} (threshold {m['threshold']:g})" for m in metrics
            )
            self.log.warning("drifting customer %s: %s", customer, shown)
        self._announce(context, report)
        self.lineage = Lineage(
            inputs=(
                Release(tracking_uri(self.mlflow_uri), self.release_id),
                HiveTable(
                    self.scores_table,
                    settings.metastore_uri,
                    settings.warehouse,
                    {"ds": self.ds, "release": self.release_id},
                ),
            ),
            outputs=(
                HiveTable(self.drift_table, settings.metastore_uri, settings.warehouse, {"ds": self.ds}),
            ),
        )
        return bounded_fields(report.to_dict(), PER_CUSTOMER, context=context)

    def _thresholds(self) -> Thresholds | None:
        settings = self.thresholds
        if isinstance(settings, str):  # rendered as text by a DAG without native rendering
            try:
                settings = json.loads(settings) if settings.strip() else None
            except ValueError as error:
                raise ThresholdsError(
                    f"drift thresholds of task {self.task_id} are not JSON: {error}"
                ) from None
        if not settings:
            return None
        if not isinstance(settings, Mapping):
            raise ThresholdsError(
                f"drift thresholds of task {self.task_id}: expected an object, got {settings!r}"
            )
        return Thresholds.from_mapping(settings, f"drift thresholds of task {self.task_id}")

    def _announce(self, context: Context, report: DriftReport) -> None:
        drifting = sorted(report.drifting)
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = {
                    "ds": report.ds,
                    "release_id": report.release_id,
                    "drifting": bounded(drifting, context=context, name="drifting_customers"),
                    "count": len(drifting),
                }


class DriftRetrainingOperator(BaseOperator):
    """Of the ``drifting`` customers, pick those whose training rows changed since their adapter's commit.

    Each customer's adapter learned from ``table`` as of the commit in its release manifest entry
    (:func:`retrain.drift.retraining.plan_retraining`). Customers with new or changed rows since then
    are returned, to be retrained at the head; the others are logged as needing new labels. The
    task is skipped (and so is a retraining downstream) when ``enabled`` is off, when nobody
    drifts, or when no drifting customer has new rows.

    Returns ``{"customers": [...], "commit": head, "need_labels": [...]}``, the lists handed off when large.

    :param release_id: the release whose adapters drift (templated).
    :param drifting: the drifting customers: a list, a mapping by customer (the drift task's
        ``drifting``) or a handoff reference to either (templated).
    :param enabled: whether to pick anyone at all, e.g. ``{{ params.retrain_drifting }}`` (templated).
    :param table: the Dolt training table; ``key_column`` holds its customer ids.
    :param branch: the branch whose head retraining trains on.
    :param dolt_conn_id: Airflow connection of type ``dolt``.
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    template_fields: Sequence[str] = ("release_id", "drifting", "enabled")

    def __init__(
        self,
        *,
        release_id: str,
        drifting: Any,
        enabled: bool | str = True,
        table: str = "examples",
        key_column: str = "customer_id",
        branch: str = "main",
        dolt_conn_id: str = DoltHook.default_conn_name,
        mlflow_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.release_id, self.drifting, self.enabled = release_id, drifting, enabled
        self.table, self.key_column, self.branch = table, key_column, branch
        self.dolt_conn_id, self.mlflow_uri = dolt_conn_id, mlflow_uri

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        drifting = sorted(resolve(self.drifting) or [])
        if not drifting:
            raise AirflowSkipException("no customer drifts: nothing to retrain")
        if not as_flag(self.enabled):
            raise AirflowSkipException(
                f"{len(drifting)} drifting customer(s) not retrained: retraining drifting customers is off"
            )
        manifest = ReleaseStore.open(self.mlflow_uri).manifest(self.release_id)
        with DoltHook(self.dolt_conn_id).get_repository() as repo:
            plan = plan_retraining(
                repo, manifest, drifting, table=self.table, key_column=self.key_column, branch=self.branch
            )
        for customer, commit in plan.need_labels.items():
            self.log.warning(
                "customer %s drifts, but %s has no new rows for it since its adapter's commit %s: "
                "new labels are needed",
                customer,
                self.table,
                commit,
            )
        if not plan.retrain:
            raise AirflowSkipException(
                f"none of the {len(drifting)} drifting customer(s) has new rows in {self.table}: "
                "new labels are needed"
            )
        self.log.info(
            "retraining %d drifting customer(s) with new rows at %s: %s",
            len(plan.retrain),
            plan.head,
            ", ".join(plan.retrain),
        )
        return {
            "customers": bounded(plan.retrain, context=context, name="customers"),
            "commit": plan.head,
            "need_labels": bounded(sorted(plan.need_labels), context=context, name="need_labels"),
        }
