"""Retrain the adapters of the customers whose training rows a Dolt commit changed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from retrain.dolt.watermark import CommitRange
from retrain_airflow.operators.dolt import DoltAdvanceWatermarkOperator
from retrain_airflow.operators.release import ReleaseManifestOperator
from retrain_airflow.operators.training import AdapterTrainingOperator
from retrain_airflow.operators.validation import DoltValidateOperator
from retrain_airflow.triggers.dolt import DoltCommitTrigger

DAG_ID = "retrain_on_commit"
TRAINING_TABLE = "examples"
KEY_COLUMN = "customer_id"
# Variables override these embedded defaults (the repo checkout's suite and a local Data Docs site).
SUITE = "{{ var.value.get('retrain_suite_path', '%s') }}" % (
    Path(__file__).parents[1] / "expectations/examples.json"
)
DATA_DOCS = "{{ var.value.get('retrain_data_docs_dir', '%s') }}" % (
    Path(__file__).parents[1] / "var/data_docs"
)

dolt_commits = Asset(
    name="dolt_training_commits",
    uri="dolt://dolt_default/examples",
    watchers=[
        AssetWatcher(
            name="dolt_main_head",
            trigger=DoltCommitTrigger(
                dolt_conn_id="dolt_default",
                consumer=DAG_ID,
                table=TRAINING_TABLE,
                key_column=KEY_COLUMN,
                branch="main",
                poll_interval=30,
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
    render_template_as_native_obj=True,  # templated customer lists stay lists (or None)
    tags=["retrain", "dolt"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    doc_md="""
### Retrain on Dolt commit
Runs when `DoltCommitTrigger` sees a new head of `main` in the training repository
(connection `dolt_default`). The event carries the commit range since this DAG's watermark
(`retrain/retrain_on_commit/done` branch) and the customers whose rows changed; a schema change
marks every customer. The changed customers' rows are validated with the Great Expectations suite
(Variable `retrain_suite_path`) as of the new commit; customers whose rows fail are quarantined
(named in the task log and its XCom) while the healthy ones go on to training: one LoRA adapter
each, on local processes or Argo (Variable `retrain_training_backend`), every adapter an MLflow
child run carrying its data commit. The promotion gate then lets each new adapter replace its
customer's production version unless it is worse on holdout ROC AUC, and the production set is
registered as a release (its manifest MD5 is the serving image tag). The watermark advances
only when every task succeeded, so a failed run's commits are covered by the next range.
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
        commit_range = CommitRange.from_payload(events[-1].extra["payload"])
        return commit_range.to_payload()

    commit_range = changed_customers()
    validate = DoltValidateOperator(
        task_id="validate",
        table=TRAINING_TABLE,
        commit="{{ ti.xcom_pull(task_ids='changed_customers')['commit'] }}",
        # None (every customer) after a schema change or on the first run.
        customers="{{ ti.xcom_pull(task_ids='changed_customers')['changed_keys'] }}",
        suite=SUITE,
        docs_dir=DATA_DOCS,
        quarantine=True,
    )
    train = AdapterTrainingOperator(
        task_id="train",
        table=TRAINING_TABLE,
        commit="{{ ti.xcom_pull(task_ids='changed_customers')['commit'] }}",
        customers="{{ ti.xcom_pull(task_ids='validate')['healthy_customers'] }}",
        backend="{{ var.value.get('retrain_training_backend', 'local') }}",
    )
    release = ReleaseManifestOperator(
        task_id="release",
        action="build",
        candidates="{{ ti.xcom_pull(task_ids='train')['adapters'] }}",
    )
    advance = DoltAdvanceWatermarkOperator(
        task_id="advance_watermark",
        commit="{{ ti.xcom_pull(task_ids='changed_customers')['commit'] }}",
        consumer=DAG_ID,
    )
    commit_range >> validate >> train >> release >> advance


retrain_on_commit()
