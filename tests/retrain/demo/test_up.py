"""``make up``: its environment (Spark on the local cluster and no one-slot pool, or embedded Derby with it),
the home it refuses, and Ctrl-C leaving nothing running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from retrain import processes
from retrain.cluster import LocalCluster, ServiceError
from retrain.cluster.process import free_port
from retrain.demo.seed import seed_training_repo
from retrain.demo.up import SPARK_POOL, SPARK_POOL_ENV, main, service_env, wait_until_closed
from retrain.outputs import UP_HOME, claim

from ...leftovers import leftovers


def cluster(tmp_path: Path) -> LocalCluster:
    return LocalCluster(
        master_url="spark://127.0.0.1:7077",
        master_ui_url="http://127.0.0.1:8081",
        metastore_uri="thrift://127.0.0.1:9083",
        warehouse=tmp_path / "warehouse",
        log_dir=tmp_path / "logs",
        worker_dirs=(tmp_path / "worker-1", tmp_path / "worker-2"),
        started_in=12.0,
    )


def test_with_the_cluster_spark_tasks_use_it_and_the_default_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SPARK_POOL_ENV, SPARK_POOL)  # left in the shell by an embedded run
    env = service_env(tmp_path, cluster=cluster(tmp_path))
    assert env["RETRAIN_SPARK_MASTER"] == "spark://127.0.0.1:7077"
    assert env["RETRAIN_HIVE_METASTORE"] == "thrift://127.0.0.1:9083"
    assert env["RETRAIN_WAREHOUSE"] == env["AIRFLOW__RETRAIN__WAREHOUSE"] == str(tmp_path / "warehouse")
    assert SPARK_POOL_ENV not in env


def test_embedded_derby_keeps_the_one_slot_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRAIN_HIVE_METASTORE", raising=False)
    monkeypatch.delenv("RETRAIN_SPARK_MASTER", raising=False)
    env = service_env(tmp_path)
    assert env[SPARK_POOL_ENV] == SPARK_POOL
    assert env["RETRAIN_WAREHOUSE"] == str(tmp_path.resolve() / "warehouse")
    assert "RETRAIN_HIVE_METASTORE" not in env


def test_make_up_refuses_a_home_it_did_not_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.setattr(sys, "argv", ["up", "--home", str(tmp_path)])
    with pytest.raises(SystemExit) as raised:
        main()
    assert str(raised.value.code).startswith(f"make up: refusing to write into {tmp_path}: it is not empty")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_new_airflow_waits_for_the_old_ones_port_and_names_it_when_it_stays_taken() -> None:
    """A restart must not take the old API server's answers for the new one's."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with pytest.raises(ServiceError, match=f"port {port} for the Airflow API server is still in use"):
        wait_until_closed(port, "Airflow API server", timeout=1)
    threading.Timer(1.0, listener.close).start()
    wait_until_closed(port, "Airflow API server", timeout=30)  # returns once the old one let go


def mlflow_children(up: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """What MLflow's server, started by ``up``, has started itself (uvicorn and its workers, a job runner)."""
    try:
        for child in psutil.Process(up.pid).children():
            if child.cmdline()[1:3] == [str(Path(sys.executable).with_name("mlflow")), "server"]:
                return list(child.children(recursive=True))
    except psutil.Error:
        pass
    return []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_while_a_service_starts_leaves_nothing_behind(tmp_path: Path) -> None:
    """make up's Ctrl-C at its hardest: MLflow's server has started workers but does not answer yet.

    Once everything runs, Ctrl-C takes the same path, to the same stop (tests/retrain/test_processes.py
    stops a process tree like Airflow's).
    """
    home = claim(tmp_path / "up", UP_HOME)
    seed_training_repo(home / "training.db", customers=2, examples=10)  # make up seeds no more
    ports = ["--airflow-port", str(free_port()), "--mlflow-port", str(free_port())]
    command = [sys.executable, "-m", "retrain.demo.up", "--home", str(home), "--embedded", *ports]
    with (tmp_path / "up.log").open("wb") as log:  # its own session: the Ctrl-C below is for it only
        up = processes.start(command, output=log)
    try:
        deadline = time.monotonic() + 240
        while not mlflow_children(up):
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "MLflow's server started no workers"
            time.sleep(0.2)
        os.killpg(up.pid, signal.SIGINT)  # what the terminal sends to the foreground group on Ctrl-C
        assert up.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()[-3000:]
    finally:
        processes.stop(up)
    assert leftovers([home]) == []
