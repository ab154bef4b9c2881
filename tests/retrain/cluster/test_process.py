"""Service processes: the startup timeout names the service and quotes its log.

Stopping them (all they started too) is tested in tests/retrain/test_processes.py.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from retrain.cluster import process

# Prints two lines and then never opens a port: a service stuck in startup.
STUCK = [
    sys.executable,
    "-c",
    "print('booting', flush=True); print('waiting for disk', flush=True); import time; time.sleep(60)",
]


def start(command: list[str], tmp_path: Path, name: str = "Stuck service") -> process.Service:
    return process.start(
        name,
        command,
        port=process.free_port(),
        log=tmp_path / "logs" / "stuck.log",
        env=dict(os.environ),
        cwd=tmp_path,
    )


def test_a_service_that_never_opens_its_port_times_out_naming_it_and_quoting_its_log(tmp_path: Path) -> None:
    service = start(STUCK, tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(process.ServiceError) as raised:
            process.wait_until(
                service,
                lambda: process.port_open(service.port),
                "did not open its port",
                deadline=time.monotonic() + 2,
            )
        assert time.monotonic() - started < 10
    finally:
        process.stop(service, grace=5)
    message = str(raised.value)
    assert message.startswith(f"Stuck service (port {service.port}) did not open its port in time;")
    assert f"last lines of {tmp_path / 'logs' / 'stuck.log'}:\nbooting\nwaiting for disk" in message


def test_a_service_that_exits_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    service = start(
        [sys.executable, "-c", "import sys; print('bad config: no such file'); sys.exit(3)"], tmp_path
    )
    with pytest.raises(process.ServiceError, match=r"exited with code 3 before it was ready;") as raised:
        process.wait_until(service, lambda: False, "did not answer", deadline=time.monotonic() + 30)
    assert str(raised.value).endswith("bad config: no such file")


def test_log_tail_keeps_the_last_lines_and_says_when_there_is_none(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    assert process.log_tail(log) == "(no log file)"
    log.write_text("")
    assert process.log_tail(log) == "(empty log)"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert process.log_tail(log, lines=2) == "line 98\nline 99"


def test_a_free_port_is_closed() -> None:
    assert not process.port_open(process.free_port())
