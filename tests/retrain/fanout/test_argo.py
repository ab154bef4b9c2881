"""The training WorkflowTemplate's shape and its submissions (YAML: tests/retrain/test_argo_templates.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from retrain.fanout.argo import (
    CUSTOMERS_ARTIFACT,
    TEMPLATE_NAME,
    ArgoTrainingSpec,
    build_submission,
    build_template,
    resolve_selection,
)
from retrain.fanout.shards import shard_count, shard_of, shard_size

from ..argo_schema import validate


def submission(customers: list[str], stored: dict[str, str] | None = None) -> dict[str, Any]:
    store = stored if stored is not None else {}
    return build_submission(
        ArgoTrainingSpec(), table="examples", commit="a" * 40, customers=customers, parent_run_id="p1",
        store_artifact=store.__setitem__,
    )  # fmt: skip


@pytest.mark.parametrize("count", [1, 10, 1000, 10_000])
def test_submissions_validate_and_stay_small(argo_definitions: dict[str, Any], count: int) -> None:
    document = submission([f"customer_{i:05d}" for i in range(count)])
    validate(argo_definitions, "Workflow", document)
    assert len(json.dumps(document)) < 32_000


def test_template_fans_out_on_gpus_with_limits_and_no_inlined_secrets() -> None:
    spec = build_template(ArgoTrainingSpec()).to_dict()["spec"]
    pod, dag = spec["templates"]
    assert pod["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["synchronization"]["semaphores"][0]["configMapKeyRef"]["name"] == "retrain-gpu-quota"
    assert pod["retryStrategy"]["backoff"]["duration"] == "30s"
    assert dag["parallelism"] == 16
    assert dag["dag"]["tasks"][0]["withParam"] == "{{workflow.parameters.shard-numbers}}"
    assert spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert spec["activeDeadlineSeconds"] == 21600
    secret_env = [e for e in pod["container"]["env"] if "valueFrom" in e]
    assert {e["name"] for e in secret_env} >= {
        "MLFLOW_TRACKING_URI",
        "RETRAIN_DOLT_REPO",
        "RETRAIN_DOLT_PASSWORD",
    }
    assert all("value" not in e for e in secret_env)


def test_pods_are_capped_and_customers_partitioned() -> None:
    assert [shard_count(n, 500) for n in (1, 10, 500, 10_000)] == [1, 10, 500, 500]
    customers = [f"c{i}" for i in range(23)]
    shards = [shard_of(customers, i, 5) for i in range(5)]
    assert sorted(c for shard in shards for c in shard) == sorted(customers)
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
    assert [shard_size(len(customers), i, 5) for i in range(5)] == [len(s) for s in shards]
    with pytest.raises(ValueError, match=r"shard 5 is outside 0\.\.4"):
        shard_of(customers, 5, 5)


def test_large_selections_travel_as_a_parent_run_artifact() -> None:
    stored: dict[str, str] = {}
    small = submission(["a", "b"], stored)
    params = {p["name"]: p["value"] for p in small["spec"]["arguments"]["parameters"]}
    assert json.loads(params["selection"]) == {"customers": ["a", "b"]}
    assert stored == {}
    many = [f"customer_{i:05d}" for i in range(10_000)]
    large = submission(many, stored)
    params = {p["name"]: p["value"] for p in large["spec"]["arguments"]["parameters"]}
    assert json.loads(params["selection"]) == {"parent_run_artifact": CUSTOMERS_ARTIFACT}
    assert json.loads(stored[CUSTOMERS_ARTIFACT]) == many
    assert params["shards"] == "500"
    assert large["spec"]["workflowTemplateRef"] == {"name": TEMPLATE_NAME}
    assert resolve_selection(json.dumps({"customers": ["x"]}), None, None) == ["x"]
    with pytest.raises(ValueError, match="no parent run id"):
        resolve_selection(params["selection"], None, None)
