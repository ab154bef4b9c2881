"""Per-row drift values, computed against an adapter's reference in the pass that scores the rows.

- ``tokens``: the row's token count (as truncated for the model);
- ``novelty``: the share of its tokens never seen in the adapter's training rows (unknown words,
  new product names, another language);
- ``embedding_distance``: the cosine distance of its embedding (the base model's mean-pooled last
  hidden states, the adapter applied) from the training rows' centroid (new kinds of text move it);
- ``embedding_pc1``, ``embedding_pc2``: its position along the training embeddings' two principal
  directions (a new topic mix moves it there, even at the same distance from the centroid);
- ``score``: the score written to the ``scores`` table.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from retrain.drift.reference import COMPONENTS, FEATURES, DriftReference, FeatureBins
from retrain.engine.engine import RowFeatures


def row_values(features: RowFeatures, scores: np.ndarray, reference: DriftReference) -> dict[str, np.ndarray]:
    """Each of :data:`~retrain.drift.reference.FEATURES` for every row of ``features``."""
    projections = _projections(features.embeddings, reference)
    return {
        "tokens": features.tokens.astype(np.float64),
        "novelty": _unseen_share(features, reference.vocabulary),
        "embedding_distance": _cosine_distance(features.embeddings, reference.centroid),
        "embedding_pc1": projections[:, 0],
        "embedding_pc2": projections[:, 1],
        "score": np.asarray(scores, dtype=np.float64),
    }


def build_reference(
    train: RowFeatures, holdout: RowFeatures, holdout_scores: np.ndarray, vocabulary_size: int
) -> DriftReference:
    """The reference of an adapter: vocabulary and centroid of ``train``, distributions of ``holdout``."""
    vocabulary = np.zeros(vocabulary_size, dtype=bool)
    ids = np.concatenate([np.empty(0, dtype=np.int64), *train.token_ids])
    vocabulary[ids[ids < vocabulary_size]] = True
    hidden = train.embeddings.shape[1] if train.embeddings.ndim == 2 else 0
    centroid = train.embeddings.mean(axis=0) if len(train.embeddings) else np.zeros(hidden, np.float32)
    components = np.zeros((COMPONENTS, hidden), dtype=np.float32)
    if len(train.embeddings) > COMPONENTS:
        components[:] = _principal_directions(train.embeddings.astype(np.float64) - centroid)
    reference = DriftReference(len(holdout.tokens), vocabulary, centroid.astype(np.float32), components, {})
    values = row_values(holdout, holdout_scores, reference)
    return replace(reference, bins={name: FeatureBins.of(values[name]) for name in FEATURES})


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


def _principal_directions(centred: np.ndarray) -> np.ndarray:
    """[COMPONENTS, hidden]: the unit directions of largest variance, largest first.

    Only the top eigenpairs are computed (LAPACK's subset solver), of whichever is smaller: the
    rows' Gram matrix (few training rows) or the covariance (many).
    """
    from scipy.linalg import eigh

    rows, hidden = centred.shape
    if rows <= hidden:
        gram = centred @ centred.T
        values, vectors = eigh(gram, subset_by_index=[rows - COMPONENTS, rows - 1])
        directions = (centred.T @ vectors) / np.sqrt(np.maximum(values, 1e-12))
    else:
        _, directions = eigh(centred.T @ centred, subset_by_index=[hidden - COMPONENTS, hidden - 1])
    return np.asarray(directions[:, ::-1].T, dtype=np.float32)


def _projections(embeddings: np.ndarray, reference: DriftReference) -> np.ndarray:
    """[rows, COMPONENTS]: each row's coordinates along the reference's principal directions."""
    if not len(embeddings) or not reference.components.shape[1]:
        return np.zeros((len(embeddings), COMPONENTS), dtype=np.float64)
    centred = embeddings.astype(np.float64) - reference.centroid.astype(np.float64)
    return np.asarray(centred @ reference.components.astype(np.float64).T, dtype=np.float64)


def _cosine_distance(embeddings: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    if not len(embeddings) or not len(centroid):
        return np.zeros(len(embeddings), dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(centroid)
    cosine = embeddings.astype(np.float64) @ centroid.astype(np.float64) / np.maximum(norms, 1e-12)
    return np.asarray(1.0 - cosine, dtype=np.float64)
