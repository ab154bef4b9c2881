"""The training WorkflowTemplate's shape and its submissions (YAML: tests/retrain/test_argo_templates.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from retrain.adapters.registry import TAG_PREFIX, train_and_register, training_key
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.errors import InputError
from retrain.fanout.argo import (
    CUSTOMERS_ARTIFACT,
    TEMPLATE_NAME,
    ArgoTrainingSpec,
    build_submission,
    build_template,
    image_code_version,
    resolve_selection,
    unfinished_submission,
)
from retrain.fanout.argo_client import ArgoClient
from retrain.fanout.shards import shard_count, shard_of, shard_size
from retrain.tracking import CODE_VERSION_ENV, code_version

from ..adapters.conftest import FAST
from ..argo_schema import ROOT, validate
from .argo_server_stand_in import StandInState, argo_server_stand_in

DIGEST = "sha256:" + "0f" * 32
IMAGES = {  # image: the code version its pods record
    "ghcr.io/retrain-suite/trainer:1.4.0": "1.4.0",
    "ghcr.io/retrain-suite/trainer:1.4.1": "1.4.1",
    "localhost:5000/trainer:3f2a9c1b7d0e": "3f2a9c1b7d0e",
    f"ghcr.io/retrain-suite/trainer@{DIGEST}": DIGEST,
    f"ghcr.io/retrain-suite/trainer:1.4.0@sha256:{'ab' * 32}": f"sha256:{'ab' * 32}",
}


def submission(
    customers: list[str], stored: dict[str, str] | None = None, spec: ArgoTrainingSpec | None = None
) -> dict[str, Any]:
    store = stored if stored is not None else {}
    document: dict[str, Any] = build_submission(
        spec or ArgoTrainingSpec(),
        table="examples",
        commit="a" * 40,
        customers=customers,
        parent_run_id="p1",
        store_artifact=store.__setitem__,
    ).to_dict()
    return document


def parameters(document: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in document["spec"]["arguments"]["parameters"]}


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
    # Packed pods: one pod per pack of customers, still capped.
    assert [shard_count(n, 500, 128) for n in (1, 128, 129, 10_000, 100_000)] == [1, 1, 2, 79, 500]
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
    params = parameters(small)
    assert json.loads(params["selection"]) == {"customers": ["a", "b"]}
    assert stored == {}
    many = [f"customer_{i:05d}" for i in range(10_000)]
    large = submission(many, stored)
    params = parameters(large)
    assert json.loads(params["selection"]) == {"parent_run_artifact": CUSTOMERS_ARTIFACT}
    assert json.loads(stored[CUSTOMERS_ARTIFACT]) == many
    assert params["shards"] == "79"  # packs of 128: 10,000 customers on 79 GPU pods
    assert params["pack-size"] == "128"
    assert large["spec"]["workflowTemplateRef"] == {"name": TEMPLATE_NAME}
    assert resolve_selection(json.dumps({"customers": ["x"]}), None, None) == ["x"]
    with pytest.raises(ValueError, match="no parent run id"):
        resolve_selection(params["selection"], None, None)


@pytest.mark.parametrize(("image", "version"), sorted(IMAGES.items()))
def test_submissions_carry_the_image_and_its_tag_or_digest(
    argo_definitions: dict[str, Any], image: str, version: str
) -> None:
    document = submission(["acme_air"], spec=ArgoTrainingSpec(image=image))
    validate(argo_definitions, "Workflow", document)
    assert (parameters(document)["image"], parameters(document)["code-version"]) == (image, version)


def test_the_template_takes_image_and_code_version_from_the_submission() -> None:
    spec = build_template(ArgoTrainingSpec()).to_dict()["spec"]
    container = spec["templates"][0]["container"]
    assert container["image"] == "{{workflow.parameters.image}}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RETRAIN_CODE_VERSION"] == "{{workflow.parameters.code-version}}"
    declared = {p["name"]: p for p in spec["arguments"]["parameters"]}
    assert [name for name in ("image", "code-version") if "value" in declared[name]] == []  # required
    committed = (ROOT / "argo_templates" / f"{TEMPLATE_NAME}.yaml").read_text()
    assert "latest" not in committed


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            "ghcr.io/retrain-suite/trainer:latest",
            "image ghcr.io/retrain-suite/trainer:latest: tag 'latest' moves",
        ),
        ("trainer:LATEST", "image trainer:LATEST: tag 'LATEST' moves from build to build"),
        ("ghcr.io/retrain-suite/trainer:main", "image ghcr.io/retrain-suite/trainer:main: tag 'main' moves"),
        (
            "ghcr.io/retrain-suite/trainer",
            "image ghcr.io/retrain-suite/trainer has no tag: name a version tag",
        ),
        ("localhost:5000/trainer", "image localhost:5000/trainer has no tag"),
        ("trainer@sha256:abc", "image trainer@sha256:abc: 'sha256:abc' is not a digest"),
        ("trainer:-bad", "image trainer:-bad: '-bad' is not a valid image tag"),
    ],
)
def test_a_moving_or_missing_tag_is_refused_before_anything_is_stored(image: str, message: str) -> None:
    stored: dict[str, str] = {}
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(")) as raised:
        submission([f"customer_{i:05d}" for i in range(10_000)], stored, ArgoTrainingSpec(image=image))
    assert "\n" not in str(raised.value)
    assert stored == {}  # no customers.json artifact for a submission that never happens


def test_different_code_versions_never_share_a_training_key(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = [image_code_version(image) for image in IMAGES]
    assert len(set(versions)) == len(IMAGES)
    keys = set()
    for version in versions:
        monkeypatch.setenv(CODE_VERSION_ENV, version)
        keys.add(training_key("acme_air", "a" * 40, code_version(), TrainingParams(), "base==1.0"))
    assert len(keys) == len(versions)
    monkeypatch.setenv(CODE_VERSION_ENV, "latest")
    with pytest.raises(InputError, match=r"^\$RETRAIN_CODE_VERSION=latest names no code version"):
        code_version()


def test_a_pod_of_a_new_image_retrains_what_the_old_image_trained(
    repo: DoltRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pods do with the code-version parameter: a new image's adapters are trained, not reused."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old, new = "ghcr.io/retrain-suite/trainer:1.4.0", f"ghcr.io/retrain-suite/trainer@{DIGEST}"
    trained = []
    for image in (old, new, old):
        monkeypatch.setenv(
            CODE_VERSION_ENV,
            parameters(submission(["acme_air"], spec=ArgoTrainingSpec(image=image)))["code-version"],
        )
        trained.append(
            train_and_register(
                repo, table="examples", commit="main", customer="acme_air", params=FAST, mlflow_uri=uri
            )
        )
    assert [(a.version, a.reused) for a in trained] == [("1", False), ("2", False), ("1", True)]
    from mlflow.tracking import MlflowClient

    versions = MlflowClient(uri).search_model_versions(f"name = '{trained[0].model_name}'")
    tags = {str(v.version): v.tags[f"{TAG_PREFIX}code_version"] for v in versions}
    assert tags == {"1": "1.4.0", "2": DIGEST}


def test_the_submitted_workflow_names_its_image_at_the_argo_server() -> None:
    state = StandInState(token="t")
    image, stored = f"ghcr.io/retrain-suite/trainer@{DIGEST}", dict[str, str]()
    workflow = build_submission(
        ArgoTrainingSpec(image=image),
        table="examples",
        commit="a" * 40,
        customers=["acme_air"],
        parent_run_id="p1",
        store_artifact=stored.__setitem__,
    )
    with argo_server_stand_in(state) as url:
        ArgoClient(url, token="t", namespace="ml-training").submit(workflow)
    (posted,) = state.submitted
    assert posted["spec"]["workflowTemplateRef"] == {"name": TEMPLATE_NAME}
    assert (parameters(posted)["image"], parameters(posted)["code-version"]) == (image, DIGEST)


def test_a_retry_finds_the_unfinished_workflow_it_submitted_and_only_that_one() -> None:
    """What lets a retried task wait for its earlier try's workflow instead of training twice."""
    state = StandInState(token="t", phases=["Running", "Running", "Succeeded"])
    head, older = "a" * 40, "b" * 40

    def submission(commit: str, submitter: str, parent: str) -> Any:
        return build_submission(
            ArgoTrainingSpec(),
            table="examples",
            commit=commit,
            customers=["acme_air", "globex_bank"],
            parent_run_id=parent,
            store_artifact=lambda name, text: pytest.fail("two customers travel inline"),
            submitter=submitter,
        )

    with argo_server_stand_in(state) as url:
        argo = ArgoClient(url, token="t", namespace="ml-training")
        argo.submit(submission(older, "task-1", "p0"))  # the same task at another commit
        ours = argo.submit(submission(head, "task-1", "p1"))
        argo.submit(submission(head, "task-2", "p2"))  # another task at the same commit
        found = unfinished_submission(argo, "task-1", head)
        assert found is not None
        assert (found.workflow, found.table, found.commit, found.parent_run_id) == (
            ours,
            "examples",
            head,
            "p1",
        )
        assert resolve_selection(found.selection, found.parent_run_id, None) == ["acme_air", "globex_bank"]
        assert unfinished_submission(argo, "task-3", head) is None
        listed = [r for r in state.requests if r.startswith("GET /api/v1/workflows/ml-training?")]
        assert "retrain%2Fsubmitter%3Dtask-1" in listed[0]  # selected by the server, not here
        assert "workflows.argoproj.io%2Fcompleted%21%3Dtrue" in listed[0]
        assert [argo.status(ours).phase for _ in state.phases] == state.phases  # each poll a step on
        assert unfinished_submission(argo, "task-1", head) is None  # over: a retry submits anew
