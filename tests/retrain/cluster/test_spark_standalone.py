"""The standalone cluster's commands and health check, against a stand-in master UI."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from retrain.cluster import process
from retrain.cluster.install import spark_home
from retrain.cluster.spark_standalone import (
    StandaloneConfig,
    alive_worker_ui_ports,
    wait_for_workers,
    write_conf,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def config(tmp_path: Path, master_ui_port: int = 18080) -> StandaloneConfig:
    return StandaloneConfig(
        master_port=17077, master_ui_port=master_ui_port, worker_ui_ports=(18081, 18082), directory=tmp_path
    )


def test_commands_bind_loopback_with_small_workers_and_files_under_the_cluster_dir(tmp_path: Path) -> None:
    cluster = config(tmp_path)
    spark_class = str(spark_home() / "bin" / "spark-class")
    assert cluster.master_command() == [
        spark_class,
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        "17077",
        "--webui-port",
        "18080",
    ]
    assert cluster.worker_command(1) == [
        spark_class,
        "org.apache.spark.deploy.worker.Worker",
        "--host",
        "127.0.0.1",
        "--webui-port",
        "18082",
        "--cores",
        "1",
        "--memory",
        "2g",
        "--work-dir",
        str(tmp_path / "worker-2"),
        "spark://127.0.0.1:17077",
    ]
    env = cluster.env({"PATH": "/usr/bin", "SPARK_CONF_DIR": "/etc/spark"})
    assert env["PATH"] == "/usr/bin"
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["SPARK_CONF_DIR"] == str(tmp_path / "conf")  # never a conf dir from elsewhere
    assert cluster.master_url == "spark://127.0.0.1:17077"
    assert cluster.master_ui_url == "http://127.0.0.1:18080"
    write_conf(cluster)
    # The REST submission server would take the fixed port 6066.
    assert (tmp_path / "conf" / "spark-defaults.conf").read_text() == "spark.master.rest.enabled false\n"


class MasterUI(BaseHTTPRequestHandler):
    state: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.state).encode()
        self.send_response(200 if self.path == "/json/" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass


@pytest.fixture
def master_ui() -> Iterator[int]:
    """A stand-in for the master's web UI: one worker (UI port 18081) ALIVE, one DEAD."""
    MasterUI.state = {
        "workers": [
            {"webuiaddress": "http://127.0.0.1:18081", "state": "ALIVE"},
            {"webuiaddress": "http://127.0.0.1:18082", "state": "DEAD"},
        ]
    }
    server = HTTPServer(("127.0.0.1", 0), MasterUI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_alive_workers_are_read_from_the_master_json(master_ui: int) -> None:
    assert alive_worker_ui_ports(f"http://127.0.0.1:{master_ui}") == {18081}
    assert alive_worker_ui_ports(f"http://127.0.0.1:{process.free_port()}") == set()  # not up yet


def test_a_worker_that_does_not_register_is_named_with_its_log(tmp_path: Path, master_ui: int) -> None:
    cluster = config(tmp_path, master_ui_port=master_ui)
    env = dict(os.environ)
    logs = tmp_path / "logs"
    master = process.start(
        "Spark master", SLEEPER, port=17077, log=logs / "master.log", env=env, cwd=tmp_path
    )
    workers = [
        process.start(
            f"Spark worker {i + 1}",
            SLEEPER,
            port=port,
            log=logs / f"worker-{i + 1}.log",
            env=env,
            cwd=tmp_path,
        )
        for i, port in enumerate(cluster.worker_ui_ports)
    ]
    (logs / "worker-2.log").write_text("Failed to connect to master 127.0.0.1:17077\n")
    try:
        with pytest.raises(process.ServiceError) as raised:
            wait_for_workers(master, workers, cluster, deadline=time.monotonic() + 1)
    finally:
        for service in (master, *workers):
            process.stop(service, grace=5)
    assert str(raised.value) == (
        "Spark worker 2 (port 18082) did not register with spark://127.0.0.1:17077 in time; "
        f"last lines of {logs / 'worker-2.log'}:\nFailed to connect to master 127.0.0.1:17077"
    )
