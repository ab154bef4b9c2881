"""The retro-test report: per-day metrics computed right, real PNG plots, clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from retrain.outputs import OutputPathError
from retrain.reports.retro import daily_metrics, write_retro_report


def scores() -> pd.DataFrame:
    rows = []
    for day, scores_and_truth in {
        "2026-10-29": [(0.9, "urgent"), (0.8, "urgent"), (0.2, "routine"), (0.1, "routine")],  # separable
        "2026-10-30": [(0.9, "routine"), (0.2, "urgent"), (0.6, "urgent"), (0.4, "routine")],  # AUC 1/4
        "2026-10-31": [(0.7, None), (0.3, None)],  # no outcomes known yet
    }.items():
        for i, (score, truth) in enumerate(scores_and_truth):
            rows.append(
                {
                    "ds": day,
                    "release": "r" * 32,
                    "request_id": f"{day}-{i}",
                    "customer_id": "acme_air",
                    "score": score,
                    "label": "urgent" if score >= 0.5 else "routine",
                    "true_label": truth,
                }
            )
    return pd.DataFrame(rows)


def test_daily_metrics() -> None:
    metrics = daily_metrics(scores(), "urgent").set_index("ds")
    assert metrics.loc["2026-10-29", "roc_auc"] == 1.0
    assert metrics.loc["2026-10-29", "accuracy"] == 1.0
    assert metrics.loc["2026-10-30", "roc_auc"] == 0.25
    assert metrics.loc["2026-10-30", "accuracy"] == 0.5
    assert math.isnan(metrics.loc["2026-10-31", "roc_auc"])
    assert metrics.loc["2026-10-31", "labelled"] == 0
    assert metrics["rows"].tolist() == [4, 4, 2]


def test_report_has_a_table_and_png_plots(tmp_path: Path) -> None:
    report = write_retro_report(scores(), tmp_path / "acme", partner="acme_air", positive_label="urgent")
    assert (report.days, report.rows) == (3, 10)
    assert {p.name for p in report.plots} == {"daily_metrics.png", "score_distribution.png"}
    for plot in report.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plot.stat().st_size > 5_000
    page = report.path.read_text()
    assert "Retro-test for acme_air" in page
    assert '<img src="daily_metrics.png"' in page
    assert "2026-10-30" in page
    written = pd.read_csv(tmp_path / "acme" / "metrics.csv")
    assert written["ds"].tolist() == ["2026-10-29", "2026-10-30", "2026-10-31"]


def test_bad_input_is_named(tmp_path: Path) -> None:
    lacking = scores().drop(columns="true_label")
    with pytest.raises(ValueError, match="lack column"):
        write_retro_report(lacking, tmp_path, partner="acme_air", positive_label="urgent")
    with pytest.raises(ValueError, match="no retro-test scores for 'acme_air'"):
        write_retro_report(scores().iloc[0:0], tmp_path, partner="acme_air", positive_label="urgent")


def test_a_report_replaces_only_an_earlier_report_and_only_with_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    with pytest.raises(OutputPathError, match=r"has no \.retrain-output marker"):
        write_retro_report(scores(), home, partner="acme_air", positive_label="urgent", force=True)
    assert [p.name for p in home.iterdir()] == ["notes.txt"]
    assert (home / "notes.txt").read_text() == "keep me"

    out = tmp_path / "acme"
    write_retro_report(scores().iloc[0:4], out, partner="acme_air", positive_label="urgent")
    (out / "stale.txt").write_text("from the old report")
    with pytest.raises(OutputPathError, match="already holds a retro report: pass --force"):
        write_retro_report(scores(), out, partner="acme_air", positive_label="urgent")
    assert pd.read_csv(out / "metrics.csv")["ds"].tolist() == ["2026-10-29"]
    report = write_retro_report(scores(), out, partner="acme_air", positive_label="urgent", force=True)
    assert report.path == out / "index.html"
    assert all(p.parent == out and p.is_file() for p in report.plots)
    assert pd.read_csv(out / "metrics.csv")["ds"].tolist() == ["2026-10-29", "2026-10-30", "2026-10-31"]
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme", "home"]  # no staging left
