"""The pipeline's MLflow parent run: every adapter trained for one commit is a child run under it.

The local fan-out (``retrain train-all``) and the Airflow training operator, on either backend,
start it here, so a pipeline run carries the same tags whoever started it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from retrain.adapters.registry import EXPERIMENT
from retrain.tracking import ensure_experiment, run_url


@dataclass(frozen=True)
class ParentRun:
    run_id: str
    url: str | None  # its page in the MLflow UI, where one is known (:func:`retrain.tracking.run_url`)


def start_parent_run(
    uri: str,
    *,
    commit: str,
    table: str,
    backend: str,
    customers: int,
    run_name: str,
    tags: Mapping[str, str] | None = None,
) -> ParentRun:
    """Create the running parent run for training ``customers`` adapters on ``table`` at ``commit``.

    It is tagged ``retrain.commit``, ``retrain.table``, ``retrain.backend`` (``local`` or
    ``argo``) and ``retrain.customers`` (how many), plus ``tags`` (e.g. the Airflow run id), which
    cannot replace those; the caller ends it with :func:`end_parent_run` when training is done.
    """
    from mlflow.tracking import MlflowClient

    experiment_id = ensure_experiment(EXPERIMENT, uri)
    run = MlflowClient(uri).create_run(
        experiment_id,
        run_name=run_name,
        tags={
            **(tags or {}),
            "retrain.commit": commit,
            "retrain.table": table,
            "retrain.backend": backend,
            "retrain.customers": str(customers),
        },
    )
    run_id = str(run.info.run_id)
    return ParentRun(run_id, run_url(uri, experiment_id, run_id))


def parent_run(uri: str, run_id: str) -> ParentRun:
    """An existing parent run, with its UI link (a retried task waiting on what an earlier try started)."""
    from mlflow.tracking import MlflowClient

    experiment_id = str(MlflowClient(uri).get_run(run_id).info.experiment_id)
    return ParentRun(run_id, run_url(uri, experiment_id, run_id))


def end_parent_run(uri: str, run_id: str, *, failed: bool) -> None:
    """End the parent run once its training is over: FAILED when any customer failed, else FINISHED."""
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).set_terminated(run_id, status="FAILED" if failed else "FINISHED")
