"""Local fan-out on real worker processes: one customer fails, the others register."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.errors import RetrainError
from retrain.fanout.local import train_customers


@pytest.mark.slow
def test_one_failing_customer_does_not_stop_the_others(seeded: SeededRepository, tmp_path: Path) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        repo.execute(Statement("UPDATE examples SET label = 'urgent' WHERE customer_id = 'initech_saas'"))
        commit = repo.commit("initech_saas has one class")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    customers = ["acme_air", "globex_bank", "initech_saas"]
    result = train_customers(
        str(seeded.path),
        table="examples",
        commit=commit,
        customers=customers,
        parallelism=2,
        retries=1,
        params=TrainingParams(epochs=1, min_examples=10),
        mlflow_uri=uri,
    )
    assert sorted(a.customer for a in result.succeeded) == ["acme_air", "globex_bank"]
    assert list(result.failed) == ["initech_saas"]
    assert "TrainingDataError" in result.failed["initech_saas"]
    assert "single class" in result.failed["initech_saas"]
    table = result.table()
    assert "adapter-acme_air v1" in table
    assert "FAILED: TrainingDataError" in table
    client = MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["retrain.commit"] == commit
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    assert len(children) == 3  # two finished, one failed: every attempt is visible under the pipeline run
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED", "FINISHED"]


@pytest.mark.slow
def test_workers_survive_a_main_script_that_imports_great_expectations(
    seeded: SeededRepository, tmp_path: Path
) -> None:
    """A caller's script importing GX (and so PySpark's connect module) must not kill spawned workers."""
    script = tmp_path / "pipeline.py"
    script.write_text(
        "import great_expectations  # noqa: F401\n"
        "from retrain.adapters.training import TrainingParams\n"
        "from retrain.fanout.local import train_customers\n"
        "if __name__ == '__main__':\n"
        f"    result = train_customers({str(seeded.path)!r}, table='examples', commit='main',\n"
        "        customers=['acme_air', 'globex_bank'], parallelism=2,\n"
        "        params=TrainingParams(epochs=1, min_examples=10),\n"
        f"        mlflow_uri={('sqlite:///' + str(tmp_path / 'mlflow.db'))!r})\n"
        "    print('FAILED' if result.failed else 'OK', result.failed)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("OK"), out.stdout + out.stderr[-2000:]


def test_a_single_customer_trains_in_this_process_and_reports_failures_alike(
    seeded: SeededRepository, tmp_path: Path
) -> None:
    result = train_customers(
        str(seeded.path),
        table="examples",
        commit="main",
        customers=["no_such_customer"],
        mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert result.succeeded == []
    assert "no_such_customer" in result.failed["no_such_customer"]


class KillAWorkerOnFirstProgress(logging.Handler):
    """Once the first customer is done, SIGKILL one spawned worker of this process; keep every line."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.killed: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if self.killed is None and record.getMessage().startswith("[1/"):
            workers = [
                p
                for p in psutil.Process().children()
                if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())
            ]
            self.killed = workers[0].pid
            os.kill(self.killed, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_worker_s_customers_are_retried_on_a_fresh_pool_and_registered_once(
    seeded: SeededRepository, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    watcher = KillAWorkerOnFirstProgress()
    logger = logging.getLogger("retrain.fanout.local")
    logger.addHandler(watcher)
    logger.setLevel(logging.INFO)
    try:
        result = train_customers(
            str(seeded.path),
            table="examples",
            commit="main",
            customers=seeded.customers,
            parallelism=2,
            # One customer per task: when the first is done, tasks are still queued and in flight,
            # so the kill always breaks a pool at work (with two tasks they could end together).
            pack_size=1,
            retries=1,
            params=TrainingParams(epochs=1, min_examples=10),
            mlflow_uri=uri,
        )
    finally:
        logger.removeHandler(watcher)
    assert watcher.killed is not None
    assert result.failed == {}
    assert sorted(a.customer for a in result.succeeded) == sorted(seeded.customers)
    client = MlflowClient(uri)
    for customer in seeded.customers:
        versions = client.search_model_versions(f"name = 'adapter-{customer}'")
        assert [v.tags["retrain.commit"] for v in versions] == [result.commit], customer
    (died,) = [line for line in watcher.lines if line.startswith("a worker process died while training ")]
    lost = died.removeprefix("a worker process died while training ").split(";")[0].split(", ")
    assert set(lost) <= set(seeded.customers)
    assert 1 <= len(lost) <= 2  # only the customers in flight, never the queued ones
    assert died.endswith(f"retrying {', '.join(lost)} on a fresh pool")
    children = client.search_runs(
        [client.get_run(result.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    assert "RUNNING" not in {r.info.status for r in children}  # the dead workers' runs are ended
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


CLOSE_A_POOL_WITH_A_WORKER_THAT_STAYS = """
import logging, os, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from retrain.fanout import local

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    local.CLOSE_GRACE_SECONDS = 1
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    worker = pool.submit(os.getpid).result(timeout=60)  # started, whatever the load
    sleeping = pool.submit(time.sleep, 3600)
    while not sleeping.running():  # in the worker's queue: it takes this before any shutdown sentinel
        time.sleep(0.01)
    started = time.monotonic()
    local._close(pool)
    closed = time.monotonic()
    while os.path.exists(f"/proc/{worker}") and time.monotonic() - closed < 10:  # ended, and reaped
        time.sleep(0.05)
    gone = not os.path.exists(f"/proc/{worker}")
    print(f"closed in {closed - started:.1f}s; worker gone: {gone}")
"""


def test_a_pool_whose_worker_cannot_leave_is_closed_anyway(tmp_path: Path) -> None:
    """A worker that never takes the shutdown sentinel (here: busy for an hour; in life: waiting on
    the task queue's lock that a killed worker died holding) is terminated after the grace time.
    In a process of its own: the pool's resource tracker ends with it."""
    script = tmp_path / "close.py"
    script.write_text(CLOSE_A_POOL_WITH_A_WORKER_THAT_STAYS)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"worker process (\d+) did not stop within 1s; terminating it", done.stderr), done.stderr
    closed = re.search(r"closed in ([\d.]+)s; worker gone: True", done.stdout)
    assert closed is not None, done.stdout
    assert float(closed.group(1)) < 10


def test_an_unexpected_error_is_logged_once_with_its_traceback_naming_the_customer(
    seeded: SeededRepository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A base model folder whose config.json is not JSON: transformers fails, not the suite."""
    base = tmp_path / "broken-base"
    base.mkdir()
    (base / "config.json").write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="retrain.fanout.local"):
        result = train_customers(
            str(seeded.path),
            table="examples",
            commit="main",
            customers=["acme_air"],
            retries=0,
            base_model=str(base),
            params=TrainingParams(epochs=1, min_examples=10),
            mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
    assert list(result.failed) == ["acme_air"]
    (record,) = [r for r in caplog.records if r.getMessage() == "training acme_air failed"]
    assert record.exc_info is not None  # the traceback is kept, once
    assert not isinstance(record.exc_info[1], RetrainError)
    assert result.failed["acme_air"].startswith(type(record.exc_info[1]).__name__)
