"""Retrain every customer's adapter on the head of the training data, on a schedule."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from retrain_airflow.handoff import bounded, purge_on_success
from retrain_airflow.hooks.dolt import DoltHook
from retrain_airflow.pipelines import (
    allow_partial_param,
    customer_id_schema,
    floor_params,
    pack_size_param,
    retrain_release_and_score,
)

SCHEDULE = os.environ.get("RETRAIN_FULL_RETRAIN_SCHEDULE", "@weekly")


@dag(
    dag_id="retrain_scheduled",
    schedule=SCHEDULE,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    on_success_callback=purge_on_success,  # its handed-off files: nothing reads them again
    render_template_as_native_obj=True,
    tags=["retrain", "dolt"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    params={
        "customers": Param(
            None,
            type=["null", "array"],
            items=customer_id_schema(),
            title="Customers",
            description="Retrain only these customers (a manual run); empty: every customer.",
        ),
        "allow_partial": allow_partial_param(),
        "pack_size": pack_size_param(),
        **floor_params(),
    },
    doc_md=f"""
### Scheduled full retrain
Every customer, on the head of `main` (connection `dolt_default`), through the same tasks as
`retrain_on_commit`: validate (quarantining failing customers) -> train -> promotion gate and
release -> score today's partition. For drift in the base model or training code rather than
in the data. Schedule: `{SCHEDULE}` (environment `RETRAIN_FULL_RETRAIN_SCHEDULE`, read when the
DAG file is parsed). Trigger it with `{{"customers": [...]}}` to retrain only those. It does not
move `retrain_on_commit`'s watermark.
""",
)
def retrain_scheduled() -> None:
    @task
    def head_commit(params: dict[str, Any] | None = None) -> dict[str, object]:
        """The head of ``main`` now (every run trains on one fixed commit, whatever lands meanwhile)
        and the customers asked for, None meaning every customer."""
        customers = (params or {}).get("customers") or None
        with DoltHook().get_repository() as repo:
            head = repo.head("main")
        context = get_current_context()
        return {"commit": head, "changed_keys": bounded(customers, context=context, name="customers")}

    first, _ = retrain_release_and_score(
        commit="{{ ti.xcom_pull(task_ids='head_commit')['commit'] }}",
        customers="{{ ti.xcom_pull(task_ids='head_commit')['changed_keys'] }}",
    )
    head_commit() >> first


retrain_scheduled()
