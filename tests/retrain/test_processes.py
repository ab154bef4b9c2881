"""Stopping a service stops all it started, within a bound, whatever its processes do with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from retrain import processes

# A service whose leader starts a task runner in a process group of its own (as Airflow's supervisor
# does), which starts a command in a session of its own (as BashOperator does). Each writes its pid.
TREE = """
import os, signal, subprocess, sys, time
role, pids, on_sigterm = sys.argv[1:4]
if on_sigterm == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif role == "leader":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if role == "leader":
    subprocess.Popen([sys.executable, __file__, "task", pids, on_sigterm])
elif role == "task":
    os.setpgid(0, 0)
    subprocess.Popen([sys.executable, __file__, "command", pids, on_sigterm], start_new_session=True)
with open(pids, "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(120)
"""


def start_tree(tmp_path: Path, on_sigterm: str) -> tuple[subprocess.Popen[bytes], list[int]]:
    """The tree, once all three processes run; ``on_sigterm``: ``ignore``, or ``exit`` (the leader with 0)."""
    script, pids = tmp_path / "tree.py", tmp_path / "pids"
    script.write_text(TREE)
    leader = processes.start([sys.executable, str(script), "leader", str(pids), on_sigterm])
    deadline = time.monotonic() + 30
    while len(pids.read_text().split() if pids.exists() else []) < 3:
        assert leader.poll() is None, "the leader exited"
        assert time.monotonic() < deadline, "the tree did not start"
        time.sleep(0.05)
    return leader, [int(pid) for pid in pids.read_text().split()]


def gone(pids: list[int]) -> bool:
    """Whether none of ``pids`` runs (an orphan init has not reaped yet counts as gone)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def test_stop_kills_what_ignores_sigterm_in_other_groups_and_sessions_after_the_grace(tmp_path: Path) -> None:
    leader, pids = start_tree(tmp_path, "ignore")
    assert len({os.getpgid(pid) for pid in pids}) == 3  # three groups: killpg on one would miss two
    started = time.monotonic()
    code = processes.stop(leader, grace=1)
    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 1 + 2 * processes.KILL_WAIT
    assert gone(pids)


def test_a_leader_that_exits_on_sigterm_keeps_its_exit_code_and_nothing_waits_for_the_grace(
    tmp_path: Path,
) -> None:
    leader, pids = start_tree(tmp_path, "exit")
    started = time.monotonic()
    assert processes.stop(leader, grace=60) == 0
    assert time.monotonic() - started < 10
    assert gone(pids)


def test_a_second_ctrl_c_while_stopping_kills_at_once(tmp_path: Path) -> None:
    leader, pids = start_tree(tmp_path, "ignore")
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()  # as the terminal delivers it
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        processes.stop(leader, grace=60)
    assert time.monotonic() - started < 10
    assert leader.returncode == -signal.SIGKILL
    assert gone(pids)
