"""The local cluster for real: a Hive metastore service, a Spark master and two workers.

One cluster per module. Its warehouse is seeded the way ``make up`` seeds it (embedded Derby,
then served by the metastore service); the suite's scoring entry point runs under
``spark-submit --master spark://...`` and an analyst reads the scores back with ``spark-sql``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from retrain import processes
from retrain.cluster import LocalCluster, ServiceError, local, local_cluster, process
from retrain.cluster.install import spark_home
from retrain.cluster.spark_standalone import master_state
from retrain.scoring import spark_submit

if TYPE_CHECKING:
    from tests.conftest import TrainedRelease

DS = "2026-11-01"
ROWS_PER_CUSTOMER = 20  # retrain demo-data's default


def test_a_failed_start_names_the_service_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metastore starts, the master never opens its port: both are gone after the error."""
    started: list[process.Service] = []

    def fake(name: str, says: str) -> process.Service:
        log = tmp_path / f"{len(started)}.log"
        command = [sys.executable, "-c", f"print({says!r}, flush=True); import time; time.sleep(60)"]
        service = process.start(
            name, command, port=process.free_port(), log=log, env=dict(os.environ), cwd=tmp_path
        )
        started.append(service)
        return service

    monkeypatch.setattr(local, "start_metastore", lambda *_: fake("Hive metastore", "starting"))
    monkeypatch.setattr(local, "start_master", lambda *_: fake("Spark master", "BindException"))
    failure = (
        r"^Spark master \(port \d+\) did not open its port in time; last lines of .*1\.log:\nBindException$"
    )
    with pytest.raises(ServiceError, match=failure), local_cluster(tmp_path, timeout=2):
        pytest.fail("the cluster cannot be up")
    assert [service.process.returncode is not None for service in started] == [True, True]


@dataclass(frozen=True)
class Submitted:
    returncode: int
    output: str
    report: dict[str, object] | None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("cluster")
    subprocess.run(  # embedded Derby, as `make up` seeds; the service then serves the same database
        [
            sys.executable,
            "-m",
            "retrain.cli",
            "demo-data",
            "--repo",
            str(home / "unused.db"),
            "--warehouse",
            str(home / "warehouse"),
            "--customers",
            "4",
            "--days",
            "1",
            "--start",
            DS,
        ],
        check=True,
        capture_output=True,
        cwd=home,
    )
    with local_cluster(home) as running:
        print(f"local cluster up in {running.started_in:.1f}s")
        yield running


@contextlib.contextmanager
def submitted(
    cluster: LocalCluster, release: TrainedRelease, workdir: Path, *conf: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``spark-submit --master spark://...`` of the suite's scoring entry point; stopped, driver and all,
    when the block ends (an overrun or a failed assertion leaves no job behind)."""
    env = {
        **os.environ,
        **cluster.env(),
        "MLFLOW_TRACKING_URI": release.store.tracking_uri,
    }
    settings = [part for item in ("spark.sql.shuffle.partitions=2", *conf) for part in ("--conf", item)]
    command = [
        str(spark_home() / "bin" / "spark-submit"),
        "--master",
        cluster.master_url,
        *settings,
        spark_submit.__file__,
        "--release",
        release.release_id,
        "--table",
        "requests",
        "--ds",
        DS,
        "--out",
        "scores",
        "--workdir",
        str(workdir / "cache"),
        "--report-json",
        str(workdir / "report.json"),
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "report.json").unlink(missing_ok=True)
    with (workdir / "spark-submit.log").open("wb") as log:  # a pipe left unread would stall the job
        job = processes.start(command, env=env, cwd=workdir, output=log)
    try:
        yield job
    finally:
        processes.stop(job, grace=10)


def finish(job: subprocess.Popen[bytes], workdir: Path, timeout: float = 300) -> Submitted:
    job.wait(timeout=timeout)
    output = (workdir / "spark-submit.log").read_text(errors="replace")
    report_file = workdir / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else None
    return Submitted(job.returncode, output, report)


def analyst_query(cluster: LocalCluster, sql: str) -> list[list[str]]:
    """Rows of ``sql`` from pyspark's own ``spark-sql`` over the metastore service, as an analyst runs it."""
    done = subprocess.run(
        [
            str(spark_home() / "bin" / "spark-sql"),
            "--master",
            "local[1]",
            "--conf",
            "spark.ui.enabled=false",
            "--hiveconf",
            f"hive.metastore.uris={cluster.metastore_uri}",
            "--conf",
            f"spark.sql.warehouse.dir={cluster.warehouse}",
            "-S",
            "-e",
            sql,
        ],
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
        cwd=cluster.warehouse.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [line.split("\t") for line in done.stdout.splitlines() if line.strip()]


def partition(cluster: LocalCluster, release_id: str) -> tuple[list[tuple[str, str, float]], set[str]]:
    """The partition's (request, customer, score) rows and the attempt directories they are read from."""
    rows = analyst_query(
        cluster,
        "SELECT request_id, customer_id, score, input_file_name() FROM scores "
        f"WHERE ds = '{DS}' AND release = '{release_id}'",
    )
    attempts = {Path(row[3].removeprefix("file:")).parent.name for row in rows}
    return sorted((row[0], row[1], float(row[2])) for row in rows), attempts


@pytest.fixture(scope="module")
def scored(
    cluster: LocalCluster, trained_release: TrainedRelease, tmp_path_factory: pytest.TempPathFactory
) -> Submitted:
    workdir = tmp_path_factory.mktemp("first-run")
    with submitted(cluster, trained_release, workdir) as job:
        return finish(job, workdir)


@pytest.fixture(scope="module")
def first_partition(
    cluster: LocalCluster, trained_release: TrainedRelease, scored: Submitted
) -> tuple[list[tuple[str, str, float]], set[str]]:
    """The first run's partition as an analyst reads it (one ``spark-sql`` for both tests)."""
    assert scored.returncode == 0, scored.output[-4000:]
    return partition(cluster, trained_release.release_id)


@pytest.mark.slow
def test_spark_submit_scores_on_the_cluster_and_an_analyst_reads_the_scores(
    cluster: LocalCluster,
    trained_release: TrainedRelease,
    scored: Submitted,
    first_partition: tuple[list[tuple[str, str, float]], set[str]],
) -> None:
    assert scored.report is not None
    expected = {customer: ROWS_PER_CUSTOMER for customer in trained_release.customers}
    assert scored.report["customers_scored"] == expected
    assert scored.report["missing_customers"] == {}

    rows, attempts = first_partition
    assert len(attempts) == 1
    per_customer = Counter(customer for _, customer, _ in rows)
    assert per_customer == expected
    assert len({request for request, _, _ in rows}) == len(rows)
    assert all(0.0 <= score <= 1.0 for _, _, score in rows)

    # It ran on the cluster: a finished application, with an executor on each worker that ran tasks.
    (app,) = master_state(cluster.master_ui_url)["completedapps"]
    assert (app["state"], app["cores"]) == ("FINISHED", 2)
    executor_logs = [log for worker in cluster.worker_dirs for log in worker.glob(f"{app['id']}/*/stderr")]
    assert len(executor_logs) == 2, executor_logs
    assert any("Running task" in log.read_text() for log in executor_logs)


def executors(cluster: LocalCluster) -> list[psutil.Process]:
    """This cluster's executor JVMs (they run in their worker's work directory)."""
    found = []
    for candidate in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = candidate.info["cmdline"] or [], candidate.info["cwd"] or ""
        if any("CoarseGrainedExecutorBackend" in part for part in cmdline) and any(
            cwd.startswith(str(worker)) for worker in cluster.worker_dirs
        ):
            found.append(candidate)
    return found


@pytest.mark.slow
def test_executors_killed_mid_write_leave_the_old_partition_and_a_rerun_replaces_it(
    cluster: LocalCluster,
    trained_release: TrainedRelease,
    first_partition: tuple[list[tuple[str, str, float]], set[str]],
    tmp_path: Path,
) -> None:
    before, (old_attempt,) = first_partition
    partition_dir = cluster.warehouse / "scores" / f"ds={DS}" / f"release={trained_release.release_id}"

    # One failure aborts the job (the default retries would route around a lost executor).
    killed_run = tmp_path / "killed"
    with submitted(cluster, trained_release, killed_run, "spark.task.maxFailures=1") as job:
        deadline = time.monotonic() + 240
        while not any(
            attempt.name != old_attempt
            for attempt in partition_dir.glob("attempt-*/_temporary/0/_temporary/*/..")
        ):  # a write task has opened its file: scoring is under way on the executors
            log = killed_run / "spark-submit.log"
            assert job.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "the scoring job never started writing"
            time.sleep(0.1)
        killed = executors(cluster)
        assert killed
        for executor in killed:
            executor.send_signal(signal.SIGKILL)
        failed = finish(job, killed_run)
    assert failed.returncode != 0
    assert failed.report is None
    assert "ExecutorLostFailure" in failed.output or "Job aborted" in failed.output, failed.output[-4000:]
    assert partition(cluster, trained_release.release_id) == (before, {old_attempt})  # untouched

    with submitted(cluster, trained_release, tmp_path / "rerun") as job:
        rerun = finish(job, tmp_path / "rerun")
    assert rerun.returncode == 0, rerun.output[-4000:]
    after, (new_attempt,) = partition(cluster, trained_release.release_id)
    assert new_attempt != old_attempt
    assert [row[:2] for row in after] == [row[:2] for row in before]
    assert [row[2] for row in after] == pytest.approx([row[2] for row in before], abs=1e-6)
    assert not (partition_dir / old_attempt).exists()  # the replaced attempt is deleted
