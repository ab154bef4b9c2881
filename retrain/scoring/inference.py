"""Scoring on Spark's Python workers: one customer's rows at a time, models cached per worker.

The base model is read once per worker process (see :func:`retrain.adapters.model._load_base`)
and each customer's adapter once per worker; rows are scored in batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pandas as pd

from retrain.adapters.model import AdapterClassifier

OUTPUT_SCHEMA = "request_id string, customer_id string, score double, label string, adapter_version string"


@functools.lru_cache(maxsize=64)
def _classifier(adapter_dir: str, base_model: str) -> AdapterClassifier:
    return AdapterClassifier.load(adapter_dir, base_model)


def score_customer(
    rows: pd.DataFrame, *, adapters: dict[str, tuple[str, str]], base_model: str, batch_size: int
) -> pd.DataFrame:
    """``applyInPandas`` function: rows of one customer in, scores out (``OUTPUT_SCHEMA``).

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
    adapters: dict[str, tuple[str, str]], base_model: str, batch_size: int = 64
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The function Spark ships to its workers (typed, so PySpark reads it as a pandas function)."""

    def score(rows: pd.DataFrame) -> pd.DataFrame:
        return score_customer(rows, adapters=adapters, base_model=base_model, batch_size=batch_size)

    return score
