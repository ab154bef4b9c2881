"""The Health page's HTML: sparklines drawn from the recorded days, markup read back from MLflow kept text."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from retrain.drift.health import PLOTTED, customer_health
from retrain.drift.history import DriftDay, DriftRow
from retrain.drift.metrics import VOLUME
from retrain_airflow.health_pages import health_body, health_page, health_table, sparkline
from retrain_airflow.releases_pages import QueryError, TableQuery, page

from .test_releases_pages import PLANTED

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04")
RELEASE = "0" * 32


def assert_inert(html: str) -> None:
    """No planted tag opens (the page draws its own <svg>s, never one with an onload), and each
    planted text is on the page, escaped."""
    for opened in ("<script", "<img", "<svg onload"):
        assert opened not in html, html[max(0, html.find(opened) - 200) : html.find(opened) + 100]
    assert all(str(escape(mark)) in html for mark in PLANTED)


def row(ds: str, metric: str, value: float | None, status: str = "ok", threshold: float = 0.5) -> DriftRow:
    return DriftRow(ds, RELEASE, "acme_air", "1", metric, value, threshold, status)


def test_sparkline_gaps_alarms_and_thresholds() -> None:
    series = [row(DAYS[0], "score_psi", 0.2), None, row(DAYS[2], "score_psi", 1.0, "drift"), None]
    drawn = sparkline("score_psi", series)
    assert drawn.lines == []  # no two days in a row: no line, a dot per day
    assert [(x, alarmed) for x, _, alarmed in drawn.dots] == [(63.3, True), (2.0, False), (63.3, False)]
    assert drawn.title == "score_psi: 1.000 on 2026-11-03 (drift; threshold 0.5)"
    (level,) = drawn.levels
    assert 2.0 < level < 22.0  # the threshold inside the box, below the top value

    joined = sparkline(
        "score_psi", [row(d, "score_psi", v) for d, v in zip(DAYS, (0.1, 0.2, 0.3, 0.4), strict=True)]
    )
    assert len(joined.lines) == 1
    assert len(joined.lines[0].split()) == 4
    volume = sparkline(VOLUME, [row(DAYS[0], VOLUME, 1.0, threshold=3.0)])
    assert len(volume.levels) == 2  # three times the rows, or a third of them
    assert sparkline("score_js", [None, None]).title == "score_js: not measured"


def test_markup_read_back_from_mlflow_stays_text_and_bad_filters_are_named() -> None:
    """Customer ids, release ids and versions come from a run's drift.json: anyone's with MLflow access."""
    rows = tuple(
        DriftRow(DAYS[0], mark, mark, mark, metric, 1.0, 0.5, "drift")
        for mark in PLANTED
        for metric in PLOTTED
    )
    health = customer_health([DriftDay(DAYS[0], RELEASE, "run", rows)])
    query = TableQuery(q=PLANTED[1][:20], keep=(("release", PLANTED[0]),))
    everything = TableQuery(sort="worst", order="desc", keep=(("release", PLANTED[0]),))
    for shown in (everything, query):
        found = health_page(health, shown)
        html = page(
            "Health", health_body(list(DAYS[:1]), PLANTED[2], health, shown, health_table(found, shown))
        )
        assert_inert(html)
        assert len(re.findall("<svg ", html)) == len(PLOTTED) * len(found.rows)
    with pytest.raises(
        QueryError, match="status must be one of ok, drift, insufficient, no_reference, not 'bad'"
    ):
        health_page(health, TableQuery(status="bad"))
    with pytest.raises(
        QueryError, match="sort must be one of customer, status, worst, rows, day, not 'version'"
    ):
        health_page(health, TableQuery(sort="version"))
    assert "No drift recorded yet" in health_body(
        [], None, [], TableQuery(), health_table(health_page([], TableQuery()), TableQuery())
    )
