"""The end-of-run check (tests/leftovers.py) on a real pytest run of its own: what leaks is named, killed
and fails the run; a test killed by pytest-timeout still stops its service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .leftovers import leftovers

ROOT = Path(__file__).resolve().parents[1]
INNER = """
import os, subprocess, sys, time
import pytest
from retrain import processes

SLEEP = [sys.executable, "-c", "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); time.sleep(120)"]


def test_leaks_a_process_naming_its_folder(tmp_path):
    # Its child names nothing, as a retitled Airflow worker: it is found by its session.
    code = "import subprocess, time; subprocess.Popen(['sleep', '121'], env={}); time.sleep(120)"
    subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], start_new_session=True)
    time.sleep(1)  # the child runs


def test_orphans_a_process_whose_environment_names_its_folder(tmp_path):
    # The restart bug: a scheduler whose parent died, found only by its AIRFLOW_HOME.
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    subprocess.run(["sh", "-c", "sleep 120 & echo $! > orphan.pid"], env=env, cwd=tmp_path, check=True)


@pytest.mark.timeout(2)
def test_times_out_with_a_service_running(tmp_path):
    service = processes.start([*SLEEP, str(tmp_path)])
    try:
        (tmp_path / "service.pid").write_text(str(service.pid))
        time.sleep(60)
    finally:
        processes.stop(service, grace=1)
"""


def test_the_check_names_and_kills_what_a_run_left_and_fails_it(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    basetemp = tmp_path / "inner-tmp"
    command = [sys.executable, "-m", "pytest", "-p", "tests.leftovers", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, f"--basetemp={basetemp}", "-rA", "test_inner.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    assert "Timeout (>2.0s)" in out
    assert "1 failed, 2 passed, 1 error" in out
    assert "3 process(es) outlived the tests that started them (now killed):" in out
    assert str(basetemp / "test_leaks_a_process_naming_it0") in out
    assert "[names a test folder in its command line]" in out
    assert "sleep 121  [in session " in out
    orphan = (basetemp / "test_orphans_a_process_whose_e0" / "orphan.pid").read_text().strip()
    assert f"pid {orphan} (parent " in out
    assert "sleep 120  [names a test folder in its environment (AIRFLOW_HOME=" in out
    service = (basetemp / "test_times_out_with_a_service_0" / "service.pid").read_text()
    assert f"pid {service} " not in out  # the timed-out test stopped its own
    assert leftovers([basetemp]) == []
