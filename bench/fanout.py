"""Benchmark the training fan-out, printing three sets of figures from one run.

1. Bytes of the submitted Argo Workflow for 10, 100, 1,000 and 10,000 customers
   (targets: <= 32 KB at 1,000 and <= 64 KB at 10,000; Argo rejects objects over 1 MiB).
2. Local fan-out of 8 adapters with 2 workers against the same 8 one after another
   (target: wall time <= 0.65x sequential).
3. Per-adapter overhead of the ``retrain train`` entrypoint run as a fresh process (process start,
   imports, base-model load, data read, MLflow logging) against its training loop, at the demo size
   (target: overhead <= 50% of training time); and the same split in a warm process, which is what
   every adapter after a worker's or shard pod's first one costs.

Run: ``.venv/bin/python bench/fanout.py [--skip-training]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from retrain.demo.seed import seed_training_repo
from retrain.fanout.argo import ArgoTrainingSpec, build_submission, build_template, pods_for
from retrain.fanout.local import train_customers


def workflow_sizes() -> None:
    spec = ArgoTrainingSpec()
    template = json.dumps(build_template(spec).to_dict())
    print(f"1. Argo objects (the WorkflowTemplate is applied once: {len(template):,} bytes)")
    for count in (10, 100, 1_000, 10_000):
        customers = [f"customer_{i:05d}" for i in range(count)]
        stored: dict[str, str] = {}
        workflow = build_submission(
            spec,
            table="examples",
            commit="0" * 40,
            customers=customers,
            parent_run_id="0" * 32,
            store_artifact=stored.__setitem__,
        )
        size = len(json.dumps(workflow.to_dict()))
        where = "parent-run artifact" if stored else "inline"
        pods = pods_for(count, spec)
        print(f"   {count:>6,} customers: Workflow {size:>6,} bytes, {pods:>3} pods, customer list {where}")


def local_fanout(workdir: Path) -> None:
    seeded = seed_training_repo(workdir / "training.db", customers=8, examples=200)
    customers = seeded.customers
    timings = {}
    for parallelism in (1, 2):
        uri = f"sqlite:///{workdir / f'mlflow-{parallelism}.db'}"
        started = time.perf_counter()
        result = train_customers(
            str(seeded.path),
            table="examples",
            commit="main",
            customers=customers,
            parallelism=parallelism,
            mlflow_uri=uri,
        )
        timings[parallelism] = time.perf_counter() - started
        assert not result.failed, result.failed
        fits = [_metric(uri, a.run_id, "fit_seconds") for a in result.succeeded]
        wall = timings[parallelism]
        print(
            f"   parallelism {parallelism}: {wall:6.1f} s wall for {len(customers)} adapters "
            f"(mean fit {sum(fits) / len(fits):.1f} s each)"
        )
    print(f"   2 workers / sequential = {timings[2] / timings[1]:.2f}x  (target <= 0.65x)")
    entrypoint_overhead(seeded.path, customers[0], workdir)
    warm_overhead(seeded.path, customers[1], workdir)


def entrypoint_overhead(repo: Path, customer: str, workdir: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow-entrypoint.db'}"
    MlflowClient(uri).search_experiments()  # a deployment's store exists: keep its one-off migration out
    retrain = Path(sys.executable).with_name("retrain")
    started = time.perf_counter()
    out = subprocess.run(
        [
            str(retrain),
            "train",
            "--repo",
            str(repo),
            "--table",
            "examples",
            "--commit",
            "main",
            "--customer",
            customer,
            "--mlflow-uri",
            uri,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - started
    run_id = json.loads(out)["run_id"]
    fit, load = _metric(uri, run_id, "fit_seconds"), _metric(uri, run_id, "base_load_seconds")
    other = wall - fit - load
    print(f"3. `retrain train` as a fresh process, {customer} (200 examples, 4 epochs): {wall:.1f} s wall")
    print(
        f"   training loop {fit:.1f} s | base-model load {load:.1f} s | process start, imports, data read, "
        f"MLflow logging and registration {other:.1f} s"
    )
    print(f"   overhead = {(wall - fit) / fit:.0%} of training time  (target <= 50%)")


def warm_overhead(repo: Path, customer: str, workdir: Path) -> None:
    """What each further adapter costs in a process that already trained one (pool workers, shard pods)."""
    from retrain.adapters.registry import train_and_register
    from retrain.dolt import DoltRepository

    uri = f"sqlite:///{workdir / 'mlflow-warm.db'}"
    with DoltRepository.open(str(repo)) as dolt:
        train_and_register(dolt, table="examples", commit="main", customer=customer, mlflow_uri=uri)
        started = time.perf_counter()
        again = train_and_register(
            dolt, table="examples", commit="main", customer=customer, mlflow_uri=uri, force=True
        )
        wall = time.perf_counter() - started
    fit = _metric(uri, again.run_id, "fit_seconds")
    print(
        f"   the same entrypoint in a warm process (pool worker, shard pod), {customer}: {wall:.1f} s, "
        f"training loop {fit:.1f} s, overhead {(wall - fit) / fit:.0%} of training time"
    )


def _metric(uri: str, run_id: str, key: str) -> float:
    from mlflow.tracking import MlflowClient

    return float(MlflowClient(uri).get_run(run_id).data.metrics[key])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-training", action="store_true", help="only the workflow sizes")
    args = parser.parse_args()
    workflow_sizes()
    if not args.skip_training:
        print("2. local fan-out of 8 demo adapters")
        with tempfile.TemporaryDirectory() as workdir:
            local_fanout(Path(workdir))


if __name__ == "__main__":
    main()
