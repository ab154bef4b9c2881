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
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.drift.reference import DriftReference, read_references
from retrain.drift.values import row_values
from retrain.engine import AdapterEngine, Predictions
from retrain.release.context import ADAPTER_SUBDIR

# The drift columns are null for rows whose adapter has no drift reference (:mod:`retrain.drift`).
DRIFT_COLUMNS = {
    "tokens": "int",
    "novelty": "double",
    "embedding_distance": "double",
    "embedding_pc1": "double",
    "embedding_pc2": "double",
}
OUTPUT_COLUMNS = {
    "request_id": "string",
    "customer_id": "string",
    "score": "double",
    "label": "string",
    "adapter_version": "string",
    **DRIFT_COLUMNS,
}
OUTPUT_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in OUTPUT_COLUMNS.items())


@functools.lru_cache(maxsize=1)  # one release per job; a new job's release replaces the last one
def _engine(
    release_dir: str, base_model: str, batch_size: int, cache_bytes: int | None
) -> tuple[AdapterEngine, dict[str, DriftReference]]:
    engine = AdapterEngine.from_release_dir(
        release_dir, base_model=base_model, batch_size=batch_size, cache_bytes=cache_bytes
    )
    references, _ = read_references(
        {c: Path(release_dir) / ADAPTER_SUBDIR.format(customer=c) for c in engine.customers}
    )
    return engine, references


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


def score_frames(
    frames: Iterable[pd.DataFrame], engine: AdapterEngine, references: dict[str, DriftReference]
) -> Iterator[pd.DataFrame]:
    """Frames of rows of any customers of the release in, scores out (``OUTPUT_SCHEMA``), one per frame.

    The engine tokenizes the next frame's rows while it scores this one's. ``score`` is the
    probability of the last label in sorted order (``urgent`` for the demo). The drift columns are
    computed against each row's adapter's reference, from the same pass.
    """
    taken: deque[pd.DataFrame] = deque()  # frames handed to the engine, not yet answered

    def requests() -> Iterator[tuple[list[str], list[str]]]:
        for rows in frames:
            taken.append(rows)
            yield rows["text"].astype(str).tolist(), rows["customer_id"].astype(str).tolist()

    for predictions in engine.predict_each(requests(), features=bool(references)):
        rows = taken.popleft()
        customers = rows["customer_id"].astype(str).to_numpy()
        scored = pd.DataFrame(
            {
                "request_id": rows["request_id"].astype(str).to_numpy(),
                "customer_id": customers,
                "score": predictions.scores,
                "label": predictions.labels,
                "adapter_version": predictions.adapter_versions,
            }
        )
        yield pd.concat([scored, _drift_columns(predictions, customers, references)], axis=1)


def _drift_columns(
    predictions: Predictions, customers: np.ndarray, references: dict[str, DriftReference]
) -> pd.DataFrame:
    columns = {name: np.full(len(customers), np.nan) for name in DRIFT_COLUMNS}
    features = predictions.features
    if features is not None:
        for customer in set(customers) & set(references):
            rows = np.flatnonzero(customers == customer)
            values = row_values(features.take(rows), predictions.scores[rows], references[customer])
            for name, column in columns.items():
                column[rows] = values[name]
    frame = pd.DataFrame(columns)
    frame["tokens"] = frame["tokens"].astype("Int32")  # null where the row has no reference
    return frame


def scorer(
    shipped_release: str, base_model: str, batch_size: int, cache_bytes: int | None
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function Spark ships to its workers.

    :param shipped_release: the file name of the release archive added with
        ``SparkContext.addArchive``; ``SparkFiles.get`` gives the directory it was unpacked into.
    """

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import SparkFiles

        use_task_cores()
        engine, references = _engine(SparkFiles.get(shipped_release), base_model, batch_size, cache_bytes)
        yield from score_frames(batches, engine, references)

    return score
