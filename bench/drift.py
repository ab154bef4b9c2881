"""Benchmark: what drift monitoring costs, side by side with the scoring it watches, in one run.

On one partition of ``--customers`` customers x ``--rows`` requests (demo-corpus texts), with a
release of synthetic adapters (``bench/synthetic.py``), each with a drift reference:

1. scoring without drift values (no references in the release: the engine computes no features);
2. scoring with drift values (the same pass also writes tokens, novelty and embedding distance);
3. the drift job over the scored partition (``retrain.drift.job.drift_partition``).

Targets: in the same pass (2 - 1 + 3) adds at most 20% to scoring (1); the drift job alone (3) is at
most 0.3x of scoring. Each variant runs twice, alternating, and the faster run counts.

Run: ``.venv/bin/python bench/drift.py [--customers 1000] [--rows 1000]`` (the issue's size: 1M rows,
about 20 minutes on 2 cores; ``--rows 50`` takes a few minutes).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from synthetic import synthetic_release

from retrain.adapters.model import default_base_model
from retrain.demo.corpus import customer_profiles
from retrain.drift.history import DriftHistory
from retrain.drift.job import drift_partition
from retrain.drift.recording import ReferenceJob, record_references
from retrain.drift.reference import REFERENCE_FILE
from retrain.outputs import RELEASE_CACHE, claim
from retrain.quiet import quiet_libraries
from retrain.release.context import ADAPTER_SUBDIR, RELEASE_ID_FILE
from retrain.release.store import ReleaseStore
from retrain.scoring.job import score_partition
from retrain.spark import SparkSettings, spark_session

DS = "2026-11-01"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="requests per customer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_libraries()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = synthetic_release(work, args.customers)
        release_id = (built / RELEASE_ID_FILE).read_text().strip()
        cache = claim(work / "cache", RELEASE_CACHE)
        release = cache / release_id  # scoring reads the release from its cache: no registry needed
        shutil.copytree(built, release)
        customers = sorted(p.name for p in (release / "adapters").iterdir())
        reference = _one_reference(release, customers[0])
        store = ReleaseStore.open(f"sqlite:///{work / 'mlflow.db'}")
        spark = spark_session(SparkSettings(warehouse=str(work / "warehouse")))
        _requests(spark, customers, args.rows)
        rows = args.customers * args.rows
        print(f"{rows:,} rows of {args.customers:,} customers, release {release_id[:12]}, 2 runs each")

        def score(with_references: bool) -> float:
            for customer in customers:
                path = release / ADAPTER_SUBDIR.format(customer=customer) / REFERENCE_FILE
                if with_references:
                    shutil.copyfile(reference, path)
                else:
                    path.unlink(missing_ok=True)
            started = time.perf_counter()
            score_partition(
                spark,
                store,
                release_id=release_id,
                input_table="requests",
                ds=DS,
                output_table="scores",
                workdir=cache,
            )
            return time.perf_counter() - started

        def drift() -> float:
            started = time.perf_counter()
            drift_partition(
                spark,
                store,
                release_id=release_id,
                ds=DS,
                workdir=cache,
                history=DriftHistory(store.tracking_uri),
            )
            return time.perf_counter() - started

        score(False)  # warm-up: Spark's Python workers, the base model in the OS cache; not counted
        plain, with_values, job = [], [], []
        for _ in range(2):
            plain.append(score(False))
            with_values.append(score(True))
            job.append(drift())
    scoring, featured, measured = min(plain), min(with_values), min(job)
    print(f"  scoring, no drift values:   {scoring:7.1f} s  ({rows / scoring:6.0f} rows/s)")
    print(f"  scoring with drift values:  {featured:7.1f} s  ({featured / scoring - 1:+.0%})")
    print(
        f"  drift job over the partition: {measured:5.1f} s  = {measured / scoring:.2f}x scoring "
        "(target <= 0.3x)"
    )
    in_pass = (featured + measured) / scoring - 1
    print(f"  drift in the same pass: {in_pass:+.0%} on scoring (target <= 20%)")


def _one_reference(release: Path, customer: str) -> Path:
    """A reference recorded as training records it (demo texts of the first customer's kind)."""
    profile = customer_profiles(1)[0]
    rng = random.Random(11)
    texts = [profile.sample(rng).text for _ in range(200)]
    adapter = release / ADAPTER_SUBDIR.format(customer=customer)
    record_references([ReferenceJob(customer, adapter, texts[:160], texts[160:])], default_base_model())
    kept = release.parent / REFERENCE_FILE
    shutil.copyfile(adapter / REFERENCE_FILE, kept)
    return kept


def _requests(spark: object, customers: list[str], per_customer: int) -> None:
    profiles = customer_profiles(len(customers))
    rng = random.Random(5)
    rows = [
        (f"{customer}-{n}", customer, profile.sample(rng).text, DS)
        for customer, profile in zip(customers, profiles, strict=True)
        for n in range(per_customer)
    ]
    spark.sql(  # type: ignore[attr-defined]
        "CREATE TABLE IF NOT EXISTS requests (request_id STRING, customer_id STRING, text STRING) "
        "PARTITIONED BY (ds STRING) STORED AS PARQUET"
    )
    frame = spark.createDataFrame(rows, ["request_id", "customer_id", "text", "ds"])  # type: ignore[attr-defined]
    frame.write.insertInto("requests", overwrite=True)


if __name__ == "__main__":
    main()
