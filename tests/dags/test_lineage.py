"""One run of ``retrain_on_commit`` sends OpenLineage events, through OpenLineage's own file transport,
whose inputs and outputs name the Dolt commit, the model versions, the release and the partition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mlflow.tracking import MlflowClient

from retrain.demo.seed import SeededRepository, seed_training_repo
from retrain.dolt import DoltRepository
from retrain.dolt.watermark import CommitWatermark
from retrain.release.store import ReleaseStore

from .test_dagbag import DAGS

SCHEMAS = Path(__file__).resolve().parents[2] / "operators" / "retrain_airflow" / "schemas"


def completed(events_file: Path) -> dict[str, dict[str, Any]]:
    """Each task's COMPLETE event, by task id."""
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    return {
        e["job"]["name"].removeprefix("retrain_on_commit."): e
        for e in events
        if e["eventType"] == "COMPLETE" and "." in e["job"]["name"]
    }


def datasets(event: dict[str, Any], side: str) -> dict[str, dict[str, Any]]:
    return {f"{d['namespace']}/{d['name']}": d for d in event[side]}


def check_facet(name: str, facet: dict[str, Any]) -> None:
    """``facet`` holds what the JSON Schema shipped for it requires (its own part of the schema)."""
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    _, own = schema["$defs"][name]["allOf"]
    jsonschema.validate(facet, own)
    assert facet["_schemaURL"].endswith(f"/{name}.json#/$defs/{name}")


@pytest.mark.slow
def test_a_commit_run_sends_the_lineage_of_commit_models_release_and_partition(
    airflow_db: Path, tmp_path: Path
) -> None:
    seeded: SeededRepository = seed_training_repo(tmp_path / "training.db", customers=2, examples=20)
    first, head = seeded.commits
    with DoltRepository.open(str(seeded.path)) as repo:
        watermark = CommitWatermark(repo, "retrain_on_commit")
        watermark.advance(first)  # an earlier run covered the first commit: the range is first..head
        commit_range = watermark.sense("examples", "customer_id")
    assert commit_range is not None
    (changed,) = seeded.changed_in_last_commit
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    events_file = tmp_path / "openlineage.jsonl"
    dag_file = airflow_db / "dags" / "retrain_on_commit.py"
    dag_file.write_text((DAGS / "retrain_on_commit.py").read_text())
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "AIRFLOW_CONN_DOLT_DEFAULT": json.dumps({"conn_type": "dolt", "extra": {"path": str(seeded.path)}}),
        "AIRFLOW_VAR_RETRAIN_DATA_DOCS_DIR": str(tmp_path / "docs"),
        "AIRFLOW_VAR_RETRAIN_WAREHOUSE": str(tmp_path / "warehouse"),
        "AIRFLOW_VAR_RETRAIN_SCORING_CACHE": str(tmp_path / "scoring"),
        # OpenLineage's documented settings: its file transport, one JSON event per line.
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "retrain-test",
        # Extraction in a thread of the task's process rather than a fork of it: dag.test() runs every
        # task in this one process, which holds a JVM (Spark) that a fork would copy.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
    }
    script, outcome = Path(__file__).with_name("lineage_run.py"), tmp_path / "outcome.json"
    payload = json.dumps(commit_range.to_payload())
    result = subprocess.run(
        [sys.executable, str(script), str(dag_file), str(tmp_path / "warehouse"), payload, str(outcome)],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert json.loads(outcome.read_text())["state"] == "success", result.stdout[-8000:]

    release = ReleaseStore(MlflowClient(uri), uri).latest()
    assert release is not None
    events = completed(events_file)
    dolt = f"doltlite/{seeded.path.resolve()}.examples"
    model, releases = f"mlflow+{uri}/adapter-{changed}", f"mlflow+{uri}/retrain-releases"

    for task in ("validate", "train"):  # the table at the commit, and the range it covered
        table = datasets(events[task], "inputs")[dolt]
        assert table["facets"]["version"]["datasetVersion"] == head
        dolt_commit = table["facets"]["retrainDoltCommit"]
        check_facet("RetrainDoltCommitDatasetFacet", dolt_commit)
        assert (dolt_commit["commit"], dolt_commit["previousCommit"]) == (head, first)

    (trained,) = datasets(events["train"], "outputs").values()  # only the changed customer retrained
    assert f"{trained['namespace']}/{trained['name']}" == model
    assert trained["facets"]["version"]["datasetVersion"] == "1"
    training = trained["facets"]["retrainTraining"]
    check_facet("RetrainTrainingDatasetFacet", training)
    version = MlflowClient(uri).get_model_version(f"adapter-{changed}", "1")
    assert training == {
        **training,
        "trainingKey": version.tags["retrain.training_key"],
        "codeVersion": version.tags["retrain.code_version"],
    }

    assert datasets(events["release"], "inputs")[model]["facets"]["version"]["datasetVersion"] == "1"
    (released,) = datasets(events["release"], "outputs").values()
    assert f"{released['namespace']}/{released['name']}" == releases
    assert released["facets"]["version"]["datasetVersion"] == release.release_id

    scored_inputs, scored_outputs = (datasets(events["score_today"], side) for side in ("inputs", "outputs"))
    hive = f"hive+{(tmp_path / 'warehouse').resolve().as_uri()}"
    assert scored_inputs[releases]["facets"]["version"]["datasetVersion"] == release.release_id
    (read,) = scored_inputs[f"{hive}/default.requests"]["inputFacets"]["subset"]["inputCondition"][
        "partitions"
    ]
    (written,) = scored_outputs[f"{hive}/default.scores"]["outputFacets"]["subset"]["outputCondition"][
        "partitions"
    ]
    ds = read["dimensions"]["ds"]
    assert (read["identifier"], written["identifier"]) == (
        f"ds={ds}",
        f"ds={ds}/release={release.release_id}",
    )
    assert written["dimensions"] == {"ds": ds, "release": release.release_id}
