"""Record drift references for freshly trained adapters, in one engine pass per group of them.

The adapters are scored by :class:`~retrain.engine.AdapterEngine`, the engine that scores live
rows, so the reference's features are computed exactly as production computes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retrain.drift.reference import REFERENCE_FILE
from retrain.drift.values import build_reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceJob:
    customer: str
    adapter_dir: Path
    train_texts: Sequence[str]
    holdout_texts: Sequence[str]


def record_references(jobs: Sequence[ReferenceJob], base_model: str) -> None:
    """Write ``drift_reference.json`` into each job's adapter folder.

    A failure is logged, naming the customers, and leaves them without a reference (drift monitoring
    then reports them ``no_reference``): their adapters are trained and worth registering.
    """
    from retrain.engine import AdapterEngine

    if not jobs:
        return
    try:
        engine = AdapterEngine(
            "training", {job.customer: (job.adapter_dir, "new") for job in jobs}, base_model=base_model
        )
        texts = [text for job in jobs for text in (*job.train_texts, *job.holdout_texts)]
        owners = [job.customer for job in jobs for _ in range(len(job.train_texts) + len(job.holdout_texts))]
        predictions = engine.predict(texts, owners, features=True)
    except Exception as error:  # monitoring metadata must not cost the trained adapters
        log.warning(
            "no %s for %s: %s", REFERENCE_FILE, ", ".join(job.customer for job in jobs), error, exc_info=True
        )
        return
    features, scores = predictions.features, predictions.scores
    assert features is not None  # asked for
    start = 0
    for job in jobs:
        middle, stop = start + len(job.train_texts), start + len(job.train_texts) + len(job.holdout_texts)
        train, holdout = features.slice(start, middle), features.slice(middle, stop)
        reference = build_reference(train, holdout, scores[middle:stop], engine.vocabulary_size)
        reference.write(job.adapter_dir)
        start = stop
    log.info("recorded drift references of %d adapters", len(jobs))
