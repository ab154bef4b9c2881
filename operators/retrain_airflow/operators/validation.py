"""DoltValidateOperator: the Great Expectations gate on a Dolt commit, before anything trains."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from retrain.validation.gate import validate_commit
from retrain.validation.suite import PACKAGED_SUITE
from retrain_airflow.handoff import bounded_fields, resolve
from retrain_airflow.hooks.dolt import DoltHook
from retrain_airflow.lineage import DoltTable, EmitsLineage, Lineage
from retrain_airflow.links import DataDocsLink
from retrain_airflow.operators.failures import fails_fast


class DoltValidateOperator(EmitsLineage, BaseOperator):
    """Validate ``table`` as of ``commit`` with an expectation suite; fail the task when it fails.

    Returns (and pushes to XCom) the structured result: ``success``, ``failures`` (expectation,
    column, unexpected count, samples, customers), ``customers_validated``, ``quarantined`` and
    ``healthy_customers``; each of these handed off as a file when large
    (:mod:`retrain_airflow.handoff`). The Data Docs page of the
    commit is pushed under ``data_docs_url`` for the operator's extra link.

    :param table: training table (templated).
    :param commit: commit hash or branch, e.g. ``{{ ti.xcom_pull('sense')['commit'] }}`` (templated).
    :param suite: path of the suite JSON file; empty or None runs the suite shipped with the
        package (:data:`retrain.validation.suite.PACKAGED_SUITE`) (templated).
    :param customers: validate only these customers' rows, or a handoff reference to them; None
        validates the whole table (templated).
    :param docs_dir: folder of the GX Data Docs site; None builds no docs (templated).
    :param quarantine: when only some customers fail, succeed and pass the healthy ones downstream
        (``healthy_customers``); a failure no customer can be blamed for still fails the task.
    :param engine: ``pandas`` (in memory) or ``spark`` (rows streamed into Spark, for large tables).
    :param dolt_conn_id: Airflow connection of type ``dolt``.
    :param previous_commit: where the range of commits being validated starts, for the lineage
        (:mod:`retrain_airflow.lineage`); None: no range (templated).
    """

    template_fields: Sequence[str] = ("table", "commit", "suite", "customers", "docs_dir", "previous_commit")
    operator_extra_links = (DataDocsLink(),)

    def __init__(
        self,
        *,
        table: str,
        commit: str,
        suite: str | None = None,
        customers: Sequence[str] | None = None,
        docs_dir: str | None = None,
        quarantine: bool = False,
        engine: Literal["pandas", "spark"] = "pandas",
        dolt_conn_id: str = DoltHook.default_conn_name,
        previous_commit: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.commit = commit
        self.suite = suite
        self.customers = customers
        self.docs_dir = docs_dir
        self.quarantine = quarantine
        self.engine: Literal["pandas", "spark"] = engine
        self.dolt_conn_id = dolt_conn_id
        self.previous_commit = previous_commit

    @fails_fast
    def execute(self, context: Context) -> dict[str, object]:
        customers = resolve(self.customers)
        with DoltHook(self.dolt_conn_id).get_repository() as repo:
            report = validate_commit(
                repo,
                self.table,
                self.commit,
                Path(self.suite) if self.suite else PACKAGED_SUITE,
                customers=list(customers) if customers is not None else None,
                docs_dir=self.docs_dir,
                engine=self.engine,
            )
        self.lineage = Lineage(
            inputs=(DoltTable(self.dolt_conn_id, self.table, report.commit, self.previous_commit or None),)
        )
        if report.docs_page:
            context["ti"].xcom_push(key=DataDocsLink.source_key, value=report.docs_page)
        self.log.info("%s", report.summary())
        if not report.passes(quarantine=self.quarantine):
            raise AirflowFailException(report.summary())  # the same commit fails the same way: no retries
        if report.quarantined:
            self.log.warning("quarantined customers (not trained): %s", report.quarantined)
        per_customer = ("customers_validated", "failures", "quarantined", "healthy_customers")
        return bounded_fields(report.to_json(), per_customer, context=context)
