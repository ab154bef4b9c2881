"""The Spark scorer's frames through the engine's stream: each frame answered in order, as predict would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from retrain.drift.reference import read_references
from retrain.drift.values import row_values
from retrain.engine import AdapterEngine
from retrain.release.context import ADAPTER_SUBDIR
from retrain.scoring.inference import DRIFT_COLUMNS, OUTPUT_COLUMNS, score_frames

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
    references, _ = read_references(
        {c: release.release_dir / ADAPTER_SUBDIR.format(customer=c) for c in engine.customers}
    )
    assert sorted(references) == sorted(engine.customers)  # recorded when the adapters were trained
    scored = list(score_frames(iter(frames), engine, references))
    assert [len(f) for f in scored] == [len(f) for f in frames]
    for frame, out in zip(frames, scored, strict=True):
        assert list(out.columns) == list(OUTPUT_COLUMNS)
        assert out["request_id"].tolist() == frame["request_id"].tolist()
        expected = engine.predict(frame["text"].tolist(), frame["customer_id"].tolist(), features=True)
        assert np.abs(out["score"].to_numpy() - expected.scores).max(initial=0.0) < 1e-5  # padding may differ
        assert out["label"].tolist() == expected.labels
        assert expected.features is not None
        for customer in set(frame["customer_id"]):
            rows = np.flatnonzero(frame["customer_id"].to_numpy() == customer)
            values = row_values(expected.features.take(rows), expected.scores[rows], references[customer])
            assert out["tokens"].to_numpy()[rows].tolist() == values["tokens"].astype(int).tolist()
            assert np.allclose(out["novelty"].to_numpy()[rows], values["novelty"])
            assert np.allclose(
                out["embedding_distance"].to_numpy()[rows], values["embedding_distance"], atol=1e-5
            )


def test_rows_of_an_adapter_without_reference_score_with_null_drift_columns(
    trained_release: TrainedRelease,
) -> None:
    release = trained_release
    engine = AdapterEngine.from_release_dir(release.release_dir, device="cpu", batch_size=8)
    rows = pd.DataFrame(
        {"request_id": ["a", "b"], "customer_id": [release.customers[0]] * 2, "text": release.texts[:2]}
    )
    (out,) = score_frames(iter([rows]), engine, references={})
    assert out["score"].notna().all()
    assert out[list(DRIFT_COLUMNS)].isna().all().all()
