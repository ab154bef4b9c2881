"""Retro-test for a partner: score their history with a pinned release, day by day, and report."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag

from retrain import identifiers
from retrain_airflow import settings
from retrain_airflow.handoff import purge_on_success
from retrain_airflow.operators.release import ResolveReleaseOperator
from retrain_airflow.operators.reports import RetroTestReportOperator
from retrain_airflow.pipelines import customer_id_param, hive_scoring, table_name_param


@dag(
    dag_id="partner_retro_test",
    schedule="@daily",
    start_date=dt.datetime(2026, 10, 1),
    catchup=False,  # run it over a period with `airflow backfill create`
    max_active_runs=1,  # each run rewrites the partner's report from every day scored so far
    on_success_callback=purge_on_success,  # its handed-off files: nothing reads them again
    tags=["retrain", "scoring", "retro-test"],
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": dt.timedelta(minutes=5)},
    params={
        "customer": customer_id_param("acme_air", title="Partner (customer id)"),
        "release": Param(
            "as-of",
            type="string",
            anyOf=[{"pattern": identifiers.RELEASE_ID_PATTERN}, {"const": "as-of"}],
            title="Release",
            description="A release id (manifest MD5) to pin, or `as-of`: the release in production each day.",
        ),
        "history_table": table_name_param("labelled_history"),
        "output_table": table_name_param("retro_scores"),
    },
    doc_md="""
### Partner retro-test
How a release would have scored a partner's history. Run it over a period:

    airflow backfill create --dag-id partner_retro_test --from-date 2026-10-29 --to-date 2026-10-31 \\
        --dag-run-conf '{"customer": "acme_air", "release": "<md5 or as-of>"}'

Each day `ds`: resolve the release (the pinned one, or the one in production that day), score the
partner's rows of `history_table` partition `ds` into `output_table` (other customers' rows in
that partition are kept), then rewrite the partner's HTML report from every day scored so far:
per-day ROC AUC and accuracy where outcomes are known, and score distributions, as PNG plots.
""",
)
def partner_retro_test() -> None:
    release = ResolveReleaseOperator(
        task_id="release_for_day",
        release_id="{{ '' if params.release == 'as-of' else params.release }}",
        day="{{ ds }}",
    )
    score = hive_scoring(
        task_id="score_history",
        release_id="{{ ti.xcom_pull(task_ids='release_for_day')['release_id'] }}",
        input_table="{{ params.history_table }}",
        ds="{{ ds }}",
        output_table="{{ params.output_table }}",
        customers="{{ params.customer }}",
    )
    report = RetroTestReportOperator(
        task_id="report",
        customer="{{ params.customer }}",
        scores_table="{{ params.output_table }}",
        history_table="{{ params.history_table }}",
        report_dir=settings.REPORTS + "/retro/{{ params.customer }}",
        warehouse=settings.WAREHOUSE,
        pool=settings.SPARK_POOL,
    )
    release >> score >> report


partner_retro_test()
