"""``retrain serve`` as a real subprocess on 127.0.0.1, for every test that needs a live server.

The serving tests start it from the venv running them (``.venv-serve``); tests in the main venv
(endpoint check, skew, the Airflow operator) start it from ``.venv-serve``, since KServe cannot
share a venv with Airflow. Either way it runs in a session of its own and stops with SIGTERM, which
must end it with exit code 0; whatever is left then is killed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from retrain import processes

ROOT = Path(__file__).resolve().parents[3]
SERVE_BIN = ROOT / ".venv-serve" / "bin" / "retrain"
needs_serve_venv = pytest.mark.skipif(
    not SERVE_BIN.is_file(), reason=f"{SERVE_BIN} is missing: make venv-serve builds it"
)
STARTUP_SECONDS = 180  # importing torch and KServe, loading the base, warming up: ~15 s on 2 cores
STOP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_server(retrain: Path, release_dir: Path, log_dir: Path, *options: str) -> Iterator[RunningServer]:
    """``retrain serve --release-dir release_dir [options]``, yielded once ready, stopped after."""
    http_port, grpc_port = free_port(), free_port()
    # The child is another venv: none of this process's import path, nor doltlite's bootstrap flag.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "_DOLTLITE_BOOTSTRAPPED")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # the base model is packaged: never download
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"serve-{http_port}.log"
    command = [
        str(retrain),
        "serve",
        "--release-dir",
        str(release_dir),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        *options,
    ]
    with log.open("wb") as output:
        process = processes.start(command, env=env, cwd=log_dir, output=output)
    server = RunningServer(process, http_port, grpc_port, log)
    try:
        _wait_until_ready(server)
        yield server
    finally:  # however the test ends, nothing of the server is left
        code = processes.stop(process, grace=STOP_SECONDS)
    # SIGTERM must end it cleanly; -9 means it ignored SIGTERM for STOP_SECONDS and was killed.
    assert code == 0, f"retrain serve exited with {code} on SIGTERM:\n{server.log_tail()}"


@contextlib.contextmanager
def served(release_dir: Path, log_dir: Path) -> Iterator[str]:
    """The base URL of ``retrain serve`` from .venv-serve on ``release_dir``, while it runs."""
    with running_server(SERVE_BIN, release_dir, log_dir) as server:
        yield server.base_url


def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"retrain serve exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{server.base_url}/v2/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"retrain serve was not ready after {STARTUP_SECONDS}s:\n{server.log_tail()}")
