"""The Releases view's HTML: markup planted in every value read back from MLflow stays text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from markupsafe import escape

from retrain.release.manifest import AdapterEntry, InvalidManifestError, Manifest, diff
from retrain.release.store import ReleaseEvent
from retrain_airflow.releases_pages import (
    TableQuery,
    detail,
    diff_page,
    diff_rows,
    diff_summary,
    diff_table,
    history,
    metric_names,
    page,
    release_page,
    release_rows,
    release_table,
)

# Each closes an attribute and opens a tag: one unescaped copy is a script on Airflow's origin.
PLANTED = ('"><script>steal()</script>', "<img src=x onerror=alert(1)>", "'><svg onload=alert(2)>")
OPENED = ("<script", "<img", "<svg")


def hostile_entry(customer: str, i: int, version: str) -> AdapterEntry:
    """Every text field of a stored manifest entry holds markup (customer ids cannot: checked)."""
    mark = PLANTED[i % len(PLANTED)]
    return AdapterEntry(
        customer=customer,
        model_name=f"adapter{mark}",
        version=f"{version}{mark}",
        run_id=f"{mark}run",
        commit=f"{mark}commit",
        artifact_uri=f"file:///{mark}",
        metrics={"roc_auc": 0.5 + i / 10, "accuracy": 0.6},
    )


def assert_inert(html: str, *, shown: bool = True) -> None:
    """No planted tag opens; when ``shown``, the planted text is on the page, escaped."""
    for opened in OPENED:
        assert opened not in html, html[max(0, html.find(opened) - 200) : html.find(opened) + 100]
    assert not shown or any(str(escape(mark)) in html for mark in PLANTED)


def test_markup_in_every_field_read_back_from_mlflow_stays_text() -> None:
    old = Manifest(tuple(hostile_entry(c, i, "1") for i, c in enumerate(("acme", "globex", "initech"))))
    new = Manifest((hostile_entry("acme", 0, "2"), hostile_entry("hooli", 1, "1")))
    failures = {
        customer: f"failed {mark}" for customer, mark in zip(("acme", "zeta"), PLANTED[:2], strict=True)
    }

    def model_url(entry: AdapterEntry) -> str:
        return f"https://mlflow/#/models/{entry.model_name}/versions/{entry.version}"

    def commit_url(commit: str) -> str:
        return f"https://dolthub/commits/main/{commit}"

    rows = release_rows(new, old, failures)
    metrics = metric_names(r.entry for r in rows)
    query = TableQuery(per_page=1, q=PLANTED[0][:150], keep=(("base", PLANTED[1]),))
    everything = TableQuery()
    found = release_page(rows, everything, metrics)
    table = release_table(found, everything, metrics, model_url, commit_url)
    assert_inert(table)
    # A crafted search and page parameters are echoed in the form and every link, as text.
    echoed = release_table(release_page(rows, query, metrics), query, metrics, model_url, commit_url)
    assert_inert(echoed, shown=False)
    body = detail(PLANTED[2], rows, False, PLANTED[0], query, table, can_roll_back=True)
    assert_inert(body)
    assert "rollBack" not in body  # a crafted id never reaches the rollback script
    assert_inert(page(f"Release {PLANTED[0]}", body))

    changes = diff(old, new)
    drows = diff_rows(changes)
    dmetrics = metric_names([*(r.old for r in drows), *(r.new for r in drows)])
    assert_inert(
        diff_table(diff_page(drows, everything, dmetrics), everything, dmetrics, model_url, commit_url)
    )
    assert_inert(
        diff_table(diff_page(drows, query, dmetrics), query, dmetrics, model_url, commit_url), shown=False
    )
    assert_inert(diff_summary(PLANTED[0], PLANTED[1], changes))

    when = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    events = [
        ReleaseEvent(PLANTED[0], "register", "r1", when, 3, PLANTED[1], PLANTED[2], failed_count=1),
        ReleaseEvent(PLANTED[1], "pin", "r2", when, 3, "", "", PLANTED[2], PLANTED[0]),
        ReleaseEvent(PLANTED[2], "rollback", "r3", when, 3, "", f"note {PLANTED[0]}"),
    ]
    assert_inert(history(events))


@pytest.mark.parametrize("name", [*PLANTED, "roc auc", "1st", "a" * 65, ""])
def test_metric_names_follow_the_identifier_rule(name: str) -> None:
    """Metric names become column headers and sort keys: a crafted one is refused when read back."""
    entry = hostile_entry("acme", 0, "1")
    with pytest.raises(InvalidManifestError, match=r"adapter of customer acme: invalid metric name"):
        dataclasses.replace(entry, metrics={name: 0.5})
    stored = Manifest((entry,)).canonical_json().replace('"accuracy"', json.dumps(name))
    with pytest.raises(InvalidManifestError, match="invalid metric name"):
        Manifest.from_json(stored)
