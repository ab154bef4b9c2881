"""Golden scores: each adapter's stored reference sample must score the same with the released files.

At training time a holdout sample and its probabilities are logged on the adapter's run
(``reference_scores.json``). Rescoring that sample with the release's adapter files, on the base
model this environment has, must match within a tolerance: a mismatch means a different base
model, a damaged artifact or a drifted library, and names the customer and rows.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.adapters.model import AdapterClassifier, default_base_model
from retrain.errors import InputError
from retrain.release.store import ReleaseStore
from retrain.scoring.job import ReleaseFiles

REFERENCE_FILE = "reference_scores.json"


class ReferenceMismatchError(InputError):
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
    release = ReleaseFiles.fetch(store, release_id, Path(workdir))
    base = default_base_model()
    checked, worst, problems = {}, {}, []
    for entry in release.manifest.adapters:
        reference = _reference(store, entry.run_id)
        # Loaded the way scoring loads it, so the check covers what scoring computes.
        classifier = AdapterClassifier.load(release.adapter_dir(entry.customer), base, merged=True)
        columns = [f"p_{label}" for label in classifier.labels]
        rescored = classifier.predict_proba(reference["text"].astype(str).tolist())
        difference = np.abs(rescored - reference[columns].to_numpy(dtype=float)).max(axis=1)
        checked[entry.customer] = len(reference)
        worst[entry.customer] = float(difference.max()) if len(difference) else 0.0
        bad = reference.loc[difference > tolerance, "example_id"].tolist()
        if bad:
            problems.append(
                f"{entry.customer} ({entry.model_name} v{entry.version}): {len(bad)} of {len(reference)} "
                f"rows differ by up to {worst[entry.customer]:.2e} (rows {', '.join(map(str, bad[:10]))})"
            )
    if problems:
        raise ReferenceMismatchError(
            f"release {release_id} fails its golden scores (tolerance {tolerance}): " + "; ".join(problems)
        )
    return ReferenceCheck(release_id, checked, worst)


def _reference(store: ReleaseStore, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as scratch:
        table = json.loads(Path(store.client.download_artifacts(run_id, REFERENCE_FILE, scratch)).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])
