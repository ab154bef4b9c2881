"""Scoring on Spark's Python workers: each worker holds one multi-adapter engine for the release.

The release's files reach the workers as one zip archive shipped with ``SparkContext.addArchive``
and unpacked by Spark on each executor (so executors on a cluster need no shared file system). A
worker loads the base model once and each customer's adapter as its own bytes
(:mod:`retrain.engine`), so a batch of rows from many customers is scored in one forward pass and
a worker's memory grows by ~300 kB per adapter, not by a copy of the base model.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import pandas as pd

from retrain.engine import AdapterEngine

OUTPUT_SCHEMA = "request_id string, customer_id string, score double, label string, adapter_version string"


@functools.lru_cache(maxsize=1)  # one release per job; a new job's release replaces the last one
def _engine(release_dir: str, base_model: str, batch_size: int, cache_bytes: int) -> AdapterEngine:
    return AdapterEngine.from_release_dir(
        release_dir, base_model=base_model, batch_size=batch_size, cache_bytes=cache_bytes
    )


@functools.cache
def use_task_cores() -> None:
    """Give torch the cores Spark gave this task (``spark.task.cpus``), once per worker.

    torch would otherwise start one thread per machine core in every concurrently running worker,
    and N workers x N threads on N cores spend their time contending.
    """
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    torch.set_num_threads(context.cpus() if context is not None else torch.get_num_threads())


def score_frames(frames: Iterable[pd.DataFrame], engine: AdapterEngine) -> Iterator[pd.DataFrame]:
    """Frames of rows of any customers of the release in, scores out (``OUTPUT_SCHEMA``), one per frame.

    The engine tokenizes the next frame's rows while it scores this one's. ``score`` is the
    probability of the last label in sorted order (``urgent`` for the demo).
    """
    taken: deque[pd.DataFrame] = deque()  # frames handed to the engine, not yet answered

    def requests() -> Iterator[tuple[list[str], list[str]]]:
        for rows in frames:
            taken.append(rows)
            yield rows["text"].astype(str).tolist(), rows["customer_id"].astype(str).tolist()

    for predictions in engine.predict_each(requests()):
        rows = taken.popleft()
        yield pd.DataFrame(
            {
                "request_id": rows["request_id"].astype(str).to_numpy(),
                "customer_id": rows["customer_id"].astype(str).to_numpy(),
                "score": predictions.scores,
                "label": predictions.labels,
                "adapter_version": predictions.adapter_versions,
            },
            columns=["request_id", "customer_id", "score", "label", "adapter_version"],
        )


def scorer(
    shipped_release: str, base_model: str, batch_size: int, cache_bytes: int
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function Spark ships to its workers.

    :param shipped_release: the file name of the release archive added with
        ``SparkContext.addArchive``; ``SparkFiles.get`` gives the directory it was unpacked into.
    """

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import SparkFiles

        use_task_cores()
        engine = _engine(SparkFiles.get(shipped_release), base_model, batch_size, cache_bytes)
        yield from score_frames(batches, engine)

    return score
