"""Hive scoring from Argo, built with Hera: one WorkflowTemplate whose pod is the Spark driver.

For clusters that run Spark jobs from Argo (Spark on Kubernetes in client mode): the pod runs
``retrain score`` with the Spark master, executor image and sizes as settings, so executors are
started by Spark itself and the driver stays in the Argo pod, where its log and exit code belong to
the workflow. The driver's address is the pod IP (downward API), which executors call back on.

``make templates`` writes the template to ``argo_templates/``; never edit that YAML by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from hera.workflows import (
    Container,
    Env,
    FieldEnv,
    Parameter,
    Resources,
    RetryStrategy,
    Steps,
    WorkflowTemplate,
)
from hera.workflows import models as m

from retrain import __version__
from retrain.argo_common import mlflow_env, template_settings
from retrain.fanout.argo import image_code_version

TEMPLATE_NAME = "retrain-hive-scoring"


@dataclass(frozen=True)
class ArgoScoringSpec:
    """Cluster settings for the scoring driver pod and its executors.

    ``mlflow_secret`` holds ``tracking-uri`` (and optionally ``tracking-token``); the Hive metastore
    URI and warehouse are plain settings because they carry no credentials. Both images need a
    version tag or a digest (``latest`` and other moving tags are refused), so a rerun of a day
    scores with the same code; the defaults are this release's images.
    """

    image: str = f"ghcr.io/retrain-suite/scorer:{__version__}"  # the Dockerfile's scorer target: the driver
    # Executors start from a Spark-on-Kubernetes image (Spark's entrypoint) with the suite installed.
    executor_image: str = f"ghcr.io/retrain-suite/spark-scorer:{__version__}"
    namespace: str = "ml-scoring"
    service_account: str = "retrain-spark-driver"  # may create executor pods
    spark_master: str = "k8s://https://kubernetes.default.svc"
    metastore_uri: str = "thrift://hive-metastore.hive:9083"
    warehouse: str = "s3a://warehouse/hive"
    executor_instances: int = 4
    executor_cores: int = 2
    executor_memory: str = "6g"
    driver_memory: str = "4Gi"
    retry_limit: int = 1
    active_deadline_seconds: int = 4 * 3600
    mlflow_secret: str = "retrain-mlflow"


def build_scoring_template(spec: ArgoScoringSpec) -> WorkflowTemplate:
    """The WorkflowTemplate that scores one Hive partition with one release."""
    for image in (spec.image, spec.executor_image):
        image_code_version(image)  # refuses an image without a version tag or digest
    conf = {
        "spark.kubernetes.container.image": spec.executor_image,
        "spark.kubernetes.namespace": spec.namespace,
        "spark.kubernetes.authenticate.driver.serviceAccountName": spec.service_account,
        "spark.executor.instances": str(spec.executor_instances),
        "spark.executor.cores": str(spec.executor_cores),
        "spark.executor.memory": spec.executor_memory,
        # Client mode: executors call the driver back on this pod's IP.
        "spark.driver.host": "$(POD_IP)",
        "spark.driver.bindAddress": "0.0.0.0",
    }
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        namespace=spec.namespace,
        entrypoint="score",
        service_account_name=spec.service_account,
        arguments=[
            Parameter(name="release", description="release id (manifest MD5)"),
            Parameter(name="table", value="requests"),
            Parameter(name="ds", description="input partition, YYYY-MM-DD"),
            Parameter(name="out", value="scores"),
        ],
        **template_settings("retrain.scoring.argo", spec.active_deadline_seconds),
    ) as template:
        score_args = ["-v", "score"]
        for option in ("release", "table", "ds", "out"):
            score_args += [f"--{option}", f"{{{{workflow.parameters.{option}}}}}"]
        score_args += ["--workdir", "/tmp/retrain-scoring"]
        for key, value in conf.items():
            score_args += ["--conf", f"{key}={value}"]
        driver = Container(
            name="spark-driver",
            image=spec.image,
            image_pull_policy="IfNotPresent",
            command=["retrain"],
            args=score_args,
            env=[
                FieldEnv(name="POD_IP", field_path="status.podIP"),
                Env(name="RETRAIN_SPARK_MASTER", value=spec.spark_master),
                Env(name="RETRAIN_HIVE_METASTORE", value=spec.metastore_uri),
                Env(name="RETRAIN_WAREHOUSE", value=spec.warehouse),
                *mlflow_env(spec.mlflow_secret),
                Env(name="PYTHONUNBUFFERED", value="1"),
            ],
            resources=Resources(
                cpu_request=1, memory_request=spec.driver_memory, memory_limit=spec.driver_memory
            ),
            retry_strategy=RetryStrategy(
                limit=spec.retry_limit,
                # A rerun is safe: the partition flips atomically, so a retried job replaces it.
                retry_policy="OnError",
                backoff=m.Backoff(duration="1m", factor=m.IntOrString(root=2), max_duration="15m"),
            ),
        )
        with Steps(name="score"):
            driver(name="score-partition")
    return template
