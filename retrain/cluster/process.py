"""A long-running service process: started with its output in a log file, waited for, stopped.

Each service runs in a session of its own (:mod:`retrain.processes`), so stopping it also stops what
it spawned (a Spark worker's executors and their Python workers) and nothing is left behind when
startup fails.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrain import processes
from retrain.errors import RetrainError

TAIL_LINES = 25


class ServiceError(RetrainError):
    """A service did not come up; the message names it, its port and the tail of its log."""


@dataclass(frozen=True)
class Service:
    """A started service: what it is, where it listens and where it logs."""

    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def failure(self, problem: str) -> ServiceError:
        """An error naming this service and quoting its log's last lines."""
        return ServiceError(
            f"{self.name} (port {self.port}) {problem}; last lines of {self.log}:\n{log_tail(self.log)}"
        )


def start(name: str, command: list[str], *, port: int, log: Path, env: dict[str, str], cwd: Path) -> Service:
    """Start ``command`` in a new session, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:  # the child keeps its own descriptor
        process = processes.start(command, env=env, cwd=cwd, output=output)
    return Service(name, port, log, process)


def wait_until(service: Service, ready: Callable[[], bool], what: str, deadline: float) -> None:
    """Poll ``ready`` until it holds; raise naming the service if it exits or ``deadline`` passes.

    :param what: the condition in words, for the error (``"did not open its port"``).
    :param deadline: a :func:`time.monotonic` instant.
    """
    while not ready():
        code = service.process.poll()
        if code is not None:
            raise service.failure(f"exited with code {code} before it was ready")
        if time.monotonic() > deadline:
            raise service.failure(f"{what} in time")
        time.sleep(0.5)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(service: Service, grace: float = 20) -> None:
    """Stop the service and all it started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    processes.stop(service.process, grace)


def log_tail(log: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``log`` (or a note that it is empty or missing)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"
