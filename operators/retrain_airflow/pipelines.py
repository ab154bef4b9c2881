"""The task graph the retraining DAGs share: validate -> train -> promote and release -> score.

``retrain_on_commit`` feeds it a commit range's changed customers; ``retrain_scheduled`` the head
commit and every customer. One builder keeps the two DAGs the same pipeline.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Param

from retrain import identifiers
from retrain.release.promotion import DEFAULT_FLOOR
from retrain_airflow import settings
from retrain_airflow.operators.release import BuildReleaseOperator
from retrain_airflow.operators.scoring import HiveScoringOperator
from retrain_airflow.operators.training import AdapterTrainingOperator
from retrain_airflow.operators.validation import DoltValidateOperator


def hive_scoring(**kwargs: Any) -> HiveScoringOperator:
    """A :class:`HiveScoringOperator` on the deployment's warehouse, adapter cache and Spark pool."""
    return HiveScoringOperator(
        warehouse=settings.WAREHOUSE, workdir=settings.SCORING_CACHE, pool=settings.SPARK_POOL, **kwargs
    )


def customer_id_schema() -> dict[str, str]:
    """JSON Schema of a customer id in a DAG param: the rule the tasks check (:mod:`retrain.identifiers`)."""
    return {
        "type": "string",
        "pattern": identifiers.CUSTOMER_ID_PATTERN,
        "description": f"A customer id: {identifiers.CUSTOMER_ID_RULE}.",
    }


def customer_id_param(default: str, *, title: str) -> Param:
    """A DAG param of one customer id (:func:`customer_id_schema`)."""
    schema = customer_id_schema()
    return Param(
        default,
        type=schema["type"],
        pattern=schema["pattern"],
        description=schema["description"],
        title=title,
    )


def table_name_param(default: str) -> Param:
    """A DAG param of a Hive table name: the rule the tasks check (:mod:`retrain.identifiers`)."""
    return Param(
        default,
        type="string",
        pattern=identifiers.SQL_IDENTIFIER_PATTERN,
        description=f"A Hive table name: {identifiers.SQL_IDENTIFIER_RULE}.",
    )


def allow_partial_param() -> Param:
    """The DAG param both retraining DAGs take: may a release go out without failed customers?"""
    return Param(
        False,
        type="boolean",
        title="Allow a partial release",
        description=(
            "When some customers' training fails: off (default) withholds the release and fails the run; "
            "on registers the release without them (they keep their previous adapter) and names them "
            "in the task log and the Releases view."
        ),
    )


def pack_size_param() -> Param:
    """The DAG param both retraining DAGs take: how many customers train side by side."""
    return Param(
        None,
        type=["null", "integer"],
        minimum=1,
        title="Pack size",
        description=(
            "Customers whose adapters train in the same batches, one pass of the base model for all "
            "of them (local workers and each Argo pod). Empty (default): as many as memory allows, up "
            "to 256 on a worker, the Argo spec's pack size on a pod. 1 trains one customer at a time."
        ),
    )


def floor_params() -> dict[str, Param]:
    """The DAG params both retraining DAGs take for the promotion gate's quality floor."""
    return {
        "promotion_floor": Param(
            dict(DEFAULT_FLOOR),
            type=["object", "null"],
            title="Quality floor",
            description=(
                "Minimum holdout metrics (roc_auc, f1, accuracy: 0..1) every adapter version must reach "
                "to be promoted; an adapter that never predicts one of its labels is rejected too. A "
                "customer whose first version is below it has no production adapter and is named in the "
                "Releases view. null promotes without a floor."
            ),
        ),
        "require_floor": Param(
            False,
            type="boolean",
            title="Withhold the release when a first version is below the floor",
            description="Off (default): the release goes out without those customers.",
        ),
    }


def retrain_release_and_score(
    *, commit: str, customers: str, previous_commit: str | None = None
) -> tuple[BaseOperator, BaseOperator]:
    """Add the pipeline's tasks to the current DAG; returns its first and last task.

    The DAG must declare the ``allow_partial`` and ``pack_size`` params (:func:`allow_partial_param`,
    :func:`pack_size_param`) and the :func:`floor_params`.

    :param commit: template of the data commit to train on.
    :param customers: template of the customers to validate and train (None: every customer).
    :param previous_commit: template of where the commit range starts, for the lineage (None: no range).
    """
    validate = DoltValidateOperator(
        task_id="validate",
        table=settings.TRAINING_TABLE,
        commit=commit,
        customers=customers,
        suite=settings.SUITE,
        docs_dir=settings.DATA_DOCS,
        quarantine=True,  # customers whose rows fail wait; the healthy ones go on
        previous_commit=previous_commit,
    )
    train = AdapterTrainingOperator(
        task_id="train",
        table=settings.TRAINING_TABLE,
        commit=commit,
        customers="{{ ti.xcom_pull(task_ids='validate')['healthy_customers'] }}",
        backend=settings.TRAINING_BACKEND,
        pack_size="{{ params.pack_size }}",
        allow_partial="{{ params.allow_partial }}",
        previous_commit=previous_commit,
    )
    release = BuildReleaseOperator(
        task_id="release",
        candidates="{{ ti.xcom_pull(task_ids='train')['adapters'] }}",
        failures="{{ ti.xcom_pull(task_ids='train')['failed'] }}",
        floor="{{ params.promotion_floor }}",
        require_floor="{{ params.require_floor }}",
    )
    score = hive_scoring(
        task_id="score_today",
        release_id="{{ ti.xcom_pull(task_ids='release')['release_id'] }}",
        input_table="requests",
        ds="{{ dag_run.run_after | ds }}",
        output_table="scores",
        if_missing="skip",  # today's requests may not have landed yet; the release stands
    )
    validate >> train >> release >> score
    return validate, score
