"""``make up``: Airflow (standalone), MLflow and a local Spark cluster on loopback, over the demo data.

Seeds the demo training repo and Hive warehouse once, starts a Hive metastore service and a Spark
standalone master with two workers (``retrain.cluster``), ``mlflow server`` on 127.0.0.1:5000 and
``airflow standalone`` (API server and UI on 127.0.0.1:8080, scheduler, DAG processor, triggerer)
with this checkout's ``dags/`` and the installed provider (its plugin included), prints where
everything is, and on Ctrl-C (or SIGTERM, or a closed terminal) stops them all with everything they
started, so nothing is left running. The DAGs' Spark tasks run on the cluster through the
metastore service, so several can run at once. ``--embedded`` keeps Spark in the tasks' own
processes on embedded Derby instead (one Spark job at a time). Everything lives under ``var/up``;
``--airflow-port`` and ``--mlflow-port`` move the two UIs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from retrain import processes
from retrain.cluster import LocalCluster, ServiceError, local_cluster
from retrain.cluster.process import port_open
from retrain.outputs import UP_HOME, OutputPathError, claim

ROOT = Path(__file__).resolve().parents[2]
SPARK_POOL = "hive_embedded"
SPARK_POOL_ENV = "AIRFLOW__RETRAIN__SPARK_POOL"
STOP_GRACE = 60.0  # seconds for a service to shut down after SIGTERM before it is killed


def service_env(
    home: Path, *, mlflow_port: int = 5000, airflow_port: int = 8080, cluster: LocalCluster | None = None
) -> dict[str, str]:
    """The environment Airflow's processes and the suite's tasks share.

    :param cluster: run Spark on it, through its metastore service; None keeps embedded Derby, which
        admits one Spark job at a time, so the Spark tasks then share the one-slot pool ``SPARK_POOL``.
    """
    home = home.resolve()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # airflow, mlflow, spark-submit
        "PYSPARK_PYTHON": sys.executable,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,operator:op,viewer:viewer",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{airflow_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{airflow_port}/execution/",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW_CONN_DOLT_DEFAULT": json.dumps(
            {"conn_type": "dolt", "extra": {"path": str(home / "training.db")}}
        ),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # The warehouse of the `retrain` CLI too (the Airflow-free core reads no Airflow config).
        "RETRAIN_WAREHOUSE": str(home / "warehouse"),
        # The provider's [retrain] section (retrain_airflow.settings), set the way a deployment would.
        **{
            f"AIRFLOW__RETRAIN__{option.upper()}": value
            for option, value in {
                "data_docs_dir": str(home / "data_docs"),
                "scoring_cache": str(home / "scoring"),
                "reports_dir": str(home / "reports"),
                "handoff_path": f"file://{home / 'handoff'}",
            }.items()
        },
        "PYTHONPATH": str(ROOT),
    }
    if cluster is None:
        env[SPARK_POOL_ENV] = SPARK_POOL
    else:
        env.update(cluster.env())
        env.pop(SPARK_POOL_ENV, None)  # one from the shell would serialize the tasks again
    env["AIRFLOW__RETRAIN__WAREHOUSE"] = env["RETRAIN_WAREHOUSE"]  # the cluster's, when there is one
    return env


def start_mlflow(home: Path, env: dict[str, str], port: int = 5000) -> subprocess.Popen[bytes]:
    store = (home / "mlflow").resolve()
    store.mkdir(parents=True, exist_ok=True)
    command = [
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
    ]
    health = f"http://127.0.0.1:{port}/health"
    return start_service(command, env, home / "mlflow.log", health, "MLflow server", timeout=120)


def prepare_airflow(env: dict[str, str]) -> None:
    """Migrate the metadata DB and, on embedded Derby, create the one-slot pool it needs."""
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    if env.get(SPARK_POOL_ENV) != SPARK_POOL:
        return
    subprocess.run(
        ["airflow", "pools", "set", SPARK_POOL, "1", "embedded Derby metastore: one Spark job at a time"],
        env=env,
        check=True,
        capture_output=True,
    )


def start_airflow(home: Path, env: dict[str, str], port: int = 8080) -> subprocess.Popen[bytes]:
    # An API server left from an earlier run (or one still shutting down) would answer the health
    # check below for the new one, then go away.
    wait_until_closed(port, "Airflow API server", timeout=60)
    health = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    return start_service(
        ["airflow", "standalone"], env, home / "airflow.log", health, "Airflow API server", timeout=300
    )


def start_service(
    command: list[str], env: dict[str, str], log: Path, health: str, what: str, timeout: float
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, logging to ``log``; return once ``health`` answers.

    If it does not, or the wait is interrupted (Ctrl-C), it is stopped before the error propagates.
    """
    with log.open("ab") as output:  # the child keeps its own descriptor
        server = processes.start(command, env=env, output=output)
    try:
        wait_for(health, what, server, timeout)
    except BaseException:
        stop(server)
        raise
    return server


def unpause_when_parsed(env: dict[str, str], dag_id: str, timeout: float = 120) -> None:
    """Unpause ``dag_id`` as soon as the DAG processor has stored it (DAGs start paused)."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(["airflow", "dags", "unpause", dag_id], env=env, capture_output=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"could not unpause {dag_id}: {done.stderr.decode(errors='replace')[-500:]}")
        time.sleep(3)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a service and all it started (Airflow: its scheduler, triggerer, DAG processor and tasks)."""
    processes.stop(process, grace=STOP_GRACE)


def wait_until_closed(port: int, what: str, timeout: float) -> None:
    """Wait for nothing to listen on ``port``; raise naming ``what`` when something still does."""
    deadline = time.monotonic() + timeout
    while port_open(port):
        if time.monotonic() > deadline:
            raise ServiceError(f"port {port} for the {what} is still in use after {timeout:.0f}s")
        time.sleep(0.5)


def wait_for(url: str, what: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{what} exited with code {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise ServiceError(f"{what} did not answer {url} within {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path("var/up"))
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="no Spark cluster: Spark in the tasks' processes on embedded Derby, one Spark job at a time",
    )
    parser.add_argument("--airflow-port", type=int, default=8080, help="Airflow's UI and API (default 8080)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow's UI and API (default 5000)")
    args = parser.parse_args()
    ports = {"airflow_port": args.airflow_port, "mlflow_port": args.mlflow_port}
    # A closed terminal or a `kill` stops the services as Ctrl-C does, instead of orphaning them.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        home = claim(args.home, UP_HOME)  # seeded, migrated and written by the services below
    except OutputPathError as error:
        raise SystemExit(f"make up: {error}") from None
    try:
        if not (home / "training.db").exists():
            # Seeded on embedded Derby before the metastore service opens the same database.
            print("seeding the demo training repo and Hive warehouse ...", flush=True)
            subprocess.run(
                [
                    "retrain",
                    "demo-data",
                    "--repo",
                    str(home / "training.db"),
                    "--warehouse",
                    str(home / "warehouse"),
                ],
                env=service_env(home, **ports),
                check=True,
            )
        if args.embedded:
            run_services(home, service_env(home, **ports), _EMBEDDED.format(home=home), **ports)
            return
        print("starting the Hive metastore and the Spark cluster ...", flush=True)
        with local_cluster(home / "cluster", warehouse=home / "warehouse") as cluster:
            summary = _CLUSTER.format(cluster=cluster, logs=cluster.log_dir, seconds=cluster.started_in)
            run_services(home, service_env(home, cluster=cluster, **ports), summary, **ports)
    except ServiceError as error:  # which service, its port and its log's tail say enough
        raise SystemExit(f"make up: {error}") from None
    except KeyboardInterrupt:
        pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_services(
    home: Path, env: dict[str, str], spark_summary: str, *, airflow_port: int, mlflow_port: int
) -> None:
    """Run MLflow and Airflow until one exits or Ctrl-C, then stop both."""
    with ExitStack() as running:  # each stopped even when stopping another is interrupted
        mlflow = start_mlflow(home, env, mlflow_port)
        running.callback(stop, mlflow)
        prepare_airflow(env)
        airflow = start_airflow(home, env, airflow_port)
        running.callback(stop, airflow)
        unpause_when_parsed(env, "retrain_on_commit")  # the demo's point: commit and watch it run
        passwords = Path(env["AIRFLOW_HOME"]) / PASSWORDS_FILE
        summary = _SUMMARY.format(
            home=home, passwords=passwords, spark=spark_summary, airflow=airflow_port, mlflow=mlflow_port
        )
        print(summary, flush=True)
        while airflow.poll() is None and mlflow.poll() is None:
            time.sleep(2)


PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
_SUMMARY = """
Airflow UI      http://127.0.0.1:{airflow}  (users admin, operator, viewer; passwords in {passwords})
Releases view   http://127.0.0.1:{airflow}/plugin/releases
MLflow UI       http://127.0.0.1:{mlflow}
Dolt repo       {home}/training.db  (retrain_on_commit is unpaused: its first run trains every
                customer; after that, commit to the repo and a run retrains the changed ones)
{spark}
Logs            {home}/airflow.log, {home}/mlflow.log
Ctrl-C stops them all."""
_CLUSTER = """Spark master    {cluster.master_url}  (UI {cluster.master_ui_url}; up in {seconds:.0f}s)
Hive metastore  {cluster.metastore_uri}  (warehouse {cluster.warehouse})
Spark logs      {logs}/  (metastore, master, workers; executors under the workers' directories)"""
_EMBEDDED = """Hive warehouse  {home}/warehouse  (embedded Derby metastore: Spark tasks run one at a time)"""


if __name__ == "__main__":
    main()
