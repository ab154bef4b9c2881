"""Each customer's health over recorded days: status, worst excess, gaps, one release's rows."""

from __future__ import annotations

from retrain.drift.health import PLOTTED, customer_health, excess
from retrain.drift.history import DriftDay, DriftRow
from retrain.drift.metrics import DEFAULT_THRESHOLDS, METRICS, ROWS, VOLUME

OLD, NEW = "a" * 32, "b" * 32
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


def customer_rows(
    ds: str, customer: str, release: str = NEW, **overrides: tuple[float | None, str]
) -> list[DriftRow]:
    """Every metric of ``customer`` on ``ds``: ok at half its threshold unless overridden (value, status)."""
    rows = []
    for metric in METRICS:
        threshold = 100.0 if metric == ROWS else DEFAULT_THRESHOLDS[metric]
        value, status = overrides.get(metric, (150.0 if metric == ROWS else threshold / 2, "ok"))
        rows.append(DriftRow(ds, release, customer, "3", metric, value, threshold, status))  # type: ignore[arg-type]
    return rows


def test_status_and_worst_are_the_latest_days() -> None:
    days = [
        DriftDay(
            DAYS[0],
            NEW,
            "r0",
            tuple(
                customer_rows(DAYS[0], "acme", score_js=(0.9, "drift"))
                + customer_rows(DAYS[0], "gone")
                + customer_rows(DAYS[0], "first", volume_change=(None, "insufficient"))
            ),
        ),
        DriftDay(
            DAYS[1],
            NEW,
            "r1",
            tuple(
                customer_rows(DAYS[1], "acme", score_js=(0.45, "drift"), volume_change=(0.2, "drift"))
                + customer_rows(DAYS[1], "quiet", **{m: (2.0, "insufficient") for m in METRICS})
                + customer_rows(DAYS[1], "new", **{m: (None, "no_reference") for m in PLOTTED if m != VOLUME})
                + customer_rows(DAYS[1], "first", volume_change=(None, "insufficient"))
            ),
        ),
    ]
    health = {h.customer: h for h in customer_health(days)}
    assert list(health) == ["acme", "first", "gone", "new", "quiet"]

    acme = health["acme"]
    assert (acme.ds, acme.status, acme.rows, acme.release, acme.adapter_version) == (
        DAYS[1],
        "drift",
        150,
        NEW,
        "3",
    )
    # A volume drop to a fifth is as bad as five times the rows: 5 / 3 beats score_js's 0.45 / 0.3.
    assert acme.worst == 5 / DEFAULT_THRESHOLDS[VOLUME]
    assert [(r.metric, r.value) for r in acme.flagged()] == [(VOLUME, 0.2), ("score_js", 0.45)]
    assert [r.value if r else None for r in acme.series["score_js"]] == [0.9, 0.45]

    assert health["first"].status == "ok"  # no earlier day for its volume: not a reason to worry
    assert health["quiet"].status == "insufficient"
    assert (health["quiet"].worst, health["quiet"].flagged()) == (None, [])  # 2 rows: no value is trusted
    assert health["new"].status == "no_reference"
    gone = health["gone"]
    assert (gone.ds, gone.day, gone.status) == (DAYS[0], 0, "ok")
    assert gone.series["score_js"][1] is None  # not monitored on the second day: a gap


def test_one_releases_rows_only() -> None:
    day = DriftDay(
        DAYS[2],
        NEW,
        "r2",
        tuple(customer_rows(DAYS[2], "acme", release=OLD) + customer_rows(DAYS[2], "globex", release=NEW)),
    )
    assert [h.customer for h in customer_health([day], release=OLD)] == ["acme"]
    assert [h.customer for h in customer_health([day])] == ["acme", "globex"]
    assert customer_health([day], release="c" * 32) == []


def test_excess_counts_only_trusted_values() -> None:
    row = DriftRow(DAYS[0], NEW, "acme", "1", "score_psi", 1.0, 0.5, "drift")
    assert excess(row) == 2.0
    for status in ("insufficient", "no_reference"):
        assert excess(DriftRow(DAYS[0], NEW, "acme", "1", "score_psi", 1.0, 0.5, status)) is None
    assert excess(DriftRow(DAYS[0], NEW, "acme", "1", ROWS, 500.0, 100.0, "ok")) is None
    assert excess(DriftRow(DAYS[0], NEW, "acme", "1", VOLUME, 3.0, 3.0, "ok")) == 1.0
