"""The few Airflow REST API calls that ``make up``'s end-to-end test and benchmark need, as admin.

Plain HTTP against ``/api/v2`` (no Airflow import): the core library stays Airflow-free.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from retrain.demo.up import PASSWORDS_FILE


class AirflowApi:
    """An admin session on the API server of ``airflow standalone`` started by :mod:`retrain.demo.up`."""

    def __init__(self, port: int, airflow_home: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        password = json.loads((airflow_home / PASSWORDS_FILE).read_text())["admin"]
        self.token = ""
        self.token = self.call("/auth/token", "POST", {"username": "admin", "password": password})[
            "access_token"
        ]

    def call(self, path: str, method: str = "GET", body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
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
        return list(self.call(f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after")["dag_runs"])

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 600) -> list[dict[str, Any]]:
        """Wait until ``count`` runs exist and all succeeded; raise at once when one failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
            if failed:
                states = self.task_states(dag_id, failed[0])
                raise RuntimeError(f"{dag_id}: failed runs {failed}; task states of the first: {states}")
            if len(runs) >= count and all(r["state"] == "success" for r in runs):
                return runs
            time.sleep(5)
        raise TimeoutError(
            f"{dag_id}: wanted {count} finished runs within {timeout:.0f}s, have {self.runs(dag_id)}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.call(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}

    def xcom_keys(self, dag_id: str, run_id: str, task_id: str) -> list[str]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries"
        return [entry["key"] for entry in self.call(path)["xcom_entries"]]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.call(path + "?deserialize=true&stringify=false")["value"]
