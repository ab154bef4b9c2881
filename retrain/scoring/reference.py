"""Golden scores: each adapter's stored reference sample must score the same with the released files.

At training time a holdout sample and its probabilities are logged on the adapter's run
(``reference_scores.json``). Rescoring that sample with the release's adapter files, on the base
model this environment has, must match within a tolerance: a mismatch means a different base
model, a damaged artifact or a drifted library, and names the customer and rows.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.engine import AdapterEngine
from retrain.errors import ConflictError, InputError
from retrain.release.store import ReleaseStore
from retrain.scoring.job import ReleaseFiles

REFERENCE_FILE = "reference_scores.json"


class ReferenceMismatchError(ConflictError):
    """Rescored reference rows differ from their stored scores."""


@dataclass(frozen=True)
class ReferenceCheck:
    release_id: str
    checked_rows: dict[str, int] = field(default_factory=dict)
    max_difference: dict[str, float] = field(default_factory=dict)


def check_reference(
    store: ReleaseStore, release_id: str, workdir: str | Path, *, tolerance: float = 1e-4
) -> ReferenceCheck:
    """Rescore every adapter's reference sample; raise :class:`ReferenceMismatchError` on any mismatch."""
    check_tolerance(tolerance)
    release = ReleaseFiles.fetch(store, release_id, Path(workdir))
    # The engine that Spark scoring and the model server use, so the check covers what they compute.
    engine = AdapterEngine.from_release_dir(release.context)
    checked, worst, problems = {}, {}, []
    for entry in release.manifest.adapters:
        reference = load_reference(store, entry.run_id)
        predictions = engine.predict(
            reference["text"].astype(str).tolist(), [entry.customer] * len(reference)
        )
        columns = probability_columns(reference)
        rescored = np.stack(predictions.probabilities) if len(reference) else np.zeros((0, len(columns)))
        compared = compare_rows(reference, columns, rescored, tolerance)
        checked[entry.customer], worst[entry.customer] = compared.rows, compared.max_difference
        if compared.bad_rows:
            problems.append(compared.problem(f"{entry.customer} ({entry.model_name} v{entry.version})"))
    if problems:
        raise ReferenceMismatchError(
            f"release {release_id} fails its golden scores (tolerance {tolerance}): " + "; ".join(problems)
        )
    return ReferenceCheck(release_id, checked, worst)


@dataclass(frozen=True)
class RowComparison:
    """How far rescored reference rows are from their stored probabilities, shared by every golden check."""

    rows: int
    max_difference: float
    bad_rows: list[str]  # example ids beyond the tolerance

    def problem(self, who: str) -> str:
        """One line naming ``who`` (customer, model, version) and the first rows that differ."""
        return (
            f"{who}: {len(self.bad_rows)} of {self.rows} rows differ by up to {self.max_difference:.2e} "
            f"(rows {', '.join(self.bad_rows[:10])})"
        )


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` when it is a golden-score tolerance (finite, >= 0), else raise naming it.

    NaN would compare every row as different, and a negative one could never pass.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < math.inf:
        raise InputError(f"golden-score tolerance must be a finite number >= 0, got {tolerance!r}")
    return float(tolerance)


def compare_rows(
    reference: pd.DataFrame, columns: list[str], rescored: np.ndarray, tolerance: float
) -> RowComparison:
    """Compare ``rescored`` (rows x ``columns``) to the stored ``columns`` of the reference sample."""
    stored = reference[columns].to_numpy(dtype=float)
    difference = np.abs(np.asarray(rescored, dtype=float).reshape(stored.shape) - stored).max(
        axis=1, initial=0.0
    )
    bad = reference.loc[~(difference <= tolerance), "example_id"].tolist()  # NaN scores count as bad
    return RowComparison(len(reference), float(difference.max(initial=0.0)), [str(b) for b in bad])


def probability_columns(reference: pd.DataFrame) -> list[str]:
    """``p_<label>`` in label order (labels are sorted at training, as the engine orders them)."""
    return [f"p_{label}" for label in sorted(c.removeprefix("p_") for c in reference if c.startswith("p_"))]


def load_reference(store: ReleaseStore, run_id: str) -> pd.DataFrame:
    """The adapter run's stored reference sample: example_id, text, label and one ``p_<label>`` per label."""
    with tempfile.TemporaryDirectory() as scratch:
        table = json.loads(Path(store.client.download_artifacts(run_id, REFERENCE_FILE, scratch)).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])
