"""AdapterTrainingOperator: train one adapter per customer, on local processes or on Argo Workflows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from retrain.dolt import DoltRepository
from retrain.errors import InputError
from retrain.fanout.argo import ArgoTrainingSpec
from retrain.fanout.parent_run import ParentRun, parent_run, start_parent_run
from retrain.tracking import tracking_uri
from retrain_airflow.arguments import as_flag, as_pack_size
from retrain_airflow.handoff import bounded, resolve
from retrain_airflow.hooks.argo import ArgoHook
from retrain_airflow.hooks.dolt import DoltHook, repository_location
from retrain_airflow.lineage import DoltTable, EmitsLineage, Lineage, ModelVersion
from retrain_airflow.links import ArgoWorkflowLink, MLflowRunLink
from retrain_airflow.operators.failures import fails_fast
from retrain_airflow.operators.training_backends import (
    ArgoTrainingBackend,
    LocalTrainingBackend,
    Submitted,
    Trained,
    TrainingBackend,
    TrainingRequest,
    submitter_key,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class AdapterTrainingOperator(EmitsLineage, BaseOperator):
    """Train and register an adapter for each customer as of ``commit``.

    Returns ``{"commit", "parent_run_id", "adapters": {customer: {model_name, version, run_id,
    metrics}}, "failed": {customer: reason}}``, ``adapters`` and ``failed`` handed off as files when
    large (:mod:`retrain_airflow.handoff`). Every adapter is a child run of one MLflow parent run
    (:func:`retrain.fanout.parent_run.start_parent_run`). When some customers fail, the task fails
    naming them, unless ``allow_partial``; what succeeded stays registered, so a retry reuses it
    (training is idempotent). The ``argo`` backend submits a workflow and defers until it is over,
    so no worker slot waits on the pods; a retry of the task whose earlier try's workflow still
    runs (for the same commit) waits for that workflow instead of submitting a second one.

    :param table: training table (templated).
    :param commit: commit hash or branch (templated).
    :param customers: customers to train, or a handoff reference to them (templated); an empty
        list trains nothing.
    :param backend: ``local`` (worker processes on this machine) or ``argo`` (GPU pods) (templated).
    :param key_column: the training table's customer column.
    :param parallelism: local worker processes.
    :param pack_size: customers trained side by side in one pass of the base model, by each local
        worker or Argo pod (templated: a DAG param); None: as many as memory allows locally, the
        Argo spec's ``pack_size`` on pods; 1: one at a time.
    :param retries_per_adapter: local retries of a failed adapter.
    :param allow_partial: succeed when only some customers failed (templated: a DAG param).
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    :param dolt_conn_id: connection of type ``dolt``.
    :param argo_conn_id: connection of type ``argo`` (backend ``argo``).
    :param argo_spec: image, namespace, GPU and quota settings of the training pods. The image needs
        a version tag or a digest (``latest`` is refused): its tag or digest is the adapters' code
        version, part of the key that decides whether a customer is already trained.
    :param poll_interval: seconds between workflow polls while deferred.
    :param previous_commit: where the range of commits being trained on starts, for the lineage
        (:mod:`retrain_airflow.lineage`); None: no range (templated).
    """

    template_fields: Sequence[str] = (
        "table",
        "commit",
        "customers",
        "backend",
        "pack_size",
        "allow_partial",
        "previous_commit",
    )
    operator_extra_links = (ArgoWorkflowLink(), MLflowRunLink())

    def __init__(
        self,
        *,
        table: str,
        commit: str,
        customers: Sequence[str] | Mapping[str, Any] | str,
        backend: Literal["local", "argo"] | str = "local",
        key_column: str = "customer_id",
        parallelism: int = 2,
        pack_size: int | str | None = None,
        retries_per_adapter: int = 1,
        allow_partial: bool | str = False,
        mlflow_uri: str | None = None,
        dolt_conn_id: str = DoltHook.default_conn_name,
        argo_conn_id: str = ArgoHook.default_conn_name,
        argo_spec: ArgoTrainingSpec | None = None,
        poll_interval: float = 30.0,
        previous_commit: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table, self.commit, self.customers = table, commit, customers
        self.backend, self.key_column = backend, key_column
        self.parallelism, self.retries_per_adapter = parallelism, retries_per_adapter
        self.pack_size = pack_size
        self.allow_partial = allow_partial
        self.mlflow_uri, self.dolt_conn_id, self.argo_conn_id = mlflow_uri, dolt_conn_id, argo_conn_id
        self.argo_spec = argo_spec or ArgoTrainingSpec()
        self.poll_interval = poll_interval
        self.previous_commit = previous_commit

    @cached_property
    def dolt_hook(self) -> DoltHook:
        return DoltHook(self.dolt_conn_id)

    @cached_property
    def argo_hook(self) -> ArgoHook:
        return ArgoHook(self.argo_conn_id)

    @cached_property
    def _tracking_uri(self) -> str:
        return tracking_uri(self.mlflow_uri)

    @cached_property
    def mlflow_client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        return MlflowClient(self._tracking_uri)

    @cached_property
    def _repository_location(self) -> str:
        return repository_location(self.dolt_hook.get_connection(self.dolt_conn_id))

    @cached_property
    def _backend(self) -> TrainingBackend:
        if self.backend == LocalTrainingBackend.name:
            return LocalTrainingBackend(
                self._repository_location,
                mlflow_uri=self._tracking_uri,
                key_column=self.key_column,
                parallelism=self.parallelism,
                pack_size=as_pack_size(self.pack_size),
                retries=self.retries_per_adapter,
            )
        if self.backend == ArgoTrainingBackend.name:
            pack_size = as_pack_size(self.pack_size)
            spec = self.argo_spec if pack_size is None else replace(self.argo_spec, pack_size=pack_size)
            return ArgoTrainingBackend(
                self.argo_hook, self.mlflow_client, spec, poll_interval=self.poll_interval
            )
        raise InputError(f"backend must be 'local' or 'argo', not {self.backend!r}")

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        backend = self._backend  # rendered by now: an unknown backend fails before any work
        customers = sorted(set(resolve(self.customers) or []))
        with DoltRepository.open(self._repository_location) as repo:
            commit = repo.resolve(self.commit)
        if not customers:
            self.log.info("no customers to train at %s", commit)
            return self._finish(context, commit, "", Trained({}, {}))
        submitter = _submitter(context)
        resumed = backend.resume(submitter, commit)
        if resumed is not None:  # a retry: the earlier try's workflow still trains these customers
            self._link(context, parent_run(self._tracking_uri, resumed.request.parent_run_id))
            self._wait(context, resumed.request, resumed.submitted)
        parent_run_id = self._start_parent_run(context, commit, len(customers))
        request = TrainingRequest(self.table, commit, customers, parent_run_id, submitter)
        started = backend.start(request)
        if isinstance(started, Trained):
            return self._finish(context, commit, parent_run_id, started)
        self._wait(context, request, started)

    def _wait(self, context: Context, request: TrainingRequest, submitted: Submitted) -> NoReturn:
        """Defer until the submitted training is over; :meth:`execute_complete` resumes with ``request``."""
        context["ti"].xcom_push(key=ArgoWorkflowLink.source_key, value=submitted.url)
        self.defer(
            trigger=submitted.trigger,
            method_name="execute_complete",
            kwargs={
                "commit": request.commit,
                "parent_run_id": request.parent_run_id,
                "customers": bounded(request.customers, context=context, name="requested_customers"),
            },
            timeout=submitted.timeout,
        )

    @fails_fast
    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any],
        commit: str,
        parent_run_id: str,
        customers: list[str] | dict[str, Any],
    ) -> dict[str, Any]:
        """Resume when the trigger fired: the backend's outcome of the training it submitted.

        ``commit``, ``parent_run_id`` and ``customers`` (a handoff reference when large) are what
        :meth:`execute` deferred with.
        """
        request = TrainingRequest(self.table, commit, resolve(customers), parent_run_id, _submitter(context))
        return self._finish(context, commit, parent_run_id, self._backend.complete(request, event))

    def _start_parent_run(self, context: Context, commit: str, count: int) -> str:
        ti = context["ti"]
        run = start_parent_run(
            self._tracking_uri,
            commit=commit,
            table=self.table,
            backend=self._backend.name,
            customers=count,
            run_name=f"{ti.dag_id}.{ti.task_id}",
            tags={"retrain.airflow_run_id": ti.run_id},
        )
        self._link(context, run)
        return run.run_id

    def _link(self, context: Context, run: ParentRun) -> None:
        """The parent run's MLflow page, for the task's extra link (a retry's XComs start empty)."""
        if run.url:
            context["ti"].xcom_push(key=MLflowRunLink.source_key, value=run.url)

    def _finish(self, context: Context, commit: str, parent_run_id: str, trained: Trained) -> dict[str, Any]:
        registered, failed = trained.registered, trained.failed
        if failed and not as_flag(self.allow_partial):
            names = ", ".join(f"{c} ({reason})" for c, reason in sorted(failed.items()))
            raise AirflowException(
                f"{len(failed)} of {len(failed) + len(registered)} adapters failed: {names}"
            )
        if failed:
            self.log.warning(
                "allow_partial: going on without %d failed customer(s): %s",
                len(failed),
                ", ".join(sorted(failed)),
            )
        self.lineage = Lineage(
            inputs=(DoltTable(self.dolt_conn_id, self.table, commit, self.previous_commit or None),),
            outputs=tuple(
                ModelVersion(self._tracking_uri, a.model_name, a.version, a.training_key, a.code_version)
                for _, a in sorted(registered.items())
            ),
        )
        adapters = {c: a.to_json() for c, a in sorted(registered.items())}
        return {
            "commit": commit,
            "parent_run_id": parent_run_id,
            "adapters": bounded(adapters, context=context, name="adapters"),
            "failed": bounded(dict(sorted(failed.items())), context=context, name="failed"),
        }


def _submitter(context: Context) -> str:
    """This task instance's key, the same on each try: how a retry finds the workflow it submitted."""
    ti = context["ti"]
    return submitter_key(ti.dag_id, ti.run_id, ti.task_id, -1 if ti.map_index is None else ti.map_index)
