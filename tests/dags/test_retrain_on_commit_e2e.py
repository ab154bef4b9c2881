"""End to end: real Airflow (standalone: API server, scheduler, DAG processor, triggerer), real MLflow
server, doltlite repo and Hive warehouse. Commits become retrain_on_commit runs, across a restart,
each exactly once."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from retrain.demo.up import PASSWORDS_FILE, prepare_airflow, service_env, start_airflow, start_mlflow, stop
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement

DAG_ID = "retrain_on_commit"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Airflow:
    """The few REST calls the test needs, as the admin user."""

    def __init__(self, port: int, home: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        password = json.loads((home / "airflow" / PASSWORDS_FILE).read_text())["admin"]
        login = {"username": "admin", "password": password}
        self.token = self.call("/auth/token", "POST", login)["access_token"]

    def call(self, path: str, method: str = "GET", body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def unpause(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the DAG processor has to store the DAG first
            try:
                self.call(f"/api/v2/dags/{dag_id}", "PATCH", {"is_paused": False})
                return
            except urllib.error.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        found = self.call(f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after")["dag_runs"]
        return list(found)

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 600) -> list[dict[str, Any]]:
        """Wait until ``count`` runs exist and all finished; fail at once if one failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
            assert not failed, f"failed runs: {failed}; task states: {self.task_states(dag_id, failed[0])}"
            if len(runs) >= count and all(r["state"] == "success" for r in runs):
                return runs
            time.sleep(5)
        raise AssertionError(f"{dag_id}: wanted {count} finished runs, have {self.runs(dag_id)}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        found = self.call(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in found}

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.call(path + "?deserialize=true&stringify=false")["value"]


def edit(repo_path: Path, customer: str) -> str:
    with DoltRepository.open(str(repo_path)) as repo:
        update = "UPDATE examples SET text = text || ' (edited)' WHERE customer_id = ?"
        repo.execute(Statement(update, (customer,)))
        return repo.commit(f"edit {customer}'s examples")


@pytest.mark.slow
def test_each_commit_is_retrained_once_across_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "up"
    home.mkdir()
    mlflow_port, airflow_port = free_port(), free_port()
    env = service_env(home, mlflow_port=mlflow_port, airflow_port=airflow_port)
    today = dt.datetime.now(dt.UTC).date()
    subprocess.run(
        ["retrain", "demo-data", "--repo", str(home / "training.db"), "--warehouse", str(home / "warehouse"),
         "--customers", "3", "--examples", "40", "--start", today.isoformat(), "--days", "1"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    mlflow_server = start_mlflow(home, env, mlflow_port)
    airflow_server = None
    try:
        prepare_airflow(env)
        airflow_server = start_airflow(home, env, airflow_port)
        airflow = Airflow(airflow_port, home)
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
        versions = {c: len(registry.search_model_versions(f"name = 'adapter-{c}'"))
                    for c in ("acme_air", "globex_bank", "initech_saas")}  # fmt: skip
        assert versions == {"acme_air": 2, "globex_bank": 1, "initech_saas": 1}  # only the changed one
        release_2 = airflow.xcom(DAG_ID, second["dag_run_id"], "release")["release_id"]
        assert release_2 != release_1
        partition = home / "warehouse" / "scores" / f"ds={today}" / f"release={release_2}"
        (attempt,) = partition.glob("attempt-*")
        assert len(pd.read_parquet(attempt)) == 3 * 20  # today's requests of 3 customers

        stop(airflow_server)  # scheduler and triggerer go down; the watermark lives in Dolt
        airflow_server = start_airflow(home, env, airflow_port)
        airflow = Airflow(airflow_port, home)
        third_commit = edit(home / "training.db", "globex_bank")
        runs = airflow.wait_for_runs(DAG_ID, 3)
        time.sleep(45)  # a duplicate event would have made a 4th run by now (the trigger polls every 30 s)
        runs = airflow.wait_for_runs(DAG_ID, 3)
        assert len(runs) == 3, [r["dag_run_id"] for r in runs]
        changed = airflow.xcom(DAG_ID, runs[-1]["dag_run_id"], "changed_customers")
        assert (changed["previous_commit"], changed["commit"]) == (second_commit, third_commit)
        assert changed["changed_keys"] == ["globex_bank"]
        with DoltRepository.open(str(home / "training.db")) as repo:
            assert repo.resolve(f"retrain/{DAG_ID}/done") == third_commit
    finally:
        if airflow_server is not None:
            stop(airflow_server)
        stop(mlflow_server)
