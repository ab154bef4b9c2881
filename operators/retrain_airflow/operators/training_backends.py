"""Where :class:`~retrain_airflow.operators.training.AdapterTrainingOperator` trains: worker processes
on the Airflow worker (``local``) or the pods of an Argo workflow (``argo``).

A backend either trains at once and returns :class:`Trained`, or submits the work elsewhere and
returns :class:`Submitted`: the operator then defers on its trigger and, when it fires, asks the
backend to :meth:`~TrainingBackend.complete` the training.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger

from retrain.adapters.registry import RegisteredAdapter
from retrain.fanout.argo import (
    ArgoTrainingSpec,
    build_submission,
    collect_results,
    resolve_selection,
    unfinished_submission,
)
from retrain.fanout.argo_client import ArgoClient
from retrain.fanout.parent_run import end_parent_run
from retrain_airflow.hooks.argo import ArgoHook
from retrain_airflow.triggers.argo import ArgoWorkflowTrigger

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRequest:
    """Train ``customers``' adapters on ``table`` at ``commit``, as children of ``parent_run_id``.

    ``submitter`` names the task instance asking (:func:`submitter_key`), whatever its try.
    """

    table: str
    commit: str
    customers: list[str]
    parent_run_id: str
    submitter: str


@dataclass(frozen=True)
class Trained:
    """Each registered customer's adapter, and why each of the others failed."""

    registered: dict[str, RegisteredAdapter]
    failed: dict[str, str]


@dataclass(frozen=True)
class Submitted:
    """Training running elsewhere: wait for ``trigger``, at most ``timeout``; ``url`` shows the work."""

    trigger: BaseTrigger
    timeout: timedelta
    url: str


@dataclass(frozen=True)
class Resumed:
    """Training an earlier try of the task submitted, still running: its request, and what to wait for."""

    request: TrainingRequest
    submitted: Submitted


def submitter_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """A task instance's key, the same for each of its tries, that fits a Kubernetes label value."""
    identity = "\n".join((dag_id, run_id, task_id, str(map_index)))
    return hashlib.sha256(identity.encode()).hexdigest()[:40]


class TrainingBackend(ABC):
    """Trains the adapters of a :class:`TrainingRequest`."""

    name: ClassVar[str]  # the operator's ``backend`` and the parent run's ``retrain.backend`` tag

    @abstractmethod
    def start(self, request: TrainingRequest) -> Trained | Submitted:
        """Train, or submit the training and say what to wait for."""

    def complete(self, request: TrainingRequest, event: dict[str, Any]) -> Trained:
        """The outcome of what :meth:`start` submitted, once its trigger fired with ``event``."""
        raise NotImplementedError(f"the {self.name} backend submits nothing to wait for")

    def resume(self, submitter: str, commit: str) -> Resumed | None:
        """The training an earlier try of ``submitter`` submitted for ``commit``, if still running."""
        return None  # nothing outlives a try that trains in place


class LocalTrainingBackend(TrainingBackend):
    """Worker processes on this machine (:func:`retrain.fanout.local.train_customers`).

    :param repo_location: the Dolt repository, as :meth:`retrain.dolt.DoltRepository.open` takes it.
    :param mlflow_uri: resolved tracking URI.
    :param key_column: the training table's customer column.
    :param parallelism: worker processes.
    :param pack_size: customers a worker trains side by side (None: as many as memory allows).
    :param retries: retries of a failed adapter.
    """

    name = "local"

    def __init__(
        self,
        repo_location: str,
        *,
        mlflow_uri: str,
        key_column: str,
        parallelism: int,
        pack_size: int | None,
        retries: int,
    ) -> None:
        self.repo_location, self.mlflow_uri, self.key_column = repo_location, mlflow_uri, key_column
        self.parallelism, self.pack_size, self.retries = parallelism, pack_size, retries

    def start(self, request: TrainingRequest) -> Trained:
        from retrain.fanout.local import train_customers

        result = train_customers(
            self.repo_location,
            table=request.table,
            commit=request.commit,
            customers=request.customers,
            key_column=self.key_column,
            parallelism=self.parallelism,
            pack_size=self.pack_size,
            retries=self.retries,
            mlflow_uri=self.mlflow_uri,
            parent_run_id=request.parent_run_id,
        )
        log.info("\n%s", result.table())
        return Trained({a.customer: a for a in result.succeeded}, result.failed)


class ArgoTrainingBackend(TrainingBackend):
    """GPU pods of an Argo workflow; each customer's version is collected from MLflow by its tags.

    :param hook: the Argo Server's hook.
    :param mlflow_client: client of the tracking store the pods register in.
    :param spec: image, namespace, GPU and quota settings of the training pods.
    :param poll_interval: seconds between workflow polls while deferred.
    """

    name = "argo"

    def __init__(
        self, hook: ArgoHook, mlflow_client: MlflowClient, spec: ArgoTrainingSpec, *, poll_interval: float
    ) -> None:
        self.hook = hook
        self.mlflow_client = mlflow_client
        self.spec = spec
        self.poll_interval = poll_interval

    @cached_property
    def client(self) -> ArgoClient:
        return self.hook.get_client()

    def start(self, request: TrainingRequest) -> Submitted:
        workflow = build_submission(
            self.spec,
            table=request.table,
            commit=request.commit,
            customers=request.customers,
            parent_run_id=request.parent_run_id,
            store_artifact=lambda name, text: self.mlflow_client.log_text(request.parent_run_id, text, name),
            submitter=request.submitter,
        )
        name = self.client.submit(workflow)
        submitted = self._waiting_for(name)
        log.info(
            "submitted Argo workflow %s for %d customers (image %s): %s",
            name,
            len(request.customers),
            self.spec.image,
            submitted.url,
        )
        return submitted

    def resume(self, submitter: str, commit: str) -> Resumed | None:
        """The workflow an earlier try submitted, when it still runs: wait for it, submit nothing."""
        found = unfinished_submission(self.client, submitter, commit)
        if found is None:
            return None
        customers = resolve_selection(found.selection, found.parent_run_id, self.mlflow_client.tracking_uri)
        submitted = self._waiting_for(found.workflow)
        log.info(
            "Argo workflow %s of an earlier try still trains %d customers at %s: waiting for it: %s",
            found.workflow,
            len(customers),
            commit,
            submitted.url,
        )
        request = TrainingRequest(found.table, commit, customers, found.parent_run_id, submitter)
        return Resumed(request, submitted)

    def _waiting_for(self, workflow: str) -> Submitted:
        return Submitted(
            trigger=ArgoWorkflowTrigger(
                argo_conn_id=self.hook.argo_conn_id, workflow=workflow, poll_interval=self.poll_interval
            ),
            # The workflow's own deadline, with an hour to spare.
            timeout=timedelta(seconds=self.spec.active_deadline_seconds + 3600),
            url=self.client.workflow_url(workflow),
        )

    def complete(self, request: TrainingRequest, event: dict[str, Any]) -> Trained:
        """Collect each customer's version from MLflow by tags; name the failed customers."""
        if event["status"] == "error":
            # Ended rather than left running: a retry waits on (and ends it again) or starts anew.
            end_parent_run(self.mlflow_client.tracking_uri, request.parent_run_id, failed=True)
            raise AirflowException(f"lost track of Argo workflow {event['workflow']}: {event['message']}")
        registered, failed = collect_results(
            self.client,
            self.mlflow_client,
            workflow=event["workflow"],
            commit=request.commit,
            customers=request.customers,
        )
        log.info(
            "workflow %s %s: %d registered, %d failed",
            event["workflow"],
            event["phase"],
            len(registered),
            len(failed),
        )
        # The workflow is over: end the parent run as the local fan-out ends its own.
        end_parent_run(self.mlflow_client.tracking_uri, request.parent_run_id, failed=bool(failed))
        return Trained(registered, failed)
