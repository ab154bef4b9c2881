"""Benchmark: N customers end to end through the suite's entry points, beside a run of N/10.

For each size (default 100 and 1,000 customers, about 40 examples each), in one invocation:

1. whole-table stages: validate every customer's rows (Great Expectations), train every adapter
   (local fan-out, 2 worker processes), the promotion gate, register the release, score one
   day's ``requests`` partition with the release on Spark (the multi-adapter engine);
2. a commit changing 1 customer, then a commit changing 50, each through sense (the watermark's
   changed keys), validate the changed rows, train, gate, release and score.

Every stage prints its time, its rate (rows/s or adapters/min), the peak resident memory of this
process and its children (training workers, the Spark JVM and its Python workers) and the MLflow
round trips (requests counted in the access log of a real ``mlflow server`` on loopback). The
summary compares t(N) with t(N/10) and checks the issue's targets:

- whole-table stages grow at most linearly: t(N)/t(N/10) <= 11;
- per-commit stages (sense, validate the changed rows, release) stay flat in N: <= 2x here;
- with N released, commit -> release for 1 changed customer <= 1.5x training that adapter alone
  (the mean of one run before and one after, in this warm process);
- training all N <= 1.2x (sum of single trainings / workers), the single trainings measured on a
  sample of customers with the thread count a worker gets.

A PNG plot of time per stage against N is written beside the figures.

Run: ``make scale`` or ``.venv/bin/python bench/scale.py [--customers 1000] [--plot var/bench/scale.png]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.cluster.local import local_cluster
from retrain.cluster.process import free_port
from retrain.demo.corpus import customer_profiles, generate_examples
from retrain.demo.seed import EXAMPLES_TABLE, seed_training_repo
from retrain.demo.up import service_env, start_mlflow, stop
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import CommitWatermark
from retrain.fanout.local import train_customers
from retrain.outputs import BENCH_WORK, OutputPathError, claim
from retrain.release.build import promote_all
from retrain.release.store import ReleaseStore
from retrain.scoring.job import score_partition
from retrain.spark import SparkSettings, spark_session
from retrain.validation.gate import validate_commit
from retrain.validation.suite import PACKAGED_SUITE

PARAMS = TrainingParams(epochs=2, min_examples=10)
WORKERS = 2
DAY = "2026-11-30"
SINGLES = 6  # customers trained one at a time for the fan-out's baseline
ONE_AT_A_TIME = "train all, one at a time"
WHOLE_TABLE = ("validate all", "train all", ONE_AT_A_TIME, "gate and release all", "score partition")
FLAT = ("sense", "validate changed", "gate and release")  # per-commit stages that must not grow with N
FLAT_FLOOR = 0.05  # seconds under which a ratio is timer noise

log = logging.getLogger("bench.scale")


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    items: int
    unit: str  # "rows" or "adapters"
    peak_rss: int  # bytes, this process and its children
    mlflow_calls: int

    def rate(self) -> str:
        if not self.items or not self.seconds:
            return "-"
        if self.unit == "adapters":
            return f"{self.items / self.seconds * 60:,.1f} adapters/min"
        rate = self.items / self.seconds
        return f"{rate:,.0f} rows/s" if rate >= 100 else f"{rate:.1f} rows/s"


class Meter:
    """Times stages; samples the process tree's resident memory; counts MLflow server requests."""

    def __init__(self, mlflow_log: Path, mlflow_server: int) -> None:
        self.mlflow_log = mlflow_log
        self.mlflow_server = mlflow_server  # its processes are not the suite's: left out of the memory
        self.stages: dict[str, Stage] = {}

    def _requests(self) -> int:
        text = self.mlflow_log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if ' HTTP/1.1" ' in line and "/health" not in line)

    @contextmanager
    def stage(self, name: str, unit: str) -> Iterator[dict[str, int]]:
        """Measure the block; the block sets ``counts["items"]``."""
        counts = {"items": 0}
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            me = psutil.Process()
            server = psutil.Process(self.mlflow_server)
            while not done.is_set():
                total, skip = 0, {self.mlflow_server}
                with contextlib.suppress(psutil.Error):
                    skip = {self.mlflow_server, *(p.pid for p in server.children(recursive=True))}
                for process in [me, *me.children(recursive=True)]:
                    if process.pid in skip:
                        continue
                    with contextlib.suppress(psutil.Error):  # exited between listing and reading
                        total += process.memory_info().rss
                peak[0] = max(peak[0], total)
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        calls = self._requests()
        sampler.start()
        started = time.perf_counter()
        try:
            yield counts
        finally:
            seconds = time.perf_counter() - started
            done.set()
            sampler.join()
        time.sleep(0.3)  # the server writes its access log line after answering
        stage = Stage(name, seconds, counts["items"], unit, peak[0], self._requests() - calls)
        self.stages[name] = stage
        rss = stage.peak_rss / 2**30
        print(
            f"  {name:<24} {seconds:8.2f} s  {stage.rate():>22}  peak RSS {rss:5.2f} GiB  "
            f"MLflow calls {stage.mlflow_calls:>6}",
            flush=True,
        )


@dataclass(frozen=True)
class SizeResult:
    customers: int
    stages: dict[str, Stage]
    single_adapter: float  # one adapter trained and registered alone, warm, default threads
    single_per_worker: float  # mean single training with a worker's thread count


def seed_requests(spark: Any, table: str, customers: list[str], rows_per_customer: int) -> int:
    """One day's partition of unlabelled requests for ``customers`` in Hive table ``table``."""
    rows = []
    profiles = customer_profiles(len(customers))  # the seeded repo's customers (same default seed)
    assert [p.customer_id for p in profiles] == customers
    for profile in profiles:
        for i, example in enumerate(generate_examples(profile, rows_per_customer, seed=13)):
            rows.append((f"{profile.customer_id}-{i}", profile.customer_id, example.text))
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    spark.sql(
        f"CREATE TABLE {table} (request_id STRING, customer_id STRING, text STRING) "
        "PARTITIONED BY (ds STRING) STORED AS PARQUET"
    )
    frame = spark.createDataFrame(rows, "request_id STRING, customer_id STRING, text STRING")
    frame.createOrReplaceTempView("bench_requests")
    spark.sql(f"INSERT OVERWRITE TABLE {table} PARTITION (ds = '{DAY}') SELECT * FROM bench_requests")  # noqa: S608
    return len(rows)


def run_size(
    count: int, root: Path, spark: Any, examples: int, rows_per_customer: int, changed: int
) -> SizeResult:
    work = root / f"n{count}"
    work.mkdir(parents=True)
    port = free_port()
    server = start_mlflow(work, service_env(work, mlflow_port=port), port)
    try:
        uri = f"http://127.0.0.1:{port}"
        return _run_size(count, work, spark, examples, rows_per_customer, changed, uri, server.pid)
    finally:
        stop(server)


def _run_size(
    count: int,
    work: Path,
    spark: Any,
    examples: int,
    rows_per_customer: int,
    changed_large: int,
    uri: str,
    server_pid: int,
) -> SizeResult:
    print(f"\n== {count} customers x {examples} examples (MLflow server {uri}) ==", flush=True)
    meter = Meter(work / "mlflow.log", server_pid)
    store = ReleaseStore.open(uri)
    seeded = seed_training_repo(work / "training.db", customers=count, examples=examples)
    requests_table, scores_table = f"requests_n{count}", f"scores_n{count}"
    request_rows = seed_requests(spark, requests_table, seeded.customers, rows_per_customer)
    location = str(seeded.path)

    def score(name: str, release_id: str) -> None:
        with meter.stage(name, "rows") as counts:
            report = score_partition(
                spark,
                store,
                release_id=release_id,
                input_table=requests_table,
                ds=DAY,
                output_table=scores_table,
                workdir=work / "scoring",
            )
            counts["items"] = report.rows_scored
        assert report.rows_scored == request_rows, (report.rows_scored, request_rows)

    with DoltRepository.open(location) as repo:
        head = repo.head("main")
        validate_commit(
            repo, EXAMPLES_TABLE, head, PACKAGED_SUITE, customers=seeded.customers[:1]
        )  # warm-up, untimed
        with meter.stage("validate all", "rows") as counts:
            report = validate_commit(repo, EXAMPLES_TABLE, head, PACKAGED_SUITE)
            counts["items"] = report.rows_validated
        assert report.success, report.summary()
        with meter.stage("train all", "adapters") as counts:
            trained = train_customers(
                location,
                table=EXAMPLES_TABLE,
                commit=head,
                customers=seeded.customers,
                parallelism=WORKERS,
                params=PARAMS,
                mlflow_uri=uri,
            )
            counts["items"] = len(trained.succeeded)
        assert not trained.failed, trained.failed
        with meter.stage(ONE_AT_A_TIME, "adapters") as counts:  # the same work unpacked, for the ratio
            unpacked = train_customers(
                location,
                table=EXAMPLES_TABLE,
                commit=head,
                customers=seeded.customers,
                parallelism=WORKERS,
                pack_size=1,
                params=PARAMS,
                mlflow_uri=uri,
                force=True,
            )
            counts["items"] = len(unpacked.succeeded)
        assert not unpacked.failed, unpacked.failed
        with meter.stage("gate and release all", "adapters") as counts:
            release = promote_all(store, {a.customer: a.version for a in trained.succeeded}, floor=None).event
            counts["items"] = release.adapter_count
        score("score partition", release.release_id)

        watermark = CommitWatermark(repo, "bench-scale")
        watermark.advance(head)
        rng = random.Random(count)
        single_runs: list[float] = []
        for changed_count in (1, changed_large):
            changed = sorted(rng.sample(seeded.customers, changed_count))
            marks = ", ".join("?" * len(changed))
            sql = f"UPDATE {EXAMPLES_TABLE} SET text = text || ' (reviewed)' WHERE customer_id IN ({marks})"  # noqa: S608
            repo.execute(Statement(sql, tuple(changed)))
            commit = repo.commit(f"review {changed_count} customers' examples")
            if changed_count == 1:
                single_runs.append(_train_alone(repo, commit, changed[0], uri))
            tag = f"{changed_count} changed:"
            with meter.stage(f"{tag} sense", "adapters") as counts:
                commit_range = watermark.sense(EXAMPLES_TABLE, "customer_id")
                assert commit_range is not None
                keys = sorted(commit_range.changed.keys)
                counts["items"] = len(keys)
            assert keys == changed, (keys, changed)
            with meter.stage(f"{tag} validate changed", "rows") as counts:
                report = validate_commit(repo, EXAMPLES_TABLE, commit, PACKAGED_SUITE, customers=keys)
                counts["items"] = report.rows_validated
            with meter.stage(f"{tag} train", "adapters") as counts:
                result = train_customers(
                    location,
                    table=EXAMPLES_TABLE,
                    commit=commit,
                    customers=report.healthy_customers,
                    parallelism=WORKERS,
                    params=PARAMS,
                    mlflow_uri=uri,
                    force=True,
                )
                counts["items"] = len(result.succeeded)
            assert not result.failed, result.failed
            with meter.stage(f"{tag} gate and release", "adapters") as counts:  # as the release operator does
                release = promote_all(
                    store,
                    {a.customer: a.version for a in result.succeeded},
                    tolerance=1.0,
                    floor=None,
                    changed_only=True,
                ).event
                counts["items"] = release.adapter_count
            score(f"{tag} score", release.release_id)
            watermark.advance(commit)
            if changed_count == 1:
                single_runs.append(_train_alone(repo, commit, changed[0], uri))
        single_per_worker = _singles_per_worker(repo, seeded.customers[:SINGLES], uri)
    return SizeResult(count, meter.stages, statistics.mean(single_runs), single_per_worker)


def _train_alone(repo: DoltRepository, commit: str, customer: str, uri: str) -> float:
    started = time.perf_counter()
    train_and_register(
        repo,
        table=EXAMPLES_TABLE,
        commit=commit,
        customer=customer,
        params=PARAMS,
        mlflow_uri=uri,
        force=True,
    )
    return time.perf_counter() - started


def _singles_per_worker(repo: DoltRepository, customers: list[str], uri: str) -> float:
    """Mean time of one adapter trained and registered alone with a worker's share of the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // WORKERS))
    try:
        return statistics.mean(_train_alone(repo, "main", c, uri) for c in customers)
    finally:
        torch.set_num_threads(threads)


def summary(small: SizeResult, large: SizeResult) -> list[str]:
    n, m = small.customers, large.customers
    growth = m / n
    lines = [
        f"\n== summary: {m} customers against {n} ==",
        f"{'stage':<30}{f't({n})':>10}{f't({m})':>10}{'ratio':>8}  {f'rate at {m}':>22}  "
        f"{'peak RSS':>9}  {'MLflow calls':>14}  target",
    ]
    for name, stage in large.stages.items():
        before = small.stages[name]
        ratio = stage.seconds / before.seconds if before.seconds else float("inf")
        base = name.split(": ")[-1]
        if name in WHOLE_TABLE:
            target = f"<= {growth + 1:.0f}x: {'met' if ratio <= growth + 1 else 'MISSED'}"
        elif base in FLAT:
            flat = ratio <= 2 or stage.seconds < FLAT_FLOOR
            target = f"flat (<= 2x or < {FLAT_FLOOR * 1000:.0f} ms): {'met' if flat else 'MISSED'}"
        else:
            target = ""
        lines.append(
            f"{name:<30}{before.seconds:>9.2f}s{stage.seconds:>9.2f}s{ratio:>7.2f}x  {stage.rate():>22}  "
            f"{stage.peak_rss / 2**30:>7.2f}Gi  {before.mlflow_calls:>6} / {stage.mlflow_calls:<6} {target}"
        )
    for result in (small, large):
        stages = result.stages
        steps = ("sense", "validate changed", "train", "gate and release")
        pipeline = sum(stages[f"1 changed: {step}"].seconds for step in steps)
        ratio = pipeline / result.single_adapter
        ideal = result.single_per_worker * result.customers / WORKERS
        fanout = stages[ONE_AT_A_TIME].seconds / ideal
        packing = stages[ONE_AT_A_TIME].seconds / stages["train all"].seconds
        at = f"at {result.customers}:"
        lines += [
            f"{at} commit -> release, 1 changed customer: {pipeline:.2f} s = {ratio:.2f}x training it alone "
            f"({result.single_adapter:.2f} s) (target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})",
            f"{at} train all one at a time {stages[ONE_AT_A_TIME].seconds:.1f} s = {fanout:.2f}x (sum of "
            f"single trainings / {WORKERS} workers = {result.single_per_worker:.2f} s x {result.customers} / "
            f"{WORKERS} = {ideal:.1f} s) (target <= 1.2x: {'met' if fanout <= 1.2 else 'MISSED'})",
            f"{at} train all packed {stages['train all'].seconds:.1f} s: {packing:.2f}x faster than one at a "
            f"time (target >= 1.5x: {'met' if packing >= 1.5 else 'MISSED'})",
        ]
    return lines


def plot(results: list[SizeResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 6))
    sizes = [r.customers for r in results]
    for name in results[-1].stages:
        axes.plot(sizes, [r.stages[name].seconds for r in results], marker="o", label=name)
    axes.plot(
        sizes,
        [results[0].stages["train all"].seconds * s / sizes[0] for s in sizes],
        "k:",
        label="linear from train all",
    )
    axes.set(
        xscale="log", yscale="log", xlabel="customers", ylabel="seconds", title="Time per stage against N"
    )
    axes.legend(fontsize=7, ncol=2)
    axes.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--examples", type=int, default=40, help="examples per customer")
    parser.add_argument(
        "--rows-per-customer", type=int, default=4, help="requests per customer in the partition"
    )
    parser.add_argument("--changed", type=int, default=50, help="customers the second commit changes")
    parser.add_argument(
        "--spark",
        choices=("cluster", "embedded"),
        default="cluster",
        help="cluster: a Spark standalone master, 2 workers and a thrift Hive metastore on loopback "
        "(retrain.cluster); embedded: local[*] with Derby",
    )
    parser.add_argument("--plot", type=Path, default=Path("var/bench/scale.png"))
    parser.add_argument("--keep", type=Path, help="keep the work folder here instead of a temporary one")
    args = parser.parse_args()
    if args.changed * 10 > args.customers // 10 * 10 or args.changed < 1:
        parser.error(f"--changed must be between 1 and a tenth of --customers ({args.customers // 10})")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("retrain.fanout.local").setLevel(logging.INFO)  # the fan-out's progress lines
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # The figures, not library chatter (inherited by the training workers and the MLflow server).
    os.environ.update(
        {
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "MLFLOW_LOGGING_LEVEL": "ERROR",
            "PYTHONWARNINGS": "ignore::FutureWarning,ignore::UserWarning",
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        }
    )
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    try:  # a kept folder starts over each run, and only ever one an earlier run marked
        root = (
            claim(args.keep, BENCH_WORK, fresh=True)
            if args.keep
            else Path(tempfile.mkdtemp(prefix="retrain-scale-"))
        )
    except OutputPathError as error:
        parser.error(str(error))
    with ExitStack() as running:
        running.callback(lambda: None if args.keep else shutil.rmtree(root, ignore_errors=True))
        if args.spark == "cluster":
            cluster = running.enter_context(local_cluster(root / "cluster", warehouse=root / "warehouse"))
            os.environ.update(cluster.env())
            print(
                f"local cluster up in {cluster.started_in:.0f} s: master {cluster.master_url} "
                f"(UI {cluster.master_ui_url}), Hive metastore {cluster.metastore_uri}"
            )
        settings = SparkSettings.from_env(warehouse=str(root / "warehouse"))
        spark = spark_session(replace(settings, conf={"spark.ui.showConsoleProgress": "false"}))
        running.callback(spark.stop)  # before the cluster under it stops
        spark.conf.set("spark.sql.shuffle.partitions", str(os.cpu_count() or 2))
        print(
            f"Spark {spark.version}, master {spark.sparkContext.master}; started {dt.datetime.now():%H:%M:%S}"
        )
        spark.range(4).mapInPandas(lambda batches: batches, "id long").count()  # Python workers up, untimed
        results = [
            run_size(size, root, spark, args.examples, args.rows_per_customer, args.changed)
            for size in (args.customers // 10, args.customers)
        ]
        for line in summary(*results):
            print(line)
        plot(results, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
