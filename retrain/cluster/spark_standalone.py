"""A Spark standalone cluster from pyspark's own scripts: one master and its workers on loopback.

Jobs submitted to ``spark://`` run on executor JVMs the workers launch, as on a real cluster:
files shipped with ``addFile``, models loaded executor-side, an executor that can be killed.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retrain.cluster import process
from retrain.cluster.install import spark_home

MASTER = "Spark master"
# The master's REST submission server would take port 6066 whatever else runs on the machine.
DEFAULTS = {"spark.master.rest.enabled": "false"}


@dataclass(frozen=True)
class StandaloneConfig:
    """Ports and sizes of the cluster; ``worker_ui_ports`` holds one port per worker."""

    master_port: int
    master_ui_port: int
    worker_ui_ports: tuple[int, ...]
    directory: Path  # conf, logs and the workers' work directories
    worker_cores: int = 1
    worker_memory: str = "2g"
    daemon_memory: str = "512m"

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def master_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.master_ui_port}"

    @property
    def conf_dir(self) -> Path:
        return self.directory / "conf"

    def worker_name(self, index: int) -> str:
        return f"Spark worker {index + 1}"

    def worker_dir(self, index: int) -> Path:
        return self.directory / f"worker-{index + 1}"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The daemons' environment: loopback only, this cluster's conf, nothing under pyspark's dir."""
        return {
            **base,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_CONF_DIR": str(self.conf_dir),
            "SPARK_LOG_DIR": str(self.directory / "logs"),
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
        }

    def master_command(self) -> list[str]:
        return [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.master_port),
            "--webui-port",
            str(self.master_ui_port),
        ]

    def worker_command(self, index: int) -> list[str]:
        return [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            "127.0.0.1",
            "--webui-port",
            str(self.worker_ui_ports[index]),
            "--cores",
            str(self.worker_cores),
            "--memory",
            self.worker_memory,
            "--work-dir",
            str(self.worker_dir(index)),
            self.master_url,
        ]


def write_conf(config: StandaloneConfig) -> None:
    """``spark-defaults.conf`` for the daemons (``SPARK_CONF_DIR``)."""
    config.conf_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{key} {value}" for key, value in DEFAULTS.items()]
    (config.conf_dir / "spark-defaults.conf").write_text("\n".join(lines) + "\n")


def start_master(config: StandaloneConfig, env: dict[str, str]) -> process.Service:
    write_conf(config)
    log = config.directory / "logs" / "master.log"
    return process.start(
        MASTER,
        config.master_command(),
        port=config.master_port,
        log=log,
        env=config.env(env),
        cwd=config.directory,
    )


def start_worker(config: StandaloneConfig, index: int, env: dict[str, str]) -> process.Service:
    config.worker_dir(index).mkdir(parents=True, exist_ok=True)
    log = config.directory / "logs" / f"worker-{index + 1}.log"
    return process.start(
        config.worker_name(index),
        config.worker_command(index),
        port=config.worker_ui_ports[index],
        log=log,
        env=config.env(env),
        cwd=config.directory,
    )


def master_state(ui_url: str) -> dict[str, Any]:
    """The master's status JSON (workers, running and completed applications)."""
    with urllib.request.urlopen(f"{ui_url}/json/", timeout=2) as response:
        state: dict[str, Any] = json.load(response)
    return state


def alive_worker_ui_ports(ui_url: str) -> set[int]:
    """The web UI ports of the workers the master lists as ALIVE (none while it does not answer)."""
    try:
        state = master_state(ui_url)
    except (OSError, ValueError):
        return set()
    return {
        urlsplit(worker["webuiaddress"]).port or 0
        for worker in state.get("workers", [])
        if worker.get("state") == "ALIVE"
    }


def wait_for_master(service: process.Service, config: StandaloneConfig, deadline: float) -> None:
    process.wait_until(
        service, lambda: process.port_open(config.master_port), "did not open its port", deadline
    )


def wait_for_workers(
    master: process.Service, workers: list[process.Service], config: StandaloneConfig, deadline: float
) -> None:
    """Wait until the master lists every worker as ALIVE; one that did not register is named with its log."""
    while True:
        alive = alive_worker_ui_ports(config.master_ui_url)
        missing = [worker for worker in workers if worker.port not in alive]
        if not missing:
            return
        for service in (master, *missing):
            code = service.process.poll()
            if code is not None:
                raise service.failure(f"exited with code {code} before all workers registered")
        if time.monotonic() > deadline:
            raise missing[0].failure(f"did not register with {config.master_url} in time")
        time.sleep(0.5)
