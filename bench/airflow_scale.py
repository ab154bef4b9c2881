"""Benchmark: one ``retrain_scheduled`` run over N customers (default 1,000) under ``make up``'s services.

Seeds a training repo of N customers and a week of ``requests`` partitions, starts what ``make up``
starts (a Hive metastore service and a Spark standalone cluster, ``mlflow server``, ``airflow
standalone``) on free loopback ports, unpauses ``retrain_scheduled`` and follows its scheduled run
to the end: task states as they change, the training fan-out's progress from the task's log. Then
prints each task's duration, the size of every XCom value the run stored (none may grow with N
beyond :data:`~retrain_airflow.handoff.HANDOFF_LIMIT`; larger lists travel as handoff files) and
the files handed off. Exits non-zero when the run fails or an XCom is over the bound.

Run: ``make scale-airflow`` or ``.venv/bin/python bench/airflow_scale.py [--customers 1000] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from retrain.cluster.local import local_cluster
from retrain.cluster.process import free_port
from retrain.demo.airflow_api import AirflowApi
from retrain.demo.up import prepare_airflow, service_env, start_airflow, start_mlflow, stop
from retrain.outputs import BENCH_WORK, OutputPathError, claim
from retrain_airflow.handoff import HANDOFF_LIMIT

DAG_ID = "retrain_scheduled"
XCOM_SLACK = 1_024  # the envelope around a handed-off list: its reference and count
DAYS = 8  # request partitions up to today: whichever day the scheduled run's ds is, it has rows
PROGRESS = re.compile(r"\[(\d+)/(\d+)\] done .*? ([\d.]+) adapters/min")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--examples", type=int, default=40, help="examples per customer")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds to wait for the run")
    parser.add_argument("--keep", type=Path, help="keep the services' home here instead of a temporary one")
    args = parser.parse_args()
    try:  # a kept home starts over each run, and only ever one an earlier run marked
        home = (
            claim(args.keep, BENCH_WORK, fresh=True)
            if args.keep
            else Path(tempfile.mkdtemp(prefix="retrain-airflow-scale-")).resolve()
        )
    except OutputPathError as error:
        parser.error(str(error))
    try:
        run(home, args.customers, args.examples, args.timeout)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def run(home: Path, customers: int, examples: int, timeout: float) -> None:
    today = dt.datetime.now(dt.UTC).date()
    started = time.monotonic()
    # Seeded on embedded Derby before the metastore service opens the same database, as make up does.
    subprocess.run(
        [
            "retrain",
            "demo-data",
            "--repo",
            str(home / "training.db"),
            "--warehouse",
            str(home / "warehouse"),
            "--customers",
            str(customers),
            "--examples",
            str(examples),
            "--start",
            (today - dt.timedelta(days=DAYS - 1)).isoformat(),
            "--days",
            str(DAYS),
        ],
        env=service_env(home),
        check=True,
        capture_output=True,
    )
    print(
        f"seeded {customers} customers x {examples} examples and {DAYS} days of requests "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    mlflow_port, airflow_port = free_port(), free_port()
    with local_cluster(home / "cluster", warehouse=home / "warehouse") as cluster:
        print(
            f"cluster up in {cluster.started_in:.0f} s: {cluster.master_url} (UI {cluster.master_ui_url}), "
            f"{cluster.metastore_uri}",
            flush=True,
        )
        env = service_env(home, mlflow_port=mlflow_port, airflow_port=airflow_port, cluster=cluster)
        mlflow = start_mlflow(home, env, mlflow_port)
        airflow = None
        try:
            prepare_airflow(env)
            airflow = start_airflow(home, env, airflow_port)
            api = AirflowApi(airflow_port, home / "airflow")
            print(
                f"Airflow http://127.0.0.1:{airflow_port}, MLflow http://127.0.0.1:{mlflow_port}", flush=True
            )
            api.unpause(DAG_ID)
            dag_run = follow(api, home / "airflow" / "logs", timeout)
            ok = report(api, dag_run, home)
        finally:
            if airflow is not None:
                stop(airflow)
            stop(mlflow)
    if not ok:
        raise SystemExit(1)


def follow(api: AirflowApi, logs: Path, timeout: float) -> dict[str, Any]:
    """Print task states as they change and the training progress; return the finished run."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    last_progress = ""
    started = time.monotonic()
    while time.monotonic() < deadline:
        runs = api.runs(DAG_ID)
        if runs:
            dag_run = runs[0]
            states = api.task_states(DAG_ID, dag_run["dag_run_id"])
            for task, state in states.items():
                if seen.get(task) != state:
                    print(f"[{time.monotonic() - started:6.0f} s] {task}: {state}", flush=True)
            seen = states
            progress = training_progress(logs)
            if progress and progress != last_progress:
                print(f"[{time.monotonic() - started:6.0f} s] train: {progress}", flush=True)
                last_progress = progress
            if dag_run["state"] in ("success", "failed"):
                return dag_run
        time.sleep(15)
    raise TimeoutError(f"{DAG_ID}: no finished run within {timeout:.0f} s")


def training_progress(logs: Path) -> str:
    """The newest ``[k/N] done`` line of the train task's log, as ``k/N adapters, R adapters/min``."""
    found = ""
    for log in logs.glob(f"dag_id={DAG_ID}/*/task_id=train/*.log"):
        for match in PROGRESS.finditer(log.read_text(errors="replace")):
            found = f"{match[1]}/{match[2]} adapters, {match[3]} adapters/min"
    return found


def report(api: AirflowApi, dag_run: dict[str, Any], home: Path) -> bool:
    run_id = dag_run["dag_run_id"]
    print(f"\n== {DAG_ID} run {run_id}: {dag_run['state']} ==")
    print(f"{'task':<22}{'state':<10}{'seconds':>9}   XCom values (JSON bytes)")
    largest = 0
    for task in sorted(api.task_instances(DAG_ID, run_id), key=lambda t: t["start_date"] or "~"):
        sizes = {}
        for key in api.xcom_keys(DAG_ID, run_id, task["task_id"]):
            sizes[key] = len(json.dumps(api.xcom(DAG_ID, run_id, task["task_id"], key)))
        largest = max([largest, *sizes.values()])
        values = ", ".join(f"{key} {size:,}" for key, size in sizes.items()) or "-"
        print(f"{task['task_id']:<22}{task['state']:<10}{task['duration'] or 0:>9.1f}   {values}")
    handoffs = sorted((home / "handoff").rglob("*.json")) if (home / "handoff").is_dir() else []
    for path in handoffs:
        print(f"handed off: {path.relative_to(home)} ({path.stat().st_size:,} bytes)")
    bound = HANDOFF_LIMIT + XCOM_SLACK
    verdict = "met" if largest <= bound else "MISSED"
    print(f"largest XCom value: {largest:,} bytes (bound {bound:,}): {verdict}")
    return dag_run["state"] == "success" and largest <= bound


if __name__ == "__main__":
    main()
