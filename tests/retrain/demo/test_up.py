"""``make up``'s environment: Spark on the local cluster and no one-slot pool, or embedded Derby with it."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from retrain.cluster import LocalCluster, ServiceError
from retrain.demo.up import SPARK_POOL, SPARK_POOL_ENV, main, service_env, wait_until_closed


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
