"""The real model server over a real release, started once per session from .venv-serve.

``served_release`` is the fixture other tests build on: ``(base_url, release_id, release_dir)`` of a
``retrain serve`` subprocess on 127.0.0.1 that is ready (warmed up) when the fixture returns. At the
end of the session the server gets SIGTERM and must exit 0 within its grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
import requests

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from retrain.engine import AdapterEngine
    from tests.conftest import TrainedRelease

MODEL_NAME = "retrain"
STARTUP_SECONDS = 180  # importing torch and KServe, loading the base, warming up: ~15 s on 2 cores
STOP_SECONDS = 30


class ServedRelease(NamedTuple):
    base_url: str  # http://127.0.0.1:<port>, no trailing slash
    release_id: str
    release_dir: Path


@dataclass(frozen=True)
class RunningServer:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path
    release: TrainedRelease

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def retrain_command() -> Path:
    """The ``retrain`` script of the venv running the tests (.venv-serve under ``make test-serving``)."""
    found = Path(sys.executable).with_name("retrain")
    return found if found.exists() else Path(shutil.which("retrain") or "retrain")


def wait_until_ready(server: RunningServer, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"retrain serve exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.base_url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    server.process.kill()
    pytest.fail(f"retrain serve was not ready after {timeout:.0f}s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def serving_process(
    trained_release: TrainedRelease, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``retrain serve --release-dir`` as a subprocess; stopped with SIGTERM, which must exit 0."""
    pytest.importorskip("kserve", reason="the serving tests run in .venv-serve (make test-serving)")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    http_port, grpc_port = free_port(), free_port()
    command = [
        str(retrain_command()), "serve", "--release-dir", str(trained_release.release_dir),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--model-name", MODEL_NAME,
        "--max-wait-ms", "10",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(process, http_port, grpc_port, log, trained_release)
    try:
        wait_until_ready(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"retrain serve ignored SIGTERM for {STOP_SECONDS}s:\n{server.log_tail()}")
    assert process.returncode == 0, f"retrain serve exited with {process.returncode}:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def served_release(serving_process: RunningServer) -> ServedRelease:
    """(base_url, release_id, release_dir) of the running server."""
    release = serving_process.release
    return ServedRelease(serving_process.base_url, release.release_id, release.release_dir)


@pytest.fixture(scope="session")
def engine(trained_release: TrainedRelease) -> AdapterEngine:
    """The same release scored in this process: what the server must answer, row for row."""
    from retrain.engine import AdapterEngine

    return AdapterEngine.from_release_dir(trained_release.release_dir)
