"""Benchmark: from a Dolt commit that changes one customer to a new release, with 100 released.

Setup (its time is the measured full retrain): a doltlite repo of 100 customers, all trained with
the local fan-out (2 worker processes), promoted and released; the watermark at the head.

Then an analyst commit changes one customer and the pipeline runs the way ``retrain_on_commit``
does, in one warm process: sense the range and its changed customers -> validate them with the
Great Expectations suite -> train (one customer: in this process) -> promotion gate -> register
the release of all 100 adapters -> advance the watermark. Beside it, in the same process, the
same adapter is trained and registered alone (the baseline).

Targets: commit -> release <= 1.5x the single adapter's time, and >= 20x faster than retraining
all 100 (measured here: the setup's fan-out).

The process is warmed first (one adapter trained, Great Expectations loaded), as a long-running
worker is; Airflow adds each task process's own start-up on top (see the README).

Run: ``.venv/bin/python bench/commit_to_release.py [--customers 100]``
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import EXAMPLES_TABLE, seed_training_repo
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import CommitWatermark
from retrain.fanout.local import train_customers
from retrain.release.build import promote_all
from retrain.release.store import ReleaseStore
from retrain.validation.gate import validate_commit
from retrain.validation.suite import PACKAGED_SUITE

PARAMS = TrainingParams(epochs=2, min_examples=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--examples", type=int, default=60, help="examples per customer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        store = ReleaseStore.open(uri)
        seeded = seed_training_repo(work / "training.db", customers=args.customers, examples=args.examples)
        print(f"{args.customers} customers x {args.examples} examples; training params {PARAMS}")

        started = time.perf_counter()
        everyone = train_customers(
            str(seeded.path),
            table=EXAMPLES_TABLE,
            commit="main",
            customers=seeded.customers,
            parallelism=2,
            params=PARAMS,
            mlflow_uri=uri,
        )
        full_retrain = time.perf_counter() - started
        assert not everyone.failed, everyone.failed
        first = promote_all(store, {a.customer: a.version for a in everyone.succeeded}, floor=None).event
        print(
            f"full retrain of {args.customers} adapters (local fan-out, 2 workers): {full_retrain:.1f} s "
            f"({full_retrain / args.customers:.2f} s per adapter), release {first.release_id}"
        )

        changed = seeded.customers[len(seeded.customers) // 2]
        with DoltRepository.open(str(seeded.path)) as repo:
            watermark = CommitWatermark(repo, "bench")
            watermark.advance(repo.head())
            # Warm this process as a long-running worker is: one adapter trained and registered
            # (not promoted), Great Expectations loaded; then both timings below are warm.
            train_and_register(
                repo,
                table=EXAMPLES_TABLE,
                commit="main",
                customer=seeded.customers[0],
                params=PARAMS,
                mlflow_uri=uri,
                force=True,
            )
            validate_commit(repo, EXAMPLES_TABLE, "main", PACKAGED_SUITE, customers=[seeded.customers[0]])

            repo.execute(
                Statement(
                    "UPDATE examples SET text = text || ' (reviewed)' WHERE customer_id = ?", (changed,)
                )
            )
            commit = repo.commit(f"review {changed}'s examples")

            def train_alone() -> float:
                started = time.perf_counter()
                train_and_register(
                    repo,
                    table=EXAMPLES_TABLE,
                    commit=commit,
                    customer=changed,
                    params=PARAMS,
                    mlflow_uri=uri,
                    force=True,
                )
                return time.perf_counter() - started

            # Baseline before and after the pipeline (the mean), so neither side trains those
            # tensor shapes first; the pipeline then trains with force instead of reusing the
            # baseline's identical version.
            alone = [train_alone()]
            stages: dict[str, float] = {}
            clock = time.perf_counter()

            def lap(stage: str) -> None:
                nonlocal clock
                now = time.perf_counter()
                stages[stage] = now - clock
                clock = now

            commit_range = watermark.sense(EXAMPLES_TABLE, "customer_id")
            assert commit_range is not None
            customers = sorted(commit_range.changed.keys)
            lap("sense")
            report = validate_commit(repo, EXAMPLES_TABLE, commit, PACKAGED_SUITE, customers=customers)
            lap("validate")
            trained = train_customers(
                str(seeded.path),
                table=EXAMPLES_TABLE,
                commit=commit,
                customers=report.healthy_customers,
                params=PARAMS,
                mlflow_uri=uri,
                force=True,
            )
            lap("train")
            second = promote_all(
                store, {a.customer: a.version for a in trained.succeeded}, tolerance=1.0, floor=None
            ).event
            lap("gate and release")
            watermark.advance(commit)
            lap("watermark")
            pipeline = sum(stages.values())
            alone.append(train_alone())
            single = sum(alone) / len(alone)
            assert customers == [changed], customers
            assert second.release_id != first.release_id

    print(
        f"  one adapter trained and registered alone:        {single:6.2f} s "
        f"(mean of {alone[0]:.2f} s before and {alone[1]:.2f} s after the pipeline)"
    )
    print(
        f"  commit -> new release (sense, validate, train, gate, release of {args.customers}): "
        f"{pipeline:6.2f} s = {pipeline / single:.2f}x the single adapter (target <= 1.5x)"
    )
    print("    stages: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items()))
    print(
        f"  full retrain of all {args.customers} (measured above): {full_retrain:6.1f} s; "
        f"commit -> release is {full_retrain / pipeline:.0f}x faster (target >= 20x)"
    )


if __name__ == "__main__":
    main()
