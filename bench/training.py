"""Benchmark: adapters per hour, one customer at a time against packed, side by side in one run.

For each size (examples per customer) the same synthetic customers train:
1. one at a time, with ``train_adapter`` (what a worker did before packing), on the first
   ``--alone`` customers;
2. packed, ``train_packed`` with K slots, for each K in ``--packs``, on the first K customers.

Each run is its own process (its peak memory is its own); the table gives adapters per hour, the
ratio to one at a time, the largest difference of any adapter parameter and of any holdout metric
from the same customer trained alone (``lora_dropout`` 0: they should agree to float rounding), and
peak memory (resident on CPU, allocated on CUDA). No MLflow, Dolt or Spark: only the trainers.

Targets (issue 23): CPU, K=32 at 40 examples >= 1.5x one at a time; a pack of 128 MiniLM customers
<= 4 GiB resident; CUDA, >= 100,000 MiniLM-shape and >= 30,000 BERT-base-shape adapters per GPU-hour.

Run: ``.venv/bin/python bench/training.py [--device cuda --base-shape minilm|bert-base]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: the bench modules

TARGETS = {"minilm": 100_000, "bert-base": 30_000}  # adapters per GPU-hour


def customer_rows(customers: int, examples: int) -> dict[str, Any]:
    import pandas as pd

    from retrain.demo.corpus import customer_profiles, generate_examples

    frames, next_id = {}, 1
    for profile in customer_profiles(customers, seed=11):
        examples_of = generate_examples(profile, examples, seed=11)
        frames[profile.customer_id] = pd.DataFrame(
            [{"example_id": next_id + i, "text": e.text, "label": e.label} for i, e in enumerate(examples_of)]
        )
        next_id += examples
    return frames


def _prepare(device: str) -> None:
    import torch

    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def _peak(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_alone(task: dict[str, Any]) -> dict[str, Any]:
    """One customer after another, in this (fresh) process; returns seconds and each result."""
    from retrain.adapters.training import TrainingParams, train_adapter

    _prepare(task["device"])
    params = TrainingParams(**task["params"])
    rows = customer_rows(task["customers"], task["examples"])
    out = Path(task["out"])
    started = time.perf_counter()
    metrics = {}
    for customer, frame in rows.items():
        result = train_adapter(
            frame,
            customer=customer,
            commit="c0",
            base_model=task["base"],
            params=params,
            out_dir=out / customer,
        )
        metrics[customer] = result.metrics
    return {"seconds": time.perf_counter() - started, "metrics": metrics, "peak": _peak(task["device"])}


def run_packed(task: dict[str, Any]) -> dict[str, Any]:
    """``customers`` customers in one pack of that many slots; compares with the adapters trained alone."""
    from safetensors.torch import load_file

    from retrain.adapters.packed import PackJob, train_packed
    from retrain.adapters.training import TrainingParams, TrainingResult

    _prepare(task["device"])
    params = TrainingParams(**task["params"])
    rows = customer_rows(task["customers"], task["examples"])
    out, alone = Path(task["out"]), Path(task["alone_out"])
    jobs = [PackJob(customer, "c0", frame, out / customer) for customer, frame in rows.items()]
    started = time.perf_counter()
    results = list(train_packed(jobs, base_model=task["base"], params=params, pack_size=len(jobs)))
    seconds = time.perf_counter() - started
    failed = [r.customer for r in results if not isinstance(r, TrainingResult)]
    parameter, metric = 0.0, 0.0
    for result in results:
        reference = alone / result.customer / "adapter_model.safetensors"
        if not isinstance(result, TrainingResult) or not reference.is_file():
            continue
        ours, theirs = load_file(result.adapter_dir / "adapter_model.safetensors"), load_file(reference)
        parameter = max(parameter, *(float((ours[k] - theirs[k]).abs().max()) for k in ours))
        expected = task["alone_metrics"][result.customer]
        metric = max(metric, *(abs(result.metrics[k] - v) for k, v in expected.items()))
    return {
        "seconds": seconds,
        "failed": failed,
        "parameter": parameter,
        "metric": metric,
        "peak": _peak(task["device"]),
    }


def in_fresh_process(function: Any, task: dict[str, Any]) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(function, (task,))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--base-shape", choices=("packaged", "minilm", "bert-base", "bert-large"), default="packaged"
    )
    parser.add_argument("--sizes", default="40,200", help="examples per customer, comma-separated")
    parser.add_argument("--packs", default="8,32,128", help="pack sizes K, comma-separated")
    parser.add_argument("--alone", type=int, default=8, help="customers trained one at a time per size")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    from retrain.quiet import quiet_libraries

    quiet_libraries()  # before the runs' processes start: they inherit its warning filters
    sizes = [int(s) for s in args.sizes.split(",")]
    packs = [int(k) for k in args.packs.split(",")]
    params = {"epochs": args.epochs, "batch_size": 16, "min_examples": 10}
    print(
        f"training: {args.base_shape} base on {args.device}, {args.epochs} epochs, batch 16, "
        f"packs {packs}, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="retrain-bench-training-") as tmp:
        work = Path(tmp)
        if args.device == "cuda" or args.base_shape != "packaged":
            from base_shapes import base_model_folder

            base = base_model_folder(args.base_shape, work)
        else:
            from retrain.adapters.model import resolve_base_model

            base = str(resolve_base_model())
        header = (
            f"{'examples':>8}  {'trainer':<14}  {'adapters/h':>11}  {'vs alone':>8}  {'max dparam':>10}  "
        )
        header += f"{'max dmetric':>11}  {'peak memory':>11}"
        lines = [header]
        for examples in sizes:
            common = {"device": args.device, "base": base, "examples": examples, "params": params}
            alone_out = work / f"alone-{examples}"
            print(f"  {examples} examples: {args.alone} customers one at a time ...", flush=True)
            alone = in_fresh_process(run_alone, {**common, "customers": args.alone, "out": str(alone_out)})
            alone_rate = args.alone * 3600 / alone["seconds"]
            lines.append(
                f"{examples:>8}  {'one at a time':<14}  {alone_rate:>11,.0f}  {'1.00x':>8}  "
                f"{'-':>10}  {'-':>11}  {alone['peak'] / 2**30:>9.2f} GiB"
            )
            for k in packs:
                print(f"  {examples} examples: a pack of {k} ...", flush=True)
                packed = in_fresh_process(
                    run_packed,
                    {
                        **common,
                        "customers": k,
                        "out": str(work / f"packed-{examples}-{k}"),
                        "alone_out": str(alone_out),
                        "alone_metrics": alone["metrics"],
                    },
                )
                rate = k * 3600 / packed["seconds"]
                failed = f"  ({len(packed['failed'])} failed)" if packed["failed"] else ""
                lines.append(
                    f"{examples:>8}  {f'packed K={k}':<14}  {rate:>11,.0f}  {rate / alone_rate:>7.2f}x  "
                    f"{packed['parameter']:>10.1e}  {packed['metric']:>11.4f}  "
                    f"{packed['peak'] / 2**30:>9.2f} GiB{failed}"
                )
                print(lines[-1], flush=True)
        print("\n".join(["", *lines]))
        if args.device == "cuda" and args.base_shape in TARGETS:
            print(f"target: {TARGETS[args.base_shape]:,} {args.base_shape}-shape adapters per GPU-hour")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
