"""Argo Workflows fan-out, built with Hera: one WorkflowTemplate, and small Workflows that submit it.

The template's DAG fans out with ``withParam`` over shard numbers ``[0, 1, ..., S-1]``; each shard
pod runs ``retrain train-shard``, which trains its share of the customers one after another with
the same :func:`~retrain.adapters.registry.train_and_register` as the local backend (one GPU pod
loads the base model once for several small adapters). The submitted object therefore holds no
per-customer spec: customers travel as one parameter (inline while small, else as a
``customers.json`` artifact of the pipeline's MLflow parent run), so it stays far below Argo's
1 MiB object limit, and the number of pods is capped by ``max_pods`` whatever N is. Results are
read back from MLflow by tags, never from Argo outputs (256 kB limit).

The image is a parameter too, and so is its tag or digest, which the pods record as their code
version (``$RETRAIN_CODE_VERSION``, part of each adapter's training key): every submission names
the image it runs, and a mutable tag such as ``latest`` is refused (:func:`image_code_version`).

``make templates`` writes the template to ``argo_templates/``; never edit that YAML by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hera.workflows import (
    DAG,
    Container,
    Env,
    Parameter,
    Resources,
    RetryStrategy,
    SecretEnv,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows import models as m

from retrain import __version__
from retrain.adapters.registry import RegisteredAdapter, versions_for_commit
from retrain.argo_common import mlflow_env, template_settings
from retrain.errors import InputError
from retrain.fanout.argo_client import CUSTOMERS_LABEL, ArgoClient
from retrain.fanout.shards import shard_count
from retrain.fanout.shards import shard_of as shard_of  # retrain train-shard imports it from here
from retrain.identifiers import customer_id
from retrain.tracking import MUTABLE_TAGS

TEMPLATE_NAME = "retrain-train-adapters"
SUBMITTER_LABEL = "retrain/submitter"  # who submitted a workflow, so a retry finds it (build_submission)
INLINE_SELECTION_LIMIT = 16_384  # bytes of customer JSON kept inline in the Workflow's parameters
CUSTOMERS_ARTIFACT = "customers.json"
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")  # OCI: algorithm:hex
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # OCI tag grammar


@dataclass(frozen=True)
class ArgoTrainingSpec:
    """Cluster settings for training pods; the defaults suit a GPU node pool with the NVIDIA plugin.

    Secrets are referenced by name, never inlined: ``mlflow_secret`` holds ``tracking-uri`` (and
    optionally ``tracking-token``), ``dolt_secret`` holds ``repo`` (a ``mysql://user@host/db``
    location) and ``password``. ``image`` must carry a version tag or a digest: its tag or digest
    is the pods' code version; the default is this release's image.
    """

    image: str = f"ghcr.io/retrain-suite/trainer:{__version__}"
    namespace: str = "ml-training"
    service_account: str = "retrain-trainer"
    gpus: int = 1
    memory: str = "8Gi"
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, str]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    parallelism: int = 16  # pods of one workflow running at once
    gpu_semaphore: tuple[str, str] = (
        "retrain-gpu-quota",
        "training-pods",
    )  # ConfigMap name, key: cluster quota
    max_pods: int = 500  # shards per workflow, whatever the number of customers
    # Customers a pod trains side by side on its GPU: a shard holds at least one full pack.
    pack_size: int = 128
    retry_limit: int = 2
    active_deadline_seconds: int = 6 * 3600
    mlflow_secret: str = "retrain-mlflow"
    dolt_secret: str = "retrain-dolt"


def build_template(spec: ArgoTrainingSpec) -> WorkflowTemplate:
    """The WorkflowTemplate every training submission references."""
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        namespace=spec.namespace,
        entrypoint="train-adapters",
        service_account_name=spec.service_account,
        arguments=[
            Parameter(name="table", value="examples"),
            Parameter(name="commit"),
            Parameter(
                name="selection", description="JSON: {'customers': [...]} or {'parent_run_artifact': ...}"
            ),
            Parameter(name="shards", value="1"),
            Parameter(name="pack-size", value=str(spec.pack_size)),
            Parameter(name="shard-numbers", value="[0]"),
            Parameter(name="parent-run-id", value=""),
            Parameter(name="image", description="the trainer image, with a version tag or a digest"),
            Parameter(name="code-version", description="the image's tag or digest, the pods' code version"),
        ],
        **template_settings("retrain.fanout.argo", spec.active_deadline_seconds),
    ) as template:
        train = Container(
            name="train-shard",
            image="{{workflow.parameters.image}}",
            image_pull_policy="IfNotPresent",
            inputs=[Parameter(name="shard")],
            command=["retrain"],
            args=[
                "-v",
                "train-shard",
                "--table",
                "{{workflow.parameters.table}}",
                "--commit",
                "{{workflow.parameters.commit}}",
                "--selection",
                "{{workflow.parameters.selection}}",
                "--shard",
                "{{inputs.parameters.shard}}",
                "--shards",
                "{{workflow.parameters.shards}}",
                "--pack",
                "{{workflow.parameters.pack-size}}",
                "--parent-run-id",
                "{{workflow.parameters.parent-run-id}}",
            ],
            env=[
                *mlflow_env(spec.mlflow_secret),
                SecretEnv(name="RETRAIN_DOLT_REPO", secret_name=spec.dolt_secret, secret_key="repo"),
                SecretEnv(name="RETRAIN_DOLT_PASSWORD", secret_name=spec.dolt_secret, secret_key="password"),
                Env(name="RETRAIN_CODE_VERSION", value="{{workflow.parameters.code-version}}"),
                Env(name="PYTHONUNBUFFERED", value="1"),
            ],
            resources=Resources(gpus=spec.gpus, memory_request=spec.memory, memory_limit=spec.memory),
            node_selector=spec.node_selector,
            tolerations=[
                m.Toleration(
                    key=t.get("key"), operator=t.get("operator"), value=t.get("value"), effect=t.get("effect")
                )
                for t in spec.tolerations
            ],
            retry_strategy=RetryStrategy(
                limit=spec.retry_limit,
                retry_policy="OnError",  # pod evictions, node loss; a shard's bad data fails for good
                backoff=m.Backoff(duration="30s", factor=m.IntOrString(root=2), max_duration="10m"),
            ),
            synchronization=m.Synchronization(
                semaphores=[
                    m.SemaphoreRef(
                        config_map_key_ref=m.ConfigMapKeySelector(
                            name=spec.gpu_semaphore[0], key=spec.gpu_semaphore[1]
                        )
                    )
                ]
            ),
        )
        with DAG(name="train-adapters", parallelism=spec.parallelism):
            train(
                name="train",
                arguments=[Parameter(name="shard", value="{{item}}")],
                with_param="{{workflow.parameters.shard-numbers}}",
                continue_on=m.ContinueOn(
                    failed=True
                ),  # the other shards finish; failures are read from MLflow
            )
    return template


def selection_parameter(customers: Sequence[str], store_artifact: Callable[[str, str], None]) -> str:
    """Customers as a Workflow parameter: inline while small, else stored as a parent-run artifact."""
    inline = json.dumps({"customers": sorted(customers)}, separators=(",", ":"))
    if len(inline) <= INLINE_SELECTION_LIMIT:
        return inline
    store_artifact(CUSTOMERS_ARTIFACT, json.dumps(sorted(customers)))
    return json.dumps({"parent_run_artifact": CUSTOMERS_ARTIFACT})


def parse_selection(selection: str) -> dict[str, Any]:
    """A ``selection`` parameter, checked: ``{"customers": [id, ...]}`` or ``{"parent_run_artifact": name}``.

    A string where the list belongs would otherwise be trained character by character.
    """
    try:
        data = json.loads(selection)
    except json.JSONDecodeError as error:
        raise InputError(f"selection is not JSON ({error.msg}): {selection[:100]!r}") from None
    if isinstance(data, dict) and data.keys() == {"customers"} and isinstance(data["customers"], list):
        for customer in data["customers"]:
            customer_id(customer)
        return data
    if (
        isinstance(data, dict)
        and data.keys() == {"parent_run_artifact"}
        and isinstance(data["parent_run_artifact"], str)
    ):
        return data
    raise InputError(
        'selection must be {"customers": ["id", ...]} or {"parent_run_artifact": "name"}, '
        f"not {selection[:100]}"
    )


def resolve_selection(selection: str, parent_run_id: str | None, mlflow_uri: str | None) -> list[str]:
    """The customer list a ``selection`` parameter stands for (read inside the pods)."""
    data = parse_selection(selection)
    if "customers" in data:
        return list(data["customers"])
    if not parent_run_id:
        raise InputError(
            f"selection {selection} reads the parent run's artifact, but no parent run id was given"
        )
    import mlflow
    from mlflow.artifacts import load_text

    from retrain.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(mlflow_uri))
    listed = json.loads(load_text(f"runs:/{parent_run_id}/{data['parent_run_artifact']}"))
    if not isinstance(listed, list):
        raise InputError(
            f"run {parent_run_id}'s {data['parent_run_artifact']} is not a JSON list of customers"
        )
    return [customer_id(c) for c in listed]


def image_code_version(image: str) -> str:
    """The code version an image stands for: its digest when it has one, else its tag.

    A training key built from a mutable tag such as ``latest`` would take adapters trained by new
    code as already trained, so such an image (or one with neither tag nor digest) is refused.
    """
    name, _, digest = image.partition("@")
    if digest:
        if not _DIGEST.fullmatch(digest):
            raise InputError(f"image {image}: {digest!r} is not a digest such as sha256:<64 hex digits>")
        return digest
    repository, _, tag = name.rpartition("/")[2].rpartition(":")
    if not repository:
        raise InputError(
            f"image {image} has no tag: name a version tag or a digest (image@sha256:...), "
            "the pods' code version"
        )
    if not _TAG.fullmatch(tag):
        raise InputError(f"image {image}: {tag!r} is not a valid image tag")
    if tag.lower() in MUTABLE_TAGS:
        raise InputError(
            f"image {image}: tag {tag!r} moves from build to build, so it cannot name the code "
            "version; use a version tag or a digest (image@sha256:...)"
        )
    return tag


def build_submission(
    spec: ArgoTrainingSpec,
    *,
    table: str,
    commit: str,
    customers: Sequence[str],
    parent_run_id: str,
    store_artifact: Callable[[str, str], None],
    submitter: str | None = None,
) -> Workflow:
    """The Workflow to create: a reference to the template plus this run's parameters and image.

    ``submitter`` names who submits (e.g. a hash of an Airflow task instance): it becomes the
    :data:`SUBMITTER_LABEL`, by which :func:`unfinished_submission` finds the workflow again.
    """
    code_version = image_code_version(spec.image)  # before anything is stored
    shards = shard_count(len(customers), spec.max_pods, spec.pack_size)
    parameters = {
        "table": table,
        "commit": commit,
        "selection": selection_parameter(customers, store_artifact),
        "shards": str(shards),
        "pack-size": str(spec.pack_size),
        "shard-numbers": json.dumps(list(range(shards)), separators=(",", ":")),
        "parent-run-id": parent_run_id,
        "image": spec.image,
        "code-version": code_version,
    }
    return Workflow(
        generate_name="retrain-train-",
        namespace=spec.namespace,
        labels={
            "app.kubernetes.io/part-of": "retrain",
            "retrain/commit": commit[:63],
            CUSTOMERS_LABEL: str(len(customers)),
            **({SUBMITTER_LABEL: submitter} if submitter else {}),
        },
        workflow_template_ref=m.WorkflowTemplateRef(name=TEMPLATE_NAME),
        arguments=[Parameter(name=name, value=value) for name, value in parameters.items()],
    )


@dataclass(frozen=True)
class Submission:
    """A workflow submitted earlier, and what it trains."""

    workflow: str
    table: str
    commit: str
    parent_run_id: str
    selection: str


def unfinished_submission(argo: ArgoClient, submitter: str, commit: str) -> Submission | None:
    """The workflow ``submitter`` submitted for ``commit`` that is still running, if there is one.

    A retried submitter (an Airflow task whose triggerer lost the Argo Server, say) waits for it
    instead of submitting a second workflow that would train the same customers on more GPUs.
    """
    for name, parameters in sorted(argo.unfinished(SUBMITTER_LABEL, submitter).items()):
        if parameters.get("commit") == commit:
            return Submission(
                name, parameters["table"], commit, parameters["parent-run-id"], parameters["selection"]
            )
    return None


def pods_for(customers: int, spec: ArgoTrainingSpec) -> int:
    """How many pods a submission of ``customers`` runs (for capacity planning and the benchmark)."""
    return shard_count(customers, spec.max_pods, spec.pack_size) if customers else 0


def collect_results(
    argo: ArgoClient, mlflow_client: Any, *, workflow: str, commit: str, customers: Sequence[str]
) -> tuple[dict[str, RegisteredAdapter], dict[str, str]]:
    """A finished workflow's outcome: versions from MLflow by tags, each missing customer explained.

    MLflow decides who failed (a pod training several customers may fail for one of them only);
    the workflow's nodes only say why, by the shard each customer was trained in.
    """
    registered = versions_for_commit(mlflow_client, commit, customers)
    missing = [c for c in customers if c not in registered]
    return registered, argo.failed_customers(workflow, customers, missing) if missing else {}
