"""Measure each scored day's per-customer drift, and retrain drifting customers that have new rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, PartitionedAssetTimetable, dag, task

from retrain.identifiers import RELEASE_ID_PATTERN, RELEASE_ID_RULE
from retrain_airflow import settings
from retrain_airflow.assets import DRIFT, SCORES
from retrain_airflow.handoff import purge_on_success, resolve
from retrain_airflow.operators.drift import DriftOperator, DriftRetrainingOperator
from retrain_airflow.pipelines import table_name_param

DAG_ID = "monitor_daily"
RETRAINING_DAG = "retrain_scheduled"


@dag(
    dag_id=DAG_ID,
    # One run per partition key of `scores`: each day score_daily scores, however many land at once.
    schedule=PartitionedAssetTimetable(assets=SCORES),
    start_date=dt.datetime(2026, 11, 1),
    catchup=False,
    render_template_as_native_obj=True,  # thresholds stay an object, customer lists stay lists
    user_defined_filters={"resolved": resolve},  # a handed-off customer list, read back for the conf
    on_success_callback=purge_on_success,  # its handed-off customer lists: nothing reads them again
    tags=["retrain", "drift", "monitoring"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    params={
        "thresholds": Param(
            {},
            type="object",
            title="Drift thresholds",
            description=(
                'Overrides of the default thresholds: {"defaults": {metric: t}, "customers": {id: {metric: '
                't}}, "min_rows": n}. Metrics: length_psi, novelty_psi, embedding_psi, score_psi, score_js, '
                "volume_change. Customers with fewer than min_rows rows that day are never alarmed."
            ),
        ),
        "retrain_drifting": Param(
            False,
            type="boolean",
            title="Retrain drifting customers",
            description=(
                "On: drifting customers whose training rows changed since their adapter's commit are "
                f"retrained at the head by a {RETRAINING_DAG} run; the others are named as needing new "
                "labels."
            ),
        ),
        "ds": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day (manual runs)",
            description="A manual run measures this scored day; asset-triggered runs take the event's.",
        ),
        "release": Param(
            None,
            type=["null", "string"],
            pattern=RELEASE_ID_PATTERN,
            title="Release (manual runs)",
            description=f"The release that scored the day (a manual run): {RELEASE_ID_RULE}.",
        ),
        "scores_table": table_name_param("scores"),
    },
    doc_md=f"""
### Daily drift monitoring
Runs once for each day `score_daily` scores (each event of the `scores` asset is a partition, keyed
by `ds`; a manual run names `ds` and `release` in its params instead).

1. **measure_drift**: every customer of the release against its adapter's reference (training
   inputs and holdout scores), in one Spark pass over the scored partition, into the Hive `drift`
   table (partition `ds`, replaced atomically) and the Health page of the Releases view. The task
   log names each drifting customer with its metrics and values; an event of the `drift` asset
   names the drifting customers. Thresholds: the `thresholds` param.
2. **plan_retraining** (param `retrain_drifting`): drifting customers whose rows in the training
   table changed since their adapter's commit are retrained at the head of `main`;
   the others are logged as needing new labels. Skipped when off or when nobody can be retrained.
3. **retrain**: triggers `{RETRAINING_DAG}` with those customers (validate, train, gate, release).
""",
)
def monitor_daily() -> None:
    @task
    def scored_partition(
        triggering_asset_events: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, str]:
        """The partition to measure: the newest `scores` event of this run's day, else the params."""
        events = list((triggering_asset_events or {}).get(SCORES, []))
        if events:
            extra = events[-1].extra
            return {
                "ds": extra["ds"],
                "release_id": extra["release_id"],
                "scores_table": extra["output_table"],
            }
        params = params or {}
        if not (params.get("ds") and params.get("release")):
            raise ValueError(
                f"{DAG_ID} runs on events of asset {SCORES.name!r}; a manual run needs the params ds "
                "and release"
            )
        return {"ds": params["ds"], "release_id": params["release"], "scores_table": params["scores_table"]}

    partition = "ti.xcom_pull(task_ids='scored_partition')"
    measure = DriftOperator(
        task_id="measure_drift",
        release_id="{{ " + partition + "['release_id'] }}",
        ds="{{ " + partition + "['ds'] }}",
        scores_table="{{ " + partition + "['scores_table'] }}",
        thresholds="{{ params.thresholds }}",
        warehouse=settings.WAREHOUSE,
        workdir=settings.SCORING_CACHE,
        pool=settings.SPARK_POOL,
        outlets=[DRIFT],
    )
    plan = DriftRetrainingOperator(
        task_id="plan_retraining",
        release_id="{{ " + partition + "['release_id'] }}",
        drifting="{{ ti.xcom_pull(task_ids='measure_drift')['drifting'] }}",
        enabled="{{ params.retrain_drifting }}",
        table=settings.TRAINING_TABLE,
        key_column=settings.KEY_COLUMN,
    )
    retrain = TriggerDagRunOperator(
        task_id="retrain",
        trigger_dag_id=RETRAINING_DAG,
        conf={"customers": "{{ ti.xcom_pull(task_ids='plan_retraining')['customers'] | resolved }}"},
    )
    scored_partition() >> measure >> plan >> retrain


monitor_daily()
