"""Service processes that leave nothing behind: each starts in a session of its own and stops with all of it.

A process group is not enough: Airflow puts each task runner in a group of its own, and a leader
that dies first (``airflow standalone`` on SIGTERM) leaves its children to init. The session keeps
them all, whatever groups they make, unless one starts a session itself; those are caught as the
leader's descendants, listed before anything is signalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

import psutil

log = logging.getLogger(__name__)
KILL_WAIT = 5.0  # seconds for SIGKILLed processes to go (they cannot refuse)


def start(
    command: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    output: IO[bytes] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a new session (so a terminal's Ctrl-C does not reach it).

    :param output: where its stdout and stderr go (a file, ``subprocess.DEVNULL``); None: inherited.
    """
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> int:
    """Stop ``process`` and everything it started: SIGTERM, up to ``grace`` seconds, then SIGKILL.

    A KeyboardInterrupt while waiting (a second Ctrl-C) kills them at once, then propagates.

    :returns: the leader's exit code (negative: the signal that ended it).
    """
    # Once reaped, its pid may be another process's: only its session (which holds the id) is sure.
    reaped = process.returncode is not None
    others = session_members(process.pid) | (set() if reaped else descendants(process.pid))
    try:
        _signal(process, signal.SIGTERM)
        terminate(others, grace, leader=process)
    except KeyboardInterrupt:
        _signal(process, signal.SIGKILL)
        kill(others | session_members(process.pid))
        process.wait()
        raise
    # Whatever a member started while shutting down is in the session too.
    kill(session_members(process.pid))
    return process.wait()


def terminate(
    processes: Iterable[psutil.Process], grace: float, *, leader: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM ``processes``, wait up to ``grace`` seconds for them (and ``leader``), SIGKILL the rest.

    ``leader`` is signalled by the caller and reaped here through its Popen, which keeps its exit code.
    """
    targets = set(processes)
    for member in targets:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    deadline = time.monotonic() + grace
    if leader is not None:
        try:
            leader.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(leader, signal.SIGKILL)
            leader.wait()
    _, alive = psutil.wait_procs(targets, timeout=max(0.0, deadline - time.monotonic()))
    kill(alive)


def kill(processes: Iterable[psutil.Process]) -> None:
    """SIGKILL ``processes`` and wait (bounded) until they are gone; name any that are not."""
    targets = set(processes)
    for member in targets:
        with contextlib.suppress(psutil.Error):
            member.kill()
    _, alive = psutil.wait_procs(targets, timeout=KILL_WAIT)
    for member in alive:
        log.warning("process %d survived SIGKILL for %.0fs", member.pid, KILL_WAIT)


def session_members(leader: int) -> set[psutil.Process]:
    """The processes of session ``leader``, except the leader itself (reaped through its Popen)."""
    members = set()
    for candidate in psutil.process_iter():
        if candidate.pid == leader:
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            if os.getsid(candidate.pid) == leader:
                members.add(candidate)
    return members


def descendants(pid: int) -> set[psutil.Process]:
    """``pid``'s children, theirs, and so on (none once it is gone)."""
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return set()


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
