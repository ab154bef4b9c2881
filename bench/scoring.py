"""Benchmark: scoring rows with a release's adapters, three ways, on the same rows in one run.

1. ceiling: plain in-process batched inference of the same adapters, each merged into its own copy
   of the base model (the fastest single-adapter path), no Spark;
2. the Spark job (``retrain.scoring.job.score_partition``: mapInPandas, one multi-adapter engine
   per Python worker);
3. a naive row-at-a-time Python UDF (each row scored alone; the model cache is kept, so this
   measures only the row-at-a-time cost). It runs on a sample, since it is slow; rows/s compare.

Targets: Spark >= 0.6x the ceiling, and >= 10x the naive UDF.

Run: ``.venv/bin/python bench/scoring.py [--rows-per-customer 5000] [--naive-rows 1000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from retrain.adapters.model import AdapterClassifier, default_base_model
from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import seed_training_repo, seed_warehouse
from retrain.dolt import DoltRepository
from retrain.release.build import promote_all
from retrain.release.store import ReleaseStore
from retrain.scoring.job import ReleaseFiles, score_partition

CUSTOMERS = 4
DS = "2026-11-01"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows-per-customer", type=int, default=5000)
    parser.add_argument("--naive-rows", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        store = ReleaseStore.open(uri)
        seeded = seed_training_repo(work / "training.db", customers=CUSTOMERS, examples=200)
        with DoltRepository.open(str(seeded.path)) as repo:
            trained = {
                customer: train_and_register(
                    repo,
                    table="examples",
                    commit="main",
                    customer=customer,
                    mlflow_uri=uri,
                    params=TrainingParams(epochs=1),
                ).version
                for customer in seeded.customers
            }
        release_id = promote_all(store, trained, floor=None).event.release_id
        seed_warehouse(
            work / "warehouse",
            customers=CUSTOMERS,
            start=dt.date(2026, 11, 1),
            days=1,
            rows_per_customer=args.rows_per_customer,
        )
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F

        spark = SparkSession.getActiveSession()
        assert spark is not None
        rows: pd.DataFrame = (
            spark.table("requests").where(F.col("ds") == DS).select("customer_id", "text").toPandas()
        )
        print(f"{len(rows):,} rows of {CUSTOMERS} customers, release {release_id}")

        release = ReleaseFiles.fetch(store, release_id, work / "cache")
        adapters = {a.customer: release.adapter_dir(a.customer) for a in release.manifest.adapters}
        base = default_base_model()
        started = time.perf_counter()
        for customer, group in rows.groupby("customer_id"):
            AdapterClassifier.load(adapters[str(customer)], base, merged=True).predict_proba(
                group["text"].tolist(), batch_size=64
            )
        ceiling = len(rows) / (time.perf_counter() - started)

        score_partition(
            spark,
            store,
            release_id=release_id,
            input_table="requests",
            ds=DS,
            output_table="warmup",
            workdir=work / "cache",
        )  # warm-up: starts Spark's Python workers; not timed
        started = time.perf_counter()
        report = score_partition(
            spark,
            store,
            release_id=release_id,
            input_table="requests",
            ds=DS,
            output_table="scores",
            workdir=work / "cache",
        )
        spark_rate = report.rows_scored / (time.perf_counter() - started)

        # Spread over every core, as the Spark job is.
        slots = int(spark.sparkContext.defaultParallelism)
        sample = spark.table("requests").where(F.col("ds") == DS).limit(args.naive_rows).repartition(slots)
        naive = _naive_udf(adapters, base)
        started = time.perf_counter()
        sample.select(naive("customer_id", "text").alias("score")).agg(F.sum("score")).collect()
        naive_rate = args.naive_rows / (time.perf_counter() - started)

    print(f"  ceiling (in-process, batched, no Spark): {ceiling:8.0f} rows/s")
    ratio = spark_rate / ceiling
    print(f"  Spark job (mapInPandas, engine per worker): {spark_rate:6.0f} rows/s = {ratio:.2f}x ceiling")
    print("    (target >= 0.6x the ceiling)")
    print(
        f"  naive row-at-a-time UDF ({args.naive_rows:,} rows):  {naive_rate:8.0f} rows/s; Spark job = "
        f"{spark_rate / naive_rate:.1f}x naive (target >= 10x)"
    )


def _naive_udf(adapters: dict[str, str], base: str):  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType

    cache: dict[str, AdapterClassifier] = {}

    def score_one(customer: str, text: str) -> float:
        from retrain.scoring.inference import use_task_cores

        use_task_cores()  # the same torch threads per task as the Spark job: only batching differs
        if customer not in cache:
            cache[customer] = AdapterClassifier.load(adapters[customer], base, merged=True)
        return float(cache[customer].predict_proba([text])[0, -1])

    return F.udf(score_one, DoubleType())


if __name__ == "__main__":
    main()
