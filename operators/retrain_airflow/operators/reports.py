"""RetroTestReportOperator: a partner's retro-test report (HTML with PNG plots) from Hive."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from retrain.reports.retro import positive_label_of, read_retro_scores, write_retro_report
from retrain.spark import SparkSettings, spark_session
from retrain_airflow.lineage import EmitsLineage, Folder, HiveTable, Lineage
from retrain_airflow.operators.failures import fails_fast


class RetroTestReportOperator(EmitsLineage, BaseOperator):
    """Write ``report_dir/index.html`` for ``customer`` from every day of ``scores_table`` so far.

    The report covers all the customer's retro-test partitions, so each backfilled day's run
    rewrites it and the last one covers the whole period. Returns the report path, days and rows.

    :param customer: the partner's customer id (templated).
    :param scores_table: Hive table of retro-test scores (templated).
    :param history_table: Hive table with the known outcomes in ``label``, by ``ds`` (templated).
    :param report_dir: folder of the report: new, empty or an earlier retro-test report, which is
        replaced; any other non-empty folder fails the task (templated).
    :param positive_label: the label ``score`` is the probability of; default: the last in sorted
        order, as scoring defines it.
    :param warehouse: Hive warehouse (default ``$RETRAIN_WAREHOUSE``, else ``var/warehouse``) (templated).
    """

    template_fields: Sequence[str] = ("customer", "scores_table", "history_table", "report_dir", "warehouse")

    def __init__(
        self,
        *,
        customer: str,
        scores_table: str = "retro_scores",
        history_table: str = "labelled_history",
        report_dir: str,
        positive_label: str | None = None,
        warehouse: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.customer, self.scores_table, self.history_table = customer, scores_table, history_table
        self.report_dir, self.positive_label, self.warehouse = report_dir, positive_label, warehouse

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        settings = SparkSettings.from_env(warehouse=self.warehouse)
        spark = spark_session(settings)
        scores = read_retro_scores(
            spark, scores_table=self.scores_table, history_table=self.history_table, customer=self.customer
        )
        report = write_retro_report(
            scores,
            Path(self.report_dir),
            partner=self.customer,
            positive_label=self.positive_label or positive_label_of(scores),
            force=True,
        )
        self.lineage = Lineage(
            inputs=tuple(
                HiveTable(table, settings.metastore_uri, settings.warehouse)
                for table in (self.scores_table, self.history_table)
            ),
            outputs=(Folder(self.report_dir),),
        )
        self.log.info(
            "retro-test report for %s: %s (%d days, %d rows)",
            self.customer,
            report.path,
            report.days,
            report.rows,
        )
        return {"report": str(report.path), "days": report.days, "rows": report.rows}
