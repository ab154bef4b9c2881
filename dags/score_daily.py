"""Score each day's requests with the release in production that day."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag

from retrain_airflow.assets import SCORES
from retrain_airflow.handoff import purge_on_success
from retrain_airflow.operators.release import ResolveReleaseOperator
from retrain_airflow.pipelines import hive_scoring, table_name_param


@dag(
    dag_id="score_daily",
    schedule="@daily",
    start_date=dt.datetime(2026, 11, 1),
    catchup=False,  # past days: `airflow backfill create --dag-id score_daily --from-date .. --to-date ..`
    max_active_runs=1,
    on_success_callback=purge_on_success,  # its handed-off files: nothing reads them again
    tags=["retrain", "scoring", "hive"],
    default_args={"owner": "ml-platform", "retries": 3, "retry_delay": dt.timedelta(minutes=10)},
    params={
        "input_table": table_name_param("requests"),
        "output_table": table_name_param("scores"),
    },
    doc_md="""
### Daily scoring
For each day `ds`: pick the release in production that day (a pin covering the day wins), then
score Hive `requests` partition `ds` into `scores` (partitioned by `ds` and `release`). The
partition is replaced atomically, so reruns and backfills are idempotent and a failed run
leaves the previous scores in place. A day whose requests have not landed fails and retries.
Each day scored is an event of the `scores` asset (partition key `ds`), on which `monitor_daily`
measures the day's drift.
""",
)
def score_daily() -> None:
    release = ResolveReleaseOperator(task_id="release_for_day", day="{{ ds }}")
    score = hive_scoring(
        task_id="score",
        release_id="{{ ti.xcom_pull(task_ids='release_for_day')['release_id'] }}",
        input_table="{{ params.input_table }}",
        ds="{{ ds }}",
        output_table="{{ params.output_table }}",
        outlets=[SCORES],  # one event per day scored: monitor_daily measures its drift
    )
    release >> score


score_daily()
