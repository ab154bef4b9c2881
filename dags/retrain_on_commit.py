"""Retrain the adapters of the customers whose training rows a Dolt commit changed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, get_current_context, task

from retrain.dolt.watermark import CommitRange
from retrain_airflow import settings
from retrain_airflow.handoff import bounded, purge_on_success
from retrain_airflow.operators.dolt import DoltAdvanceWatermarkOperator
from retrain_airflow.pipelines import (
    allow_partial_param,
    floor_params,
    pack_size_param,
    retrain_release_and_score,
)
from retrain_airflow.triggers.dolt import DoltCommitTrigger

DAG_ID = "retrain_on_commit"

dolt_commits = Asset(
    name="dolt_training_commits",
    uri="dolt://dolt_default/examples",
    watchers=[
        AssetWatcher(
            name="dolt_main_head",
            trigger=DoltCommitTrigger(
                dolt_conn_id="dolt_default",
                consumer=DAG_ID,
                table=settings.TRAINING_TABLE,
                key_column=settings.KEY_COLUMN,
                branch="main",
                poll_interval=settings.seconds("commit_poll_seconds"),  # serialized with the trigger
            ),
        )
    ],
)


@dag(
    dag_id=DAG_ID,
    schedule=[dolt_commits],
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # ranges are cut from the watermark: one run at a time keeps them disjoint
    on_success_callback=purge_on_success,  # its handed-off files: nothing reads them again
    render_template_as_native_obj=True,  # templated customer lists stay lists (or None)
    tags=["retrain", "dolt"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    params={"allow_partial": allow_partial_param(), "pack_size": pack_size_param(), **floor_params()},
    doc_md="""
### Retrain on Dolt commit
Runs when `DoltCommitTrigger` sees a new head of `main` in the training repository
(connection `dolt_default`). The event carries the commit range since this DAG's watermark
(`retrain/retrain_on_commit/done` branch) and the customers whose rows changed; a schema change
marks every customer.

1. **validate** the changed customers' rows with the Great Expectations suite (Variable
   `retrain_suite_path`) as of the new commit; customers whose rows fail are quarantined (named
   in the log and XCom), the healthy ones go on;
2. **train** one LoRA adapter each, on local processes or Argo (Variable
   `retrain_training_backend`), each an MLflow child run carrying its data commit;
3. **release**: the promotion gate lets each new adapter replace its customer's production
   version when it reaches the quality floor (param `promotion_floor`, default holdout ROC AUC
   >= 0.6, and it predicts each of its labels) and is not worse on holdout ROC AUC; the
   production set is registered as a release (its manifest MD5 is the serving image tag). A
   customer whose first version is below the floor has no production adapter: the release goes
   out without it, naming it in the Releases view, unless the `require_floor` param is on;
4. **score_today**: today's `requests` partition is scored into `scores` with the new release
   (skipped when today's requests have not landed);
5. **advance_watermark**, only when nothing failed, so a failed run's commits are covered by the
   next range. With the `allow_partial` param a release goes out without customers whose
   training failed; the watermark then stays, so the next range retrains them.
""",
)
def retrain_on_commit() -> None:
    @task
    def changed_customers(triggering_asset_events: Any = None) -> dict[str, object]:
        """The commit range to process: the newest event's range covers every earlier one."""
        events = list((triggering_asset_events or {}).get(dolt_commits, []))
        if not events:
            raise ValueError(
                f"{DAG_ID} runs on Dolt commit events from asset {dolt_commits.name!r}; "
                "trigger retrain_scheduled for a full retrain instead"
            )
        payload = CommitRange.from_payload(events[-1].extra["payload"]).to_payload()
        keys = payload["changed_keys"]
        payload["changed_keys"] = bounded(keys, context=get_current_context(), name="changed_keys")
        return payload

    commit = "{{ ti.xcom_pull(task_ids='changed_customers')['commit'] }}"
    first, last = retrain_release_and_score(
        commit=commit,
        # None (every customer) after a schema change or on the first run.
        customers="{{ ti.xcom_pull(task_ids='changed_customers')['changed_keys'] }}",
        previous_commit="{{ ti.xcom_pull(task_ids='changed_customers')['previous_commit'] }}",
    )
    advance = DoltAdvanceWatermarkOperator(
        task_id="advance_watermark",
        commit=commit,
        consumer=DAG_ID,
        trigger_rule="none_failed",  # a skipped scoring (no partition yet) still completes the range
        held_by="{{ ti.xcom_pull(task_ids='train')['failed'] }}",
    )
    changed_customers() >> first
    last >> advance


retrain_on_commit()
