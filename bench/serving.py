"""Benchmark: the multi-adapter engine, side by side with the ways it replaces, in one run.

(a) engine throughput on rows mixing 100 customers, against the ceiling (the same rows, one merged
    adapter, batched the same way) and against the naive way (rows grouped by customer, a merged
    copy of the base per customer, loaded as Spark scoring loaded them before the engine).
    Targets: mixed >= 0.85x the ceiling; >= 3x the naive way.
(b) memory above the base model with 10, 100 and 1,000 adapters loaded, each count in a fresh
    process, against the adapters' bytes on disk, and what merged copies would need.
    Target: <= 1.5x the adapters' bytes.
(c) the model server under load (needs ``make venv-serve``; ``bench/server_load.py``), customers
    drawn from 1,000: 32 closed-loop clients (requests/s >= 0.7x (a)'s ceiling, p99 <= 250 ms);
    16-row requests (rows/s >= 0.7x the ceiling); an open loop at 1.5x capacity (answers on time
    or prompt 503s, no timeouts, p99 of the accepted <= 500 ms, goodput >= 0.9x capacity); the
    server idle within 1 s after the clients leave.
(d) Spark scoring of the same rows with a 1,000-adapter release against an 8-adapter one.
    Targets: rows/s >= 0.8x the 8-adapter case; a Python worker's peak memory flat in N within
    1.5x the adapters' bytes.

Adapters are synthetic: one trained adapter, copied with its LoRA weights perturbed (see
``bench/synthetic.py``). Run: ``.venv/bin/python bench/serving.py [--part a,b,c,d]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from synthetic import synthetic_customer, synthetic_release

from retrain.outputs import BENCH_WORK, OutputPathError, claim

if TYPE_CHECKING:
    import pandas as pd

ROWS_PER_CUSTOMER = 40


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", default="a,b,c,d", help="comma-separated parts to run (default all)")
    parser.add_argument("--work", type=Path, help="keep synthetic releases here (default a temporary folder)")
    parser.add_argument(
        "--serve-option", action="append", default=[], help="extra `retrain serve` flag for (c)"
    )
    args = parser.parse_args()
    parts = set(args.part.split(","))
    try:
        kept = claim(args.work, BENCH_WORK) if args.work else None  # releases kept from earlier runs
    except OutputPathError as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        work = kept or Path(scratch)
        ceiling = throughput(work) if "a" in parts else None
        if "b" in parts:
            memory(work)
        if "c" in parts:
            server_load(work, ceiling, args.serve_option)
        if "d" in parts:
            spark_scoring(work)
    if ceiling is not None:
        print(json.dumps({"ceiling_rows_per_s": round(ceiling, 1)}))


def requests_for(customers: int, per_customer: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """``customers x per_customer`` demo-corpus texts, shuffled, with their customer ids."""
    from retrain.demo.corpus import customer_profiles, generate_examples

    profiles = customer_profiles(8)
    rows = [
        (example.text, synthetic_customer(index))
        for index in range(customers)
        for example in generate_examples(profiles[index % len(profiles)], per_customer, seed=seed + index)
    ]
    random.Random(seed).shuffle(rows)
    return [t for t, _ in rows], [c for _, c in rows]


def throughput(work: Path) -> float:
    import torch

    from retrain.adapters.model import AdapterClassifier, default_base_model
    from retrain.engine import AdapterEngine
    from retrain.release.context import ADAPTER_SUBDIR

    customers = 100
    release = synthetic_release(work, customers)
    texts, owners = requests_for(customers, ROWS_PER_CUSTOMER)
    base = default_base_model()
    print(
        f"(a) engine throughput: {len(texts):,} rows, {customers} customers x {ROWS_PER_CUSTOMER}, shuffled; "
        f"{torch.get_num_threads()} torch threads; synthetic adapters (one trained, perturbed copies)"
    )
    engine = AdapterEngine.from_release_dir(release, device="cpu")
    engine.predict(texts[:64], owners[:64])  # warm: kernels, and not timing the first adapter loads
    engine.predict(texts, owners)

    def timed(run: object) -> float:
        started = time.perf_counter()
        run()  # type: ignore[operator]
        return time.perf_counter() - started

    mixed = min(timed(lambda: engine.predict(texts, owners)) for _ in range(2))
    one_customer = min(timed(lambda: engine.predict(texts, [owners[0]] * len(texts))) for _ in range(2))
    merged = AdapterClassifier.load(release / ADAPTER_SUBDIR.format(customer=owners[0]), base, merged=True)
    by_length = sorted(texts, key=lambda t: len(merged.tokenizer(t)["input_ids"]))  # the engine's batching
    merged.predict_proba(by_length[:64])
    ceiling = min(timed(lambda: merged.predict_proba(by_length, batch_size=64)) for _ in range(2))

    loading = 0.0

    def naive() -> None:
        nonlocal loading
        for customer in sorted(set(owners)):
            rows = [t for t, c in zip(texts, owners, strict=True) if c == customer]
            started = time.perf_counter()
            copy = AdapterClassifier.load(
                release / ADAPTER_SUBDIR.format(customer=customer), base, merged=True
            )
            loading += time.perf_counter() - started
            copy.predict_proba(rows, batch_size=64)

    naive_seconds = timed(naive)
    rate = {
        name: len(texts) / s
        for name, s in [
            ("ceiling", ceiling),
            ("mixed", mixed),
            ("one", one_customer),
            ("naive", naive_seconds),
        ]
    }
    print(f"  ceiling: one merged adapter, same rows, same batches     {rate['ceiling']:7.0f} rows/s")
    print(
        f"  engine, 100 customers mixed in every batch              {rate['mixed']:7.0f} rows/s"
        f" = {rate['mixed'] / rate['ceiling']:.2f}x ceiling (target >= 0.85x)"
    )
    print(
        f"  engine, all rows one customer                           {rate['one']:7.0f} rows/s"
        f" = {rate['one'] / rate['ceiling']:.2f}x ceiling"
    )
    print(
        f"  naive: group by customer, merged copy each (loads incl.) {rate['naive']:6.0f} rows/s;"
        f" engine = {rate['mixed'] / rate['naive']:.1f}x naive (target >= 3x)"
    )
    print(
        f"    of the naive way's {naive_seconds:.1f}s, {loading:.1f}s load merged copies and "
        f"{naive_seconds - loading:.1f}s score ({len(texts) / (naive_seconds - loading):.0f} rows/s)"
    )
    return rate["ceiling"]


def server_load(work: Path, ceiling: float | None, options: list[str]) -> None:
    """Part (c): ``bench/server_load.py`` against issue 24's server targets."""
    import server_load

    serve = Path(__file__).resolve().parents[1] / ".venv-serve" / "bin" / "retrain"
    if not serve.exists():
        print(f"(c) server under load: skipped, {serve} is missing (make venv-serve builds it)")
        return
    texts, _ = requests_for(100, ROWS_PER_CUSTOMER, seed=11)
    server_load.run(work, ceiling, options, serve, texts)


def memory(work: Path) -> None:
    print("(b) memory above the base model (each count in a fresh process)")
    measured: dict[int, tuple[int, int]] = {}  # count -> (resident bytes above the base, file bytes)
    for count in (10, 100, 1000):
        release = synthetic_release(work, count)
        disk = sum(p.stat().st_size for p in release.rglob("adapter_model.safetensors"))
        probe = subprocess.run(
            [sys.executable, __file__, "--memory-probe", str(release), str(count)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
        figures = json.loads(probe.stdout.strip().splitlines()[-1])
        above = figures["rss_adapters"] - figures["rss_base"]
        print(
            f"  {count:5d} adapters: {above / 2**20:7.1f} MiB resident above the base, adapters' files "
            f"{disk / 2**20:6.1f} MiB -> {above / disk:.2f}x (target <= 1.5x); "
            f"merged copies would need {count * figures['merged_copy'] / 2**30:6.2f} GiB "
            f"({figures['merged_copy'] / 2**20:.0f} MiB per copy, measured)"
        )
        measured[count] = (above, disk)
    (small, small_disk), (large, large_disk) = measured[100], measured[1000]
    print(
        f"  from 100 to 1,000 adapters: {(large - small) / 2**20:.0f} MiB more resident for "
        f"{(large_disk - small_disk) / 2**20:.0f} MiB more files = "
        f"{(large - small) / (large_disk - small_disk):.2f}x; "
        "the rest is a fixed working set (one batch's per-row factors, the allocator's slack)"
    )


def _memory_probe(release: str, count: int) -> None:
    """In a fresh process: RSS with the base loaded, then with every adapter loaded, then one merged copy."""
    import gc

    from retrain.adapters.model import AdapterClassifier, default_base_model
    from retrain.engine import AdapterEngine
    from retrain.release.context import ADAPTER_SUBDIR

    engine = AdapterEngine.from_release_dir(release, device="cpu", batch_size=64)
    customers = [synthetic_customer(i) for i in range(count)]
    chunks = [[customers[(start + i) % count] for i in range(64)] for start in range(0, count, 64)]
    text = ["load this adapter"] * 64  # every batch the same shape: kernels' per-shape caches stay put
    engine.predict(text, [customers[0]] * 64)
    gc.collect()
    rss_base = _rss()  # the base model warmed on these shapes, and one adapter (~300 kB, counted twice)
    for chunk in chunks:
        engine.predict(text, chunk)
    gc.collect()
    rss_adapters = _rss()
    assert len(engine.cache) == count, "the cache budget evicted adapters: raise cache_bytes"
    before = _rss()
    merged = AdapterClassifier.load(
        Path(release) / ADAPTER_SUBDIR.format(customer=customers[0]), default_base_model(), merged=True
    )
    merged.predict_proba(["one row"])
    print(json.dumps({"rss_base": rss_base, "rss_adapters": rss_adapters, "merged_copy": _rss() - before}))


def spark_scoring(work: Path) -> None:
    print("(d) Spark scoring (the job's mapInPandas scorer): the same rows, 8- and 1,000-adapter releases,")
    print("    each in a fresh local Spark (so a worker's peak memory is its own)")
    results = {}
    for count in (8, 1000):
        synthetic_release(work, count)  # built here, not in the timed process
        probe = subprocess.run(
            [sys.executable, __file__, "--spark-probe", str(work), str(count)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
        results[count] = json.loads(probe.stdout.strip().splitlines()[-1])
    small, large = results[8], results[1000]
    print(f"  {small['rows']:,} rows, {small['slots']} Python workers (local[{small['slots']}])")
    for count, figures in results.items():
        print(
            f"  {count:5d} adapters: {figures['rows_per_s']:6.0f} rows/s; Python worker peak RSS "
            f"{figures['worker_peak_rss'] / 2**20:6.0f} MiB; "
            f"adapters' files {figures['adapter_bytes'] / 2**20:6.1f} MiB"
        )
    print(
        f"  rows/s with 1,000 vs 8 adapters: {large['rows_per_s'] / small['rows_per_s']:.2f}x "
        "(target >= 0.8x)"
    )
    growth = large["worker_peak_rss"] - small["worker_peak_rss"]
    extra_bytes = large["adapter_bytes"] - small["adapter_bytes"]
    print(
        f"  worker peak memory grew {growth / 2**20:.0f} MiB for {extra_bytes / 2**20:.0f} MiB more adapter "
        f"files: {growth / extra_bytes:.2f}x their bytes (target <= 1.5x)"
    )


def _spark_probe(work: str, count: int) -> None:
    """In a fresh process: score the rows with one release; print the rate and the workers' peak RSS."""
    import shutil

    from pyspark.sql import SparkSession

    from retrain.adapters.model import default_base_model
    from retrain.scoring.inference import OUTPUT_SCHEMA, scorer

    root = Path(work)
    slots = os.cpu_count() or 2
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.master(f"local[{slots}]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    release = root / f"release-{count}"  # written by the parent process
    texts, _ = requests_for(100, ROWS_PER_CUSTOMER, seed=3)
    owners = [synthetic_customer(i % count) for i in range(len(texts))]
    frame = (
        spark.createDataFrame(
            [(f"r{i}", c, t) for i, (t, c) in enumerate(zip(texts, owners, strict=True))],
            "request_id string, customer_id string, text string",
        )
        .repartition(slots)
        .cache()
    )
    frame.count()
    shipped = root / f"shipped-{count}"
    shutil.rmtree(shipped, ignore_errors=True)
    shutil.copytree(release, shipped)
    spark.sparkContext.addFile(str(shipped), recursive=True)
    score = scorer(shipped.name, default_base_model(), 64, 512 * 2**20)
    peaks = root / f"peaks-{count}"
    shutil.rmtree(peaks, ignore_errors=True)
    peaks.mkdir()

    def score_and_record_peak(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        yield from score(batches)
        (peaks / str(os.getpid())).write_text(str(_peak_rss()))  # local mode: the same file system

    frame.mapInPandas(score, schema=OUTPUT_SCHEMA).count()  # warm: workers, engine, adapters
    started = time.perf_counter()
    scored = frame.mapInPandas(score_and_record_peak, schema=OUTPUT_SCHEMA).count()
    seconds = time.perf_counter() - started
    worker_peak = max(int(p.read_text()) for p in peaks.iterdir())
    spark.stop()
    print(
        json.dumps(
            {
                "rows": scored,
                "slots": slots,
                "rows_per_s": scored / seconds,
                "worker_peak_rss": worker_peak,
                "adapter_bytes": sum(p.stat().st_size for p in release.rglob("adapter_model.safetensors")),
            }
        )
    )


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pythonpath() -> str:
    here = Path(__file__).resolve()
    return os.pathsep.join([str(here.parents[1]), str(here.parent), os.environ.get("PYTHONPATH", "")])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-probe"]:
        _memory_probe(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--spark-probe"]:
        _spark_probe(sys.argv[2], int(sys.argv[3]))
    else:
        main()
