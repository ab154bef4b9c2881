"""ReleaseManifestOperator in real ``dag.test()`` runs over a real MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.release.store import ReleaseStore

from ..dag_files import load_dag

DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.release import ReleaseManifestOperator

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    ReleaseManifestOperator(
        task_id="release", action="build", candidates={candidates!r}, failures={failures!r}
    )
"""


def dag_with(home: Path, dag_id: str, candidates: Any, failures: Any = None) -> Any:
    return load_dag(home, dag_id, DAG_SOURCE.format(dag_id=dag_id, candidates=candidates, failures=failures))


@pytest.mark.slow
def test_build_promotes_candidates_and_registers_the_release(
    airflow_db: Path, repo: DoltRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    fast = TrainingParams(epochs=1, min_examples=10)
    trained = {
        c: {
            "version": train_and_register(
                repo, table="examples", commit="main", customer=c, params=fast
            ).version
        }
        for c in ("acme_air", "globex_bank")
    }
    run = dag_with(airflow_db, "release_build", trained).test()
    assert run.state == "success"
    result = run.get_task_instance("release").xcom_pull(task_ids="release")
    store = ReleaseStore(MlflowClient(uri), uri)
    assert result["release_id"] == store.production_manifest().release_id == store.latest().release_id  # type: ignore[union-attr]
    assert [p["promoted"] for p in result["promotions"]] == [True, True]

    failed = dag_with(airflow_db, "release_bad_candidates", "{'acme_air': '1'}").test()
    assert failed.state == "failed"

    # A partial release: acme_air retrained, globex_bank's training failed and keeps its adapter.
    retrained = train_and_register(repo, table="examples", commit="main", customer="acme_air", params=fast,
                                   force=True)  # fmt: skip
    reasons = {"globex_bank": "RuntimeError: worker crashed"}
    partial = dag_with(airflow_db, "release_partial", {"acme_air": retrained.version}, reasons).test()
    assert partial.state == "success"
    release_id = partial.get_task_instance("release").xcom_pull(task_ids="release")["release_id"]
    assert store.failures(release_id) == reasons
    kept = store.manifest(release_id).by_customer()["globex_bank"]
    assert kept.version == trained["globex_bank"]["version"]
