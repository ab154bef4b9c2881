"""End to end: real Airflow (standalone: API server, scheduler, DAG processor, triggerer), real MLflow
server, doltlite repo and Hive warehouse. Commits become retrain_on_commit runs, across a restart,
each exactly once."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from retrain.cluster.process import free_port
from retrain.demo.airflow_api import AirflowApi
from retrain.demo.up import prepare_airflow, service_env, start_airflow, start_mlflow, stop
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement

DAG_ID = "retrain_on_commit"
POLL_SECONDS = 5


def edit(repo_path: Path, customer: str) -> str:
    with DoltRepository.open(str(repo_path)) as repo:
        update = "UPDATE examples SET text = text || ' (edited)' WHERE customer_id = ?"
        repo.execute(Statement(update, (customer,)))
        return repo.commit(f"edit {customer}'s examples")


@pytest.mark.slow
@pytest.mark.timeout(900)  # three runs and a restart: ~6 min on 2 quiet cores, more when loaded
def test_each_commit_is_retrained_once_across_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "up"
    home.mkdir()
    mlflow_port, airflow_port = free_port(), free_port()
    env = service_env(home, mlflow_port=mlflow_port, airflow_port=airflow_port)
    env["AIRFLOW__RETRAIN__COMMIT_POLL_SECONDS"] = str(POLL_SECONDS)  # a commit seen sooner than 30 s
    today = dt.datetime.now(dt.UTC).date()
    subprocess.run(
        [
            "retrain",
            "demo-data",
            "--repo",
            str(home / "training.db"),
            "--warehouse",
            str(home / "warehouse"),
            "--customers",
            "3",
            "--examples",
            "80",
            "--start",
            today.isoformat(),
            "--days",
            "1",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    with ExitStack() as services:  # each service stopped, with all it started, however the test ends
        services.callback(stop, start_mlflow(home, env, mlflow_port))
        prepare_airflow(env)
        with ExitStack() as first_airflow:
            first_airflow.callback(stop, start_airflow(home, env, airflow_port))
            second_commit = first_two_runs(AirflowApi(airflow_port, home / "airflow"), env, home, today)

        # The restart: scheduler and triggerer went down with it; the watermark lives in Dolt.
        services.callback(stop, start_airflow(home, env, airflow_port))
        airflow = AirflowApi(airflow_port, home / "airflow")
        third_commit = edit(home / "training.db", "globex_bank")
        runs = airflow.wait_for_runs(DAG_ID, 3)
        time.sleep(3 * POLL_SECONDS)  # a duplicate event would have made a 4th run by now
        runs = airflow.wait_for_runs(DAG_ID, 3)
        assert len(runs) == 3, [r["dag_run_id"] for r in runs]
        changed = airflow.xcom(DAG_ID, runs[-1]["dag_run_id"], "changed_customers")
        assert (changed["previous_commit"], changed["commit"]) == (second_commit, third_commit)
        assert changed["changed_keys"] == ["globex_bank"]
        with DoltRepository.open(str(home / "training.db")) as repo:
            assert repo.resolve(f"retrain/{DAG_ID}/done") == third_commit


def first_two_runs(airflow: AirflowApi, env: dict[str, str], home: Path, today: dt.date) -> str:
    """Run 1 trains every customer; a commit to one makes run 2, which retrains only it. Its commit."""
    airflow.unpause(DAG_ID)
    first = airflow.wait_for_runs(DAG_ID, 1)[-1]  # no watermark yet: every customer
    initial = airflow.xcom(DAG_ID, first["dag_run_id"], "changed_customers")
    assert initial["all_changed"] is True

    registry = MlflowClient(env["MLFLOW_TRACKING_URI"])
    release_1 = airflow.xcom(DAG_ID, first["dag_run_id"], "release")["release_id"]
    second_commit = edit(home / "training.db", "acme_air")
    second = airflow.wait_for_runs(DAG_ID, 2)[-1]
    changed = airflow.xcom(DAG_ID, second["dag_run_id"], "changed_customers")
    assert (changed["previous_commit"], changed["commit"]) == (initial["commit"], second_commit)
    assert changed["changed_keys"] == ["acme_air"]
    versions = {
        c: len(registry.search_model_versions(f"name = 'adapter-{c}'"))
        for c in ("acme_air", "globex_bank", "initech_saas")
    }
    assert versions == {"acme_air": 2, "globex_bank": 1, "initech_saas": 1}  # only the changed one
    release_2 = airflow.xcom(DAG_ID, second["dag_run_id"], "release")["release_id"]
    assert release_2 != release_1
    partition = home / "warehouse" / "scores" / f"ds={today}" / f"release={release_2}"
    (attempt,) = partition.glob("attempt-*")
    assert len(pd.read_parquet(attempt)) == 3 * 20  # today's requests of 3 customers
    return second_commit
