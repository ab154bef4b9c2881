"""Scoring on Spark's Python workers: one customer's rows at a time, models cached per worker.

The release's adapters reach the workers as one directory shipped with ``SparkContext.addFile``
(so executors on a cluster need no shared file system); each worker reads the base model once
(see :func:`retrain.adapters.model._load_base`) and each customer's adapter once, merged into its
copy of the base for faster inference. Rows are scored in batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from retrain.adapters.model import AdapterClassifier

OUTPUT_SCHEMA = "request_id string, customer_id string, score double, label string, adapter_version string"


@functools.lru_cache(maxsize=64)
def _classifier(adapter_dir: str, base_model: str) -> AdapterClassifier:
    return AdapterClassifier.load(adapter_dir, base_model, merged=True)


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


def score_customer(
    rows: pd.DataFrame, *, adapters: dict[str, tuple[str, str]], base_model: str, batch_size: int
) -> pd.DataFrame:
    """Rows of one customer in, scores out (``OUTPUT_SCHEMA``).

    :param adapters: customer -> (adapter directory, model version).
    ``score`` is the probability of the last label in sorted order (``urgent`` for the demo).
    """
    customer = str(rows["customer_id"].iloc[0])
    adapter_dir, version = adapters[customer]
    classifier = _classifier(adapter_dir, base_model)
    probabilities = classifier.predict_proba(rows["text"].astype(str).tolist(), batch_size=batch_size)
    return pd.DataFrame(
        {
            "request_id": rows["request_id"].astype(str).to_numpy(),
            "customer_id": customer,
            "score": probabilities[:, -1].astype(float),
            "label": [classifier.labels[i] for i in probabilities.argmax(axis=1)],
            "adapter_version": version,
        }
    )


def scorer(
    shipped_release: str, adapters: dict[str, tuple[str, str]], base_model: str, batch_size: int = 64
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The ``applyInPandas`` function Spark ships to its workers.

    :param shipped_release: the name of the release directory added with ``SparkContext.addFile``.
    :param adapters: customer -> (adapter directory relative to that release directory, model version).
    """

    def score(rows: pd.DataFrame) -> pd.DataFrame:
        from pyspark import SparkFiles

        use_task_cores()
        root = Path(SparkFiles.get(shipped_release))
        local = {customer: (str(root / path), version) for customer, (path, version) in adapters.items()}
        return score_customer(rows, adapters=local, base_model=base_model, batch_size=batch_size)

    return score
