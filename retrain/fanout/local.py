"""Train many customers' adapters on local worker processes: the embedded default fan-out.

Each worker process imports the training stack once and trains chunks of customers as packs
(:func:`train_and_register_pack`, the same code an Argo pod runs through ``retrain train-shard``);
``pack_size=1`` trains one customer at a time with :func:`train_and_register`. Failed adapters are
retried; a worker that dies (killed, out of memory) breaks its pool, so the customers it held in
flight are retried on a fresh pool, and training's idempotency reuses a version the dead worker had
already registered. Progress is logged with counts, rate and ETA; the pipeline is one MLflow parent
run with a child per adapter.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import wait as exits
from typing import Any

from retrain.adapters.registry import (
    PackRegistration,
    RegisteredAdapter,
    filter_value,
    train_and_register,
    train_and_register_pack,
)
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.errors import RetrainError
from retrain.fanout.parent_run import end_parent_run, start_parent_run
from retrain.tracking import tracking_uri

log = logging.getLogger(__name__)
METRICS = ("accuracy", "f1", "roc_auc")
# Customers per worker task at most: what a dead worker can cost, and how evenly work spreads.
MAX_CHUNK = 512
CLOSE_GRACE_SECONDS = 30  # for idle workers to leave once the pool shuts down (they unload torch)


@dataclass(frozen=True)
class FanoutResult:
    parent_run_id: str
    commit: str
    succeeded: list[RegisteredAdapter] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # customer -> error message
    seconds: float = 0.0

    def table(self) -> str:
        """A plain-text table of versions and metrics, one row per customer."""
        header = ("customer", "model version", "accuracy", "f1", "roc_auc", "status")
        rows = [
            (
                a.customer,
                f"{a.model_name} v{a.version}",
                *(_fmt(a.metrics.get(m)) for m in METRICS),
                "reused" if a.reused else "trained",
            )
            for a in sorted(self.succeeded, key=lambda a: a.customer)
        ] + [(c, "-", "-", "-", "-", f"FAILED: {e}") for c, e in sorted(self.failed.items())]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
        lines = [
            "  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
            for r in [header, *rows]
        ]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_worker_repo: DoltRepository | None = None


def _init_worker(repo_location: str, threads: int) -> None:
    """Per worker process: share the cores fairly and keep one repository connection."""
    import torch

    global _worker_repo
    torch.set_num_threads(threads)
    _worker_repo = DoltRepository.open(repo_location)


def _train_chunk(kwargs: dict[str, Any], customers: list[str], pack_size: int | None) -> PackRegistration:
    """One task of a worker: ``customers`` as one pack, or the one customer alone for ``pack_size=1``."""
    assert _worker_repo is not None
    if pack_size != 1:
        return train_and_register_pack(_worker_repo, customers=customers, pack_size=pack_size, **kwargs)
    (customer,) = customers
    try:
        return PackRegistration([train_and_register(_worker_repo, customer=customer, **kwargs)], {})
    except RetrainError as error:
        return PackRegistration([], {customer: error})


@contextmanager
def _spawn_with_this_module_as_main() -> Iterator[None]:
    """Spawned workers re-import the parent's ``__main__``; point them at this module instead.

    The caller's script may import Great Expectations, which imports PySpark's connect module,
    whose doctest check calls ``sys.exit(0)`` in a spawned child still running the ``-c``
    bootstrap: every worker would die before training. Workers need nothing from the caller's
    main module, so while a worker may be spawned (inside ``submit``), ``__main__`` names this one.
    """
    original = sys.modules["__main__"]
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = importlib.util.find_spec(__name__)
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        sys.modules["__main__"] = original


def train_customers(
    repo_location: str,
    *,
    table: str,
    commit: str,
    customers: Sequence[str],
    key_column: str = "customer_id",
    parallelism: int = 2,
    pack_size: int | None = None,
    retries: int = 1,
    params: TrainingParams | None = None,
    base_model: str | None = None,
    mlflow_uri: str | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
) -> FanoutResult:
    """Train and register one adapter per customer with at most ``parallelism`` worker processes.

    :param pack_size: customers a worker trains side by side (default: as many as its memory
        allows); 1 trains them one at a time.
    """
    uri = tracking_uri(mlflow_uri)
    with DoltRepository.open(repo_location) as repo:
        commit_hash = repo.resolve(commit)
    if parent_run_id is None:
        parent_run_id = start_parent_run(
            uri,
            commit=commit_hash,
            table=table,
            backend="local",
            customers=len(customers),
            run_name=f"train-{commit_hash[:12]}",
        ).run_id
    started = time.perf_counter()
    succeeded: list[RegisteredAdapter] = []
    failed: dict[str, str] = {}
    attempts = dict.fromkeys(customers, 0)
    workers = max(1, parallelism)
    threads = max(1, (os.cpu_count() or 2) // workers)
    common = {
        "table": table,
        "commit": commit_hash,
        "key_column": key_column,
        "params": params,
        "base_model": base_model,
        "mlflow_uri": uri,
        "parent_run_id": parent_run_id,
        "force": force,
    }
    chunk_size = chunk_size_for(len(customers), workers, pack_size)
    log.info(
        "training %d adapters at %s with %d worker(s), %s",
        len(customers),
        commit_hash,
        workers,
        "one at a time" if pack_size == 1 else f"packs of up to {pack_size or chunk_size} customers",
    )

    def new_pool() -> Executor:
        if len(customers) <= chunk_size:
            # One task trains in this process: a worker would only add its start-up (importing
            # torch, transformers, peft and MLflow, ~6 s) to the training.
            return _InlineExecutor(repo_location)
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(repo_location, threads),
        )

    def finished(customer: str, error: str | None) -> None:
        if error is not None:
            failed[customer] = error
        _progress(len(succeeded) + len(failed), len(customers), started, customer, error is not None)

    # At most one chunk per worker is submitted at a time, so a dying worker (which breaks the
    # pool and fails every future in it) only costs the customers that were in flight.
    queue = deque(customers)
    pending: dict[Future[PackRegistration], list[str]] = {}
    pool = new_pool()
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                chunk = [queue.popleft() for _ in range(min(chunk_size, len(queue)))]
                for customer in chunk:
                    attempts[customer] += 1
                with _spawn_with_this_module_as_main():
                    pending[pool.submit(_train_chunk, common, chunk, pack_size)] = chunk
            done = next(iter(wait(pending, return_when=FIRST_COMPLETED).done))
            chunk = pending.pop(done)
            try:
                outcome = done.result()
            except BrokenProcessPool:
                lost = sorted([*chunk, *(c for held in pending.values() for c in held)])
                pending.clear()
                _close(pool)
                _end_runs_of_dead_workers(uri, parent_run_id, lost)
                retry = [c for c in lost if attempts[c] <= retries]
                log.warning(
                    "a worker process died while training %s; retrying %s on a fresh pool",
                    ", ".join(lost),
                    ", ".join(retry) or "none (retries used up)",
                )
                for gone in (c for c in lost if c not in retry):
                    finished(gone, f"worker process died while training it (attempt {attempts[gone]})")
                queue.extendleft(reversed(retry))
                pool = new_pool()
                continue
            except RetrainError as error:  # the whole chunk's (no base model, MLflow refused)
                outcome = PackRegistration([], dict.fromkeys(chunk, error))
            except Exception as error:
                # Outside the suite's errors (a crashed library, a full disk): logged once with its
                # traceback, naming the customers; they get their retries.
                log.error("training %s failed", ", ".join(chunk), exc_info=error)
                outcome = PackRegistration([], dict.fromkeys(chunk, error))
            for adapter in outcome.registered:
                succeeded.append(adapter)
                finished(adapter.customer, None)
            for customer, problem in outcome.failed.items():
                # Bad input (no rows, one class, no base model) fails the same way again: no retry.
                retryable = problem.retryable if isinstance(problem, RetrainError) else True
                if attempts[customer] <= retries and retryable:
                    log.warning(
                        "customer %s failed (attempt %d), retrying: %s", customer, attempts[customer], problem
                    )
                    queue.appendleft(customer)
                else:
                    finished(customer, f"{type(problem).__name__}: {problem}")
    finally:
        _close(pool)
    result = FanoutResult(parent_run_id, commit_hash, succeeded, failed, time.perf_counter() - started)
    end_parent_run(uri, parent_run_id, failed=bool(failed))
    return result


def _close(pool: Executor) -> None:
    """Shut ``pool`` down once its tasks are done or cancelled, even if a worker died while idle.

    A worker killed while it waits for a task (the OOM killer, an operator) dies holding the task
    queue's lock, and the other workers then wait on that lock forever: ``shutdown(wait=True)``
    would never return. Workers not gone within :data:`CLOSE_GRACE_SECONDS` are terminated.
    """
    workers = list((getattr(pool, "_processes", None) or {}).values())  # 3.14 has terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + CLOSE_GRACE_SECONDS
    alive = {worker.sentinel: worker for worker in workers}
    while alive and (left := deadline - time.monotonic()) > 0:
        for sentinel in exits(list(alive), timeout=left):
            del alive[sentinel]
    for worker in alive.values():
        log.warning(
            "worker process %d did not stop within %ds; terminating it", worker.pid, CLOSE_GRACE_SECONDS
        )
        worker.terminate()
    pool.shutdown(wait=True)  # its workers gone, the pool's own thread and queues end too


def chunk_size_for(customers: int, workers: int, pack_size: int | None) -> int:
    """Customers per worker task: an even share of all of them, at most :data:`MAX_CHUNK`, and at
    least a full pack; one when training one at a time."""
    if pack_size == 1:
        return 1
    share = max(1, -(-customers // workers))
    return max(min(share, MAX_CHUNK), min(pack_size or 1, customers), 1)


class _InlineExecutor(Executor):
    """Runs each submitted task at once in this process, with the worker's repository connection."""

    def __init__(self, repo_location: str) -> None:
        global _worker_repo
        _worker_repo = DoltRepository.open(repo_location)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        global _worker_repo
        if _worker_repo is not None:
            _worker_repo.close()
            _worker_repo = None


def _end_runs_of_dead_workers(uri: str, parent_run_id: str, customers: Sequence[str]) -> None:
    """Mark KILLED the runs that dead workers left RUNNING (they would show as running forever)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = filter_value(parent_run_id)
    orphans = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = {parent} and attributes.status = 'RUNNING'",
    )
    for run in orphans:
        if run.data.tags.get("retrain.customer") in customers:
            client.set_terminated(run.info.run_id, status="KILLED")


def _progress(done: int, total: int, started: float, customer: str, failed: bool) -> None:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed else 0.0
    eta = (total - done) / rate if rate else 0.0
    log.info(
        "[%d/%d] %s %s - %.2f adapters/min, elapsed %.0fs, ETA %.0fs",
        done,
        total,
        "FAILED" if failed else "done",
        customer,
        rate * 60,
        elapsed,
        eta,
    )
