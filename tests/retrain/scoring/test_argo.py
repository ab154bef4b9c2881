"""The Hive scoring WorkflowTemplate: a Spark driver pod in client mode, secrets by reference only."""

from __future__ import annotations

import pytest

from retrain import __version__
from retrain.errors import InputError
from retrain.scoring.argo import ArgoScoringSpec, build_scoring_template


def test_driver_pod_runs_retrain_score_with_the_cluster_settings() -> None:
    spec = build_scoring_template(ArgoScoringSpec(executor_instances=7)).to_dict()["spec"]
    driver, steps = spec["templates"]
    args = driver["container"]["args"]
    assert args[:4] == ["-v", "score", "--release", "{{workflow.parameters.release}}"]
    confs = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
    assert confs["spark.executor.instances"] == "7"
    assert confs["spark.driver.host"] == "$(POD_IP)"  # expanded by Kubernetes from the env below
    env = {e["name"]: e for e in driver["container"]["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["RETRAIN_SPARK_MASTER"]["value"].startswith("k8s://")
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"]["name"] == "retrain-mlflow"
    assert "value" not in env["MLFLOW_TRACKING_URI"]
    assert steps["steps"][0][0]["template"] == "spark-driver"
    assert {p["name"] for p in spec["arguments"]["parameters"]} == {"release", "table", "ds", "out"}


def test_images_are_version_tagged_and_a_moving_tag_is_refused() -> None:
    spec = build_scoring_template(ArgoScoringSpec()).to_dict()["spec"]
    driver = spec["templates"][0]["container"]
    assert driver["image"].endswith(f":{__version__}")
    assert (
        f"spark.kubernetes.container.image=ghcr.io/retrain-suite/spark-scorer:{__version__}" in driver["args"]
    )
    with pytest.raises(InputError, match="latest"):
        build_scoring_template(ArgoScoringSpec(executor_image="ghcr.io/retrain-suite/spark-scorer:latest"))
