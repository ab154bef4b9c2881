"""AdapterTrainingOperator: train one adapter per customer, on local processes or on Argo Workflows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from retrain.adapters.registry import EXPERIMENT, RegisteredAdapter
from retrain.dolt import DoltRepository
from retrain.fanout.argo import ArgoTrainingSpec, build_submission, collect_results
from retrain.tracking import ensure_experiment, run_url, tracking_uri
from retrain_airflow.handoff import bounded, resolve
from retrain_airflow.hooks.argo import ArgoHook
from retrain_airflow.hooks.dolt import DoltHook, repository_location
from retrain_airflow.links import ArgoWorkflowLink, MLflowRunLink
from retrain_airflow.triggers.argo import ArgoWorkflowTrigger

REQUEST_KEY = "training_request"


class AdapterTrainingOperator(BaseOperator):
    """Train and register an adapter for each customer as of ``commit``.

    Returns ``{"commit", "parent_run_id", "adapters": {customer: {model_name, version, run_id,
    metrics}}, "failed": {customer: reason}}``, ``adapters`` and ``failed`` handed off as files when
    large (:mod:`retrain_airflow.handoff`). Every adapter is a child run of one MLflow parent run.
    When some customers fail, the task fails naming them, unless ``allow_partial``; what succeeded
    stays registered, so a retry reuses it (training is idempotent).

    :param table: training table (templated).
    :param commit: commit hash or branch (templated).
    :param customers: customers to train, or a handoff reference to them (templated); an empty
        list trains nothing.
    :param backend: ``local`` (worker processes on this machine) or ``argo`` (GPU pods) (templated).
    :param parallelism: local worker processes.
    :param retries_per_adapter: local retries of a failed adapter.
    :param allow_partial: succeed when only some customers failed (templated: a DAG param).
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    :param argo_conn_id: connection of type ``argo`` (backend ``argo``).
    :param argo_spec: image, namespace, GPU and quota settings of the training pods. The image needs
        a version tag or a digest (``latest`` is refused): its tag or digest is the adapters' code
        version, part of the key that decides whether a customer is already trained.
    :param poll_interval: seconds between workflow polls while deferred.
    """

    template_fields: Sequence[str] = ("table", "commit", "customers", "backend", "allow_partial")
    operator_extra_links = (ArgoWorkflowLink(), MLflowRunLink())

    def __init__(
        self,
        *,
        table: str,
        commit: str,
        customers: Sequence[str],
        backend: Literal["local", "argo"] | str = "local",
        key_column: str = "customer_id",
        parallelism: int = 2,
        retries_per_adapter: int = 1,
        allow_partial: bool | str = False,
        mlflow_uri: str | None = None,
        dolt_conn_id: str = DoltHook.default_conn_name,
        argo_conn_id: str = ArgoHook.default_conn_name,
        argo_spec: ArgoTrainingSpec | None = None,
        poll_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table, self.commit, self.customers = table, commit, customers
        self.backend, self.key_column = backend, key_column
        self.parallelism, self.retries_per_adapter, self.allow_partial = (
            parallelism,
            retries_per_adapter,
            allow_partial,
        )
        self.mlflow_uri, self.dolt_conn_id, self.argo_conn_id = mlflow_uri, dolt_conn_id, argo_conn_id
        self.argo_spec = argo_spec or ArgoTrainingSpec()
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any] | None:
        if self.backend not in ("local", "argo"):
            raise ValueError(f"backend must be 'local' or 'argo', not {self.backend!r}")
        customers = sorted(set(resolve(self.customers) or []))
        location = repository_location(DoltHook.get_connection(self.dolt_conn_id))
        with DoltRepository.open(location) as repo:
            commit = repo.resolve(self.commit)
        uri = tracking_uri(self.mlflow_uri)
        if not customers:
            self.log.info("no customers to train at %s", commit)
            return self._finish(context, commit, "", {}, {})
        parent_run_id = self._parent_run(context, uri, commit, len(customers))
        if self.backend == "local":
            from retrain.fanout.local import train_customers

            result = train_customers(
                location, table=self.table, commit=commit, customers=customers, key_column=self.key_column,
                parallelism=self.parallelism, retries=self.retries_per_adapter, mlflow_uri=uri,
                parent_run_id=parent_run_id,
            )  # fmt: skip
            self.log.info("\n%s", result.table())
            return self._finish(
                context, commit, parent_run_id, {a.customer: a for a in result.succeeded}, result.failed
            )

        from mlflow.tracking import MlflowClient

        client = ArgoHook(self.argo_conn_id).get_client()
        mlflow_client = MlflowClient(uri)
        workflow = build_submission(
            self.argo_spec, table=self.table, commit=commit, customers=customers, parent_run_id=parent_run_id,
            store_artifact=lambda name, text: mlflow_client.log_text(parent_run_id, text, name),
        )  # fmt: skip
        name = client.submit(workflow)
        self.log.info("submitted Argo workflow %s for %d customers (image %s): %s", name, len(customers),
                      self.argo_spec.image, client.workflow_url(name))  # fmt: skip
        context["ti"].xcom_push(key=ArgoWorkflowLink.source_key, value=client.workflow_url(name))
        request = {
            "commit": commit, "parent_run_id": parent_run_id,
            "customers": bounded(customers, context=context, name="requested_customers"),
        }  # fmt: skip
        context["ti"].xcom_push(key=REQUEST_KEY, value=request)  # read back when the trigger fires
        self.defer(
            trigger=ArgoWorkflowTrigger(
                argo_conn_id=self.argo_conn_id, workflow=name, poll_interval=self.poll_interval
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.argo_spec.active_deadline_seconds + 3600),
        )
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Collect each customer's version from MLflow by tags; name the failed customers."""
        from mlflow.tracking import MlflowClient

        ti = context["ti"]
        request = ti.xcom_pull(task_ids=ti.task_id, key=REQUEST_KEY)
        commit, parent_run_id = request["commit"], request["parent_run_id"]
        customers: list[str] = resolve(request["customers"])

        if event["status"] == "error":
            raise AirflowException(f"lost track of Argo workflow {event['workflow']}: {event['message']}")
        registered, failed = collect_results(
            ArgoHook(self.argo_conn_id).get_client(), MlflowClient(tracking_uri(self.mlflow_uri)),
            workflow=event["workflow"], commit=commit, customers=customers,
        )  # fmt: skip
        self.log.info("workflow %s %s: %d registered, %d failed", event["workflow"], event["phase"],
                      len(registered), len(failed))  # fmt: skip
        return self._finish(context, commit, parent_run_id, registered, failed)

    def _parent_run(self, context: Context, uri: str, commit: str, count: int) -> str:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment_id = ensure_experiment(EXPERIMENT, uri)
        ti = context["ti"]
        run = client.create_run(
            experiment_id,
            run_name=f"{ti.dag_id}.{ti.task_id}",
            tags={"retrain.commit": commit, "retrain.table": self.table, "retrain.backend": self.backend,
                  "retrain.customers": str(count), "retrain.airflow_run_id": ti.run_id},
        )  # fmt: skip
        url = run_url(uri, experiment_id, run.info.run_id)
        if url:
            ti.xcom_push(key=MLflowRunLink.source_key, value=url)
        return str(run.info.run_id)

    def _finish(
        self,
        context: Context,
        commit: str,
        parent_run_id: str,
        registered: dict[str, RegisteredAdapter],
        failed: dict[str, str],
    ) -> dict[str, Any]:
        if failed and not as_flag(self.allow_partial):
            names = ", ".join(f"{c} ({reason})" for c, reason in sorted(failed.items()))
            raise AirflowException(
                f"{len(failed)} of {len(failed) + len(registered)} adapters failed: {names}"
            )
        if failed:
            self.log.warning("allow_partial: going on without %d failed customer(s): %s", len(failed),
                             ", ".join(sorted(failed)))  # fmt: skip
        adapters = {c: a.to_json() for c, a in sorted(registered.items())}
        return {
            "commit": commit,
            "parent_run_id": parent_run_id,
            "adapters": bounded(adapters, context=context, name="adapters"),
            "failed": bounded(dict(sorted(failed.items())), context=context, name="failed"),
        }


def as_flag(value: bool | str) -> bool:
    """A boolean operator argument that may arrive as a rendered template ("True", "false")."""
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.strip().lower() == "true"
    return bool(value)
