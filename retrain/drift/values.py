"""Per-row drift values, computed against an adapter's reference in the pass that scores the rows.

- ``tokens``: the row's token count (as truncated for the model);
- ``novelty``: the share of its tokens never seen in the adapter's training rows (unknown words,
  new product names, another language);
- ``embedding_distance``: the cosine distance of its embedding (the base model's mean-pooled last
  hidden states) from the training rows' centroid (a new topic moves it);
- ``score``: the score written to the ``scores`` table.
"""

from __future__ import annotations

import numpy as np

from retrain.drift.reference import FEATURES, DriftReference, FeatureBins
from retrain.engine.engine import RowFeatures


def row_values(features: RowFeatures, scores: np.ndarray, reference: DriftReference) -> dict[str, np.ndarray]:
    """Each of :data:`~retrain.drift.reference.FEATURES` for every row of ``features``."""
    return {
        "tokens": features.tokens.astype(np.float64),
        "novelty": _unseen_share(features, reference.vocabulary),
        "embedding_distance": _cosine_distance(features.embeddings, reference.centroid),
        "score": np.asarray(scores, dtype=np.float64),
    }


def build_reference(
    train: RowFeatures, holdout: RowFeatures, holdout_scores: np.ndarray, vocabulary_size: int
) -> DriftReference:
    """The reference of an adapter: vocabulary and centroid of ``train``, distributions of ``holdout``."""
    vocabulary = np.zeros(vocabulary_size, dtype=bool)
    ids = np.concatenate([np.empty(0, dtype=np.int64), *train.token_ids])
    vocabulary[ids[ids < vocabulary_size]] = True
    centroid = train.embeddings.mean(axis=0) if len(train.embeddings) else np.zeros(0, np.float32)
    reference = DriftReference(len(holdout.tokens), vocabulary, centroid.astype(np.float32), {})
    values = row_values(holdout, holdout_scores, reference)
    return DriftReference(
        reference.rows,
        vocabulary,
        reference.centroid,
        {name: FeatureBins.of(values[name]) for name in FEATURES},
    )


def _unseen_share(features: RowFeatures, vocabulary: np.ndarray) -> np.ndarray:
    """Per row, the share of its tokens outside ``vocabulary`` (one pass over all rows' tokens)."""
    lengths = np.array([len(ids) for ids in features.token_ids], dtype=np.int64)
    ids = np.concatenate([np.empty(0, dtype=np.int64), *features.token_ids])
    seen = np.zeros(len(ids), dtype=bool)
    inside = ids < len(vocabulary)
    seen[inside] = vocabulary[ids[inside]]
    owner = np.repeat(np.arange(len(lengths)), lengths)
    unseen = np.bincount(owner, weights=~seen, minlength=len(lengths))
    return np.asarray(unseen / np.maximum(lengths, 1), dtype=np.float64)


def _cosine_distance(embeddings: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    if not len(embeddings) or not len(centroid):
        return np.zeros(len(embeddings), dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(centroid)
    cosine = embeddings.astype(np.float64) @ centroid.astype(np.float64) / np.maximum(norms, 1e-12)
    return np.asarray(1.0 - cosine, dtype=np.float64)
