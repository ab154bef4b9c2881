"""A pytest plugin: the run fails, naming them, if processes it started are alive when it ends.

A process is the run's when its command line or environment names one of the run's temporary
folders: pytest's base folder, and any folder :func:`watch` adds (tests/conftest.py adds its Airflow
home). The check runs once every fixture is torn down; what it finds is reported as an error,
then killed, so that one leak does not outlive the run either.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Generator, Iterable
from pathlib import Path

import psutil
import pytest

from retrain import processes

WATCHED = pytest.StashKey[set[Path]]()
REPORT_ID = "processes left behind"


def watch(config: pytest.Config, folder: Path) -> None:
    """Count processes that name ``folder`` as this run's."""
    config.stash.setdefault(WATCHED, set()).update({folder, folder.resolve()})


@pytest.fixture(scope="session", autouse=True)
def _watch_pytest_folders(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    watch(request.config, tmp_path_factory.getbasetemp())


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    # Inside every other implementation: pytest's own has torn the fixtures down when this resumes,
    # and the terminal summary, outside, counts the error reported here.
    result = yield
    folders = session.config.stash.get(WATCHED, set())
    gc.collect()  # connections only garbage holds: their engine processes end with them
    left = leftovers(folders)
    if left:
        lines = [describe(process, folders) for process in left]
        processes.kill({*left, *(d for p in left for d in processes.descendants(p.pid))})
        report = pytest.TestReport(
            nodeid=REPORT_ID,
            location=(REPORT_ID, None, REPORT_ID),
            keywords={},
            outcome="failed",
            longrepr=f"{len(left)} process(es) outlived the tests that started them (now killed):\n"
            + "\n".join(lines),
            when="teardown",
        )
        # Into the summary's errors (and its count) without a progress mark after "100%".
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.stats.setdefault("error", []).append(report)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


def leftovers(folders: Iterable[Path]) -> list[psutil.Process]:
    """Living processes, except this one and its ancestors, whose command line or environment names
    one of ``folders`` (the folder itself or a path under it), and the other members of their sessions:
    processes that retitle themselves (Airflow's LocalExecutor workers, its log server) overwrite the
    environment they started with, but stay in their service's session."""
    pattern = naming(folders)
    if pattern is None:
        return []
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    living = [
        candidate
        for candidate in psutil.process_iter(["cmdline", "status"])
        if candidate.pid not in own and candidate.info["status"] != psutil.STATUS_ZOMBIE
    ]
    found = [candidate for candidate in living if names(candidate, pattern)]
    sessions = {session_of(candidate) for candidate in found} - {os.getsid(0), None}
    return found + [c for c in living if c not in found and session_of(c) in sessions]


def names(process: psutil.Process, pattern: re.Pattern[str]) -> bool:
    """Whether ``process``'s command line or environment matches ``pattern``."""
    try:
        texts = [*(process.info["cmdline"] or []), *process.environ().values()]
    except psutil.Error:  # gone, or another user's
        return False
    return any(pattern.search(text) for text in texts)


def session_of(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None


def naming(folders: Iterable[Path]) -> re.Pattern[str] | None:
    """A pattern matching a folder's path as a whole (``pytest-1`` does not name ``pytest-12``)."""
    names = sorted({str(folder) for folder in folders}, key=len, reverse=True)
    if not names:
        return None
    return re.compile("(?:" + "|".join(map(re.escape, names)) + r")(?![^/\s:;,'\"=])")


def describe(process: psutil.Process, folders: Iterable[Path]) -> str:
    """pid, parent, command line (shortened) and what ties it to the run."""
    try:
        with process.oneshot():
            command = " ".join(process.cmdline())
            parent = process.ppid()
            environment = process.environ()
    except psutil.Error:
        return f"pid {process.pid} (gone while being described)"
    pattern = naming(folders)
    assert pattern is not None
    hits = [f"{key}={value}"[:160] for key, value in environment.items() if pattern.search(value)]
    if pattern.search(command):
        why = "names a test folder in its command line"
    elif hits:
        why = f"names a test folder in its environment ({hits[0]})"
    else:
        why = f"in session {session_of(process)} with one that names a test folder"
    shown = command if len(command) <= 240 else command[:240] + "..."
    return f"  pid {process.pid} (parent {parent}): {shown}  [{why}]"
