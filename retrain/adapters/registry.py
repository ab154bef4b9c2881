"""Train a customer's adapter as of a commit and register it in MLflow with its full lineage.

One registered model per customer (``adapter-<customer>``); each training is a run (a child of the
pipeline's parent run when given) and a new model version. The version is created last, in one
call that carries every lineage tag, so a failure anywhere before leaves nothing registered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from retrain.adapters.model import base_model_id, resolve_base_model
from retrain.adapters.training import TrainingParams, TrainingResult, rows_fingerprint, train_adapter
from retrain.dolt import DoltRepository
from retrain.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    RetrainError,
    ServiceUnreachableError,
)
from retrain.identifiers import customer_id, sql_identifier
from retrain.tracking import code_version, ensure_experiment, tracking_uri

log = logging.getLogger(__name__)

EXPERIMENT = "retrain-adapters"
MODEL_PREFIX = "adapter-"
# Adapters of a pack whose drift references are recorded in one engine pass before they register.
REFERENCE_GROUP = 32
REFERENCE_SAMPLE = 20  # holdout rows stored with their scores: the adapter's golden sample
# Lineage tags, set on the run and on the model version (MLflow's dotted naming style).
TAG_PREFIX = "retrain."
# Holdout metrics copied onto the model version, so releases read them without one call per model.
METRIC_TAG_PREFIX = "retrain.metric."
SEARCH_PAGE_SIZE = 1000  # model versions per search round trip when collecting a fan-out


def model_name(customer: str) -> str:
    """``adapter-<customer>``, for a valid customer id only."""
    return f"{MODEL_PREFIX}{customer_id(customer)}"


def filter_value(value: str) -> str:
    """``value`` as a quoted string of an MLflow search filter.

    MLflow's filter parser strips the outer quotes and unescapes nothing (neither ``\\'`` nor
    ``''``), and a backslash changes where its tokenizer ends a string: values with either are
    refused, so no value can close its quotes and add a clause.
    """
    if "'" in value or "\\" in value:
        raise InputError(f"{value!r} cannot be searched for in MLflow: it holds a quote or a backslash")
    return f"'{value}'"


class TrackingRequestError(RetrainError):
    """MLflow refused or failed a request; the message is MLflow's own, on one line."""


class TrackingNotFoundError(TrackingRequestError, NotFoundError):
    """A run, experiment, model or version that MLflow does not have."""


class TrackingInputError(TrackingRequestError, InputError):
    """MLflow rejected a value (an id, a filter, a parameter)."""


class TrackingConflictError(TrackingRequestError, ConflictError):
    """MLflow's state does not allow the request (already exists, wrong state)."""


class TrackingFailedError(TrackingRequestError, ServiceUnreachableError):
    """MLflow failed the request on its side (server error, unavailable): trying again may succeed."""


# MLflow error codes that say the request itself was wrong; any other failure may pass on a retry.
_TRACKING_ERRORS: dict[str, type[TrackingRequestError]] = {
    **dict.fromkeys(("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"), TrackingNotFoundError),
    **dict.fromkeys(("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST"), TrackingInputError),
    **dict.fromkeys(("RESOURCE_ALREADY_EXISTS", "RESOURCE_CONFLICT", "INVALID_STATE"), TrackingConflictError),
    **dict.fromkeys(("PERMISSION_DENIED", "UNAUTHENTICATED", "FEATURE_DISABLED"), TrackingRequestError),
}
_P = ParamSpec("_P")
_R = TypeVar("_R")


def mlflow_errors(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """The boundary to MLflow: an ``MlflowException`` (``RestException`` included) escaping
    ``function`` becomes the :class:`TrackingRequestError` subclass of its error code."""

    @functools.wraps(function)
    def boundary(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        from mlflow.exceptions import MlflowException

        try:
            return function(*args, **kwargs)
        except MlflowException as error:
            kind = _TRACKING_ERRORS.get(str(error.error_code), TrackingFailedError)
            message = " ".join(str(error.message).split())[:500]
            raise kind(f"MLflow {error.error_code}: {message}") from error

    return boundary


@dataclass(frozen=True)
class RegisteredAdapter:
    customer: str
    model_name: str
    version: str
    run_id: str
    commit: str
    metrics: dict[str, float]
    reused: bool = False
    training_key: str = ""  # what makes two trainings the same (:func:`training_key`)
    code_version: str = ""  # the code that trained it ($RETRAIN_CODE_VERSION, else the git commit)

    @classmethod
    def from_version(
        cls, customer: str, version: Any, commit: str, *, reused: bool = False
    ) -> RegisteredAdapter:
        """The adapter a registered model version holds, with the lineage its tags record."""
        tags = version.tags
        return cls(
            customer,
            version.name,
            str(version.version),
            str(version.run_id),
            commit,
            version_metrics(version),
            reused=reused,
            training_key=tags.get(f"{TAG_PREFIX}training_key", ""),
            code_version=tags.get(f"{TAG_PREFIX}code_version", ""),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def training_key(customer: str, commit: str, code: str, params: TrainingParams, base_id: str) -> str:
    """What makes two trainings the same: idempotency looks versions up by this tag.

    ``base_id`` is the base model's portable identifier (:func:`base_model_id`). For a configured
    folder that is its name, as before; for the packaged model it is ``<package>==<version>``
    (it was the folder name ``model``), so a new base-model release is never taken as trained.
    """
    material = json.dumps([customer, commit, code, params.fingerprint(), base_id])
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def find_registered(client: Any, customer: str, key: str) -> Any | None:
    """The model version already trained with ``key``, if any."""
    name, training = filter_value(model_name(customer)), filter_value(key)
    versions = client.search_model_versions(f"name = {name} and tags.`{TAG_PREFIX}training_key` = {training}")
    return max(versions, key=lambda v: int(v.version)) if versions else None


@dataclass(frozen=True)
class _Planned:
    """A customer to train: its rows as of the commit and the lineage tags its run and version carry."""

    customer: str
    rows: Any  # pandas.DataFrame
    tags: dict[str, str]


@dataclass(frozen=True)
class _Training:
    """What every customer of one training call shares: where it reads, trains and registers."""

    repo: DoltRepository
    table: str
    commit: str  # resolved hash
    key_column: str
    params: TrainingParams
    base_model: str  # the folder
    base_id: str
    code: str
    uri: str
    client: Any  # MlflowClient
    parent_run_id: str | None
    force: bool

    @classmethod
    def start(
        cls,
        repo: DoltRepository,
        *,
        table: str,
        commit: str,
        key_column: str,
        params: TrainingParams | None,
        base_model: str | None,
        mlflow_uri: str | None,
        parent_run_id: str | None,
        force: bool,
    ) -> _Training:
        from mlflow.tracking import MlflowClient

        base = str(resolve_base_model(override=base_model))
        uri = tracking_uri(mlflow_uri)
        return cls(
            repo,
            table,
            repo.resolve(commit),
            key_column,
            params or TrainingParams(),
            base,
            base_model_id(base),
            code_version(),
            uri,
            MlflowClient(uri),
            parent_run_id,
            force,
        )

    def plan(self, customer: str) -> RegisteredAdapter | _Planned:
        """The version already trained this exact way (unless ``force``), else what to train."""
        customer_id(customer)
        key = training_key(customer, self.commit, self.code, self.params, self.base_id)
        if not self.force and (existing := find_registered(self.client, customer, key)) is not None:
            log.info(
                "customer %s at %s already trained: %s v%s",
                customer,
                self.commit,
                existing.name,
                existing.version,
            )
            return RegisteredAdapter.from_version(customer, existing, self.commit, reused=True)
        column = sql_identifier(self.key_column, "column")
        rows = self.repo.read_table(self.table, self.commit, where={column: customer})
        tags = {
            f"{TAG_PREFIX}dolt_repo": self.repo.location,
            f"{TAG_PREFIX}table": self.table,
            f"{TAG_PREFIX}commit": self.commit,
            f"{TAG_PREFIX}customer": customer,
            f"{TAG_PREFIX}row_count": str(len(rows)),
            f"{TAG_PREFIX}rows_fingerprint": rows_fingerprint(rows) if len(rows) else "",
            f"{TAG_PREFIX}code_version": self.code,
            f"{TAG_PREFIX}base_model": self.base_id,
            f"{TAG_PREFIX}training_key": key,
        }
        return _Planned(customer, rows, tags)

    def record_failure(self, planned: _Planned, error: Exception, run_tags: dict[str, str]) -> None:
        """A FAILED child run for a customer whose training failed: every attempt is visible under
        the pipeline's run, with its lineage and the error."""
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.start_run(
            experiment_id=self._experiment_id(),
            run_name=model_name(planned.customer),
            parent_run_id=self.parent_run_id,
            tags={
                **planned.tags,
                **run_tags,
                f"{TAG_PREFIX}error": f"{type(error).__name__}: {error}"[:5000],
            },
        )
        try:
            mlflow.log_params(asdict(self.params))
        finally:
            mlflow.end_run(status="FAILED")  # ends FAILED, never FINISHED first

    def record_references(self, trained: Sequence[tuple[_Planned, TrainingResult]]) -> None:
        """Each trained adapter's drift reference, written into its folder before it is logged."""
        from retrain.drift.recording import ReferenceJob, record_references

        jobs = []
        for planned, result in trained:
            in_holdout = planned.rows["example_id"].isin(set(result.holdout["example_id"]))
            texts = planned.rows["text"].astype(str)
            jobs.append(
                ReferenceJob(
                    result.customer, result.adapter_dir, list(texts[~in_holdout]), list(texts[in_holdout])
                )
            )
        record_references(jobs, self.base_model)

    def _experiment_id(self) -> str:
        if self.parent_run_id:
            return str(self.client.get_run(self.parent_run_id).info.experiment_id)
        return ensure_experiment(EXPERIMENT, self.uri)

    def register(
        self, planned: _Planned, result: TrainingResult, run_tags: dict[str, str]
    ) -> RegisteredAdapter:
        """Log the trained adapter as a run (a child of the parent run) and register its version last."""
        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        from retrain.adapters.mlmodel import drop_host_paths
        from retrain.adapters.pyfunc import (
            INPUT_EXAMPLE,
            MODEL_CODE,
            loader_code,
            model_config,
            pip_requirements,
        )

        customer, client = planned.customer, self.client
        mlflow.set_tracking_uri(self.uri)
        with (
            mlflow.start_run(
                experiment_id=self._experiment_id(),
                run_name=model_name(customer),
                parent_run_id=self.parent_run_id,
                tags={**planned.tags, **run_tags},
            ) as run,
            loader_code() as code_paths,
        ):
            mlflow.log_params(asdict(self.params))
            sizes = {"train_rows": result.train_rows, "holdout_rows": result.holdout_rows}
            timings = {"base_load_seconds": result.load_seconds, "fit_seconds": result.fit_seconds}
            mlflow.log_metrics({**result.metrics, **sizes, **timings})
            mlflow.log_table(result.holdout.head(REFERENCE_SAMPLE), artifact_file="reference_scores.json")
            logged = mlflow.pyfunc.log_model(
                name="adapter",
                python_model=str(MODEL_CODE),
                input_example=INPUT_EXAMPLE,
                artifacts={"adapter": str(result.adapter_dir)},
                model_config=model_config(self.base_id),
                signature=ModelSignature(
                    inputs=Schema([ColSpec("string", "text")]),
                    outputs=Schema(
                        [ColSpec("string", "label"), *(ColSpec("double", f"p_{x}") for x in result.labels)]
                    ),
                ),
                pip_requirements=pip_requirements(self.base_id),
                code_paths=code_paths,
            )
            artifacts = mlflow.get_logged_model(logged.model_id).artifact_location
            drop_host_paths(client, logged.model_id, artifacts)
            # Registration last: one call, every lineage tag included, nothing half-registered.
            _ensure_registered_model(client, model_name(customer))
            metric_tags = {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6f}" for k, v in result.metrics.items()}
            metric_tags[f"{TAG_PREFIX}artifact_uri"] = artifacts
            version = client.create_model_version(
                model_name(customer),
                logged.model_uri,
                run_id=run.info.run_id,
                tags={**planned.tags, **metric_tags},
                model_id=logged.model_id,
            )
        log.info(
            "registered %s v%s (commit %s, %d rows, %s)",
            version.name,
            version.version,
            self.commit,
            len(planned.rows),
            ", ".join(f"{k}={v:.3f}" for k, v in result.metrics.items()),
        )
        return RegisteredAdapter(
            customer,
            version.name,
            str(version.version),
            run.info.run_id,
            self.commit,
            result.metrics,
            training_key=planned.tags[f"{TAG_PREFIX}training_key"],
            code_version=planned.tags[f"{TAG_PREFIX}code_version"],
        )


@mlflow_errors
def train_and_register(
    repo: DoltRepository,
    *,
    table: str,
    commit: str,
    customer: str,
    key_column: str = "customer_id",
    params: TrainingParams | None = None,
    base_model: str | None = None,
    mlflow_uri: str | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
) -> RegisteredAdapter:
    """Train ``customer``'s adapter on ``table`` as of ``commit`` and register a model version.

    Training the same (customer, commit, code version, params, base model) again returns the
    version already registered, unless ``force``.
    """
    training = _Training.start(
        repo,
        table=table,
        commit=commit,
        key_column=key_column,
        params=params,
        base_model=base_model,
        mlflow_uri=mlflow_uri,
        parent_run_id=parent_run_id,
        force=force,
    )
    planned = training.plan(customer)
    if isinstance(planned, RegisteredAdapter):
        return planned
    run_tags = {f"{TAG_PREFIX}trainer": "alone"}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            result = train_adapter(
                planned.rows,
                customer=customer,
                commit=training.commit,
                base_model=training.base_model,
                params=training.params,
                out_dir=Path(workdir) / "adapter",
            )
        except Exception as error:
            training.record_failure(planned, error, run_tags)
            raise
        training.record_references([(planned, result)])
        return training.register(planned, result, run_tags)


@dataclass(frozen=True)
class PackRegistration:
    """What one packed training call registered, and the customers that failed, each with its error."""

    registered: list[RegisteredAdapter]
    failed: dict[str, Exception]


@mlflow_errors
def train_and_register_pack(
    repo: DoltRepository,
    *,
    table: str,
    commit: str,
    customers: Sequence[str],
    pack_size: int | None = None,
    key_column: str = "customer_id",
    params: TrainingParams | None = None,
    base_model: str | None = None,
    mlflow_uri: str | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
) -> PackRegistration:
    """Train ``customers``' adapters together (:func:`~retrain.adapters.packed.train_packed`) and
    register each as it finishes, exactly as :func:`train_and_register` registers one.

    Customers already trained this exact way are reused. A customer that fails (bad rows, a loss
    that diverged) fails alone, named; an error of MLflow while registering one stops the call, and
    what was registered before it stays registered (a retry reuses it).

    :param pack_size: slots trained side by side (default: as many as memory allows, see
        :func:`~retrain.adapters.packed.pack_size_for`).
    """
    from retrain.adapters.packed import PackFailure, PackJob, pack_size_for, train_packed

    training = _Training.start(
        repo,
        table=table,
        commit=commit,
        key_column=key_column,
        params=params,
        base_model=base_model,
        mlflow_uri=mlflow_uri,
        parent_run_id=parent_run_id,
        force=force,
    )
    registered: list[RegisteredAdapter] = []
    failed: dict[str, Exception] = {}
    planned: dict[str, _Planned] = {}
    for customer in customers:
        try:
            plan = training.plan(customer)
        except RetrainError as error:
            failed[customer] = error
            continue
        if isinstance(plan, RegisteredAdapter):
            registered.append(plan)
        else:
            planned[customer] = plan
    if not planned:
        return PackRegistration(registered, failed)
    slots = pack_size or pack_size_for(len(planned), training.base_model, params=training.params)
    run_tags = {f"{TAG_PREFIX}trainer": "packed", f"{TAG_PREFIX}pack_size": str(min(slots, len(planned)))}
    finished: list[tuple[_Planned, TrainingResult]] = []

    def register_finished() -> None:
        training.record_references(finished)
        registered.extend(training.register(plan, result, run_tags) for plan, result in finished)
        finished.clear()

    with tempfile.TemporaryDirectory() as workdir:
        jobs = [
            # The folder is logged under its own name: "adapter", as the pyfunc and releases read it.
            PackJob(customer, training.commit, plan.rows, Path(workdir) / customer / "adapter")
            for customer, plan in planned.items()
        ]
        for outcome in train_packed(
            jobs, base_model=training.base_model, params=training.params, pack_size=slots
        ):
            if isinstance(outcome, PackFailure):
                log.warning("customer %s failed in its pack: %s", outcome.customer, outcome.error)
                failed[outcome.customer] = outcome.error
                training.record_failure(planned[outcome.customer], outcome.error, run_tags)
                continue
            finished.append((planned[outcome.customer], outcome))
            if len(finished) >= REFERENCE_GROUP:
                register_finished()
        register_finished()
    return PackRegistration(registered, failed)


@mlflow_errors
def versions_for_commit(
    client: Any, commit: str, customers: Sequence[str], *, page_size: int = SEARCH_PAGE_SIZE
) -> dict[str, RegisteredAdapter]:
    """The newest registered version of each customer trained at ``commit``, found by lineage tags.

    This is how a remote fan-out's results are collected: from MLflow, not from Argo outputs. One
    search, read in pages of ``page_size`` in a fixed order, so 10,000 customers cost about ten
    round trips and none is cut off by the server's default limit on results.
    """
    wanted = {customer_id(c) for c in customers}
    found: dict[str, Any] = {}
    token: str | None = None
    while True:
        page = client.search_model_versions(
            f"tags.`{TAG_PREFIX}commit` = {filter_value(commit)}",
            max_results=page_size,
            order_by=["name ASC", "version_number DESC"],
            page_token=token,
        )
        for version in page:
            customer = version.tags.get(f"{TAG_PREFIX}customer")
            if customer in wanted and (
                customer not in found or int(version.version) > int(found[customer].version)
            ):
                found[customer] = version
        token = page.token
        if not token:
            break
    return {
        customer: RegisteredAdapter.from_version(customer, v, commit) for customer, v in sorted(found.items())
    }


def version_metrics(version: Any) -> dict[str, float]:
    """Holdout metrics recorded on a model version's tags."""
    return {
        key.removeprefix(METRIC_TAG_PREFIX): float(value)
        for key, value in version.tags.items()
        if key.startswith(METRIC_TAG_PREFIX)
    }


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={f"{TAG_PREFIX}kind": "customer-adapter"})
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
