"""The Spark scorer's frames through the engine's stream: each frame answered in order, as predict would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from retrain.engine import AdapterEngine
from retrain.scoring.inference import score_frames

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease


def test_frames_are_scored_in_order_as_predict_scores_them(trained_release: TrainedRelease) -> None:
    release = trained_release
    engine = AdapterEngine.from_release_dir(release.release_dir, device="cpu", batch_size=8)
    rows = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(len(release.texts))],
            "customer_id": release.text_customers,
            "text": release.texts,
        }
    )
    frames = [rows.iloc[:20], rows.iloc[20:20], rows.iloc[20:]]  # the next frame tokenized beside this one
    scored = list(score_frames(iter(frames), engine))
    assert [len(f) for f in scored] == [len(f) for f in frames]
    for frame, out in zip(frames, scored, strict=True):
        assert out["request_id"].tolist() == frame["request_id"].tolist()
        expected = engine.predict(frame["text"].tolist(), frame["customer_id"].tolist())
        assert np.abs(out["score"].to_numpy() - expected.scores).max(initial=0.0) < 1e-5  # padding may differ
        assert out["label"].tolist() == expected.labels
