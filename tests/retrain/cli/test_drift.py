"""`retrain drift`: the report of recorded days (a real MLflow store), and what `run` checks before a JVM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.drift.history import DriftHistory, DriftRow
from retrain.drift.metrics import DEFAULT_THRESHOLDS, METRICS, ROWS

from ..sockets import BOUND, closed_port
from .invoke import run

RELEASE = "0123456789abcdef0123456789abcdef"
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


PSI_DRIFT = 1.2 * DEFAULT_THRESHOLDS["score_psi"]
JS_DRIFT = 5 / 3 * DEFAULT_THRESHOLDS["score_js"]


def rows(ds: str, customer: str, **overrides: tuple[float | None, str]) -> list[DriftRow]:
    """Every metric of ``customer`` on ``ds``: ok at half its threshold unless overridden (value, status)."""
    found = []
    for metric in METRICS:
        threshold = 100.0 if metric == ROWS else DEFAULT_THRESHOLDS[metric]
        value, status = overrides.get(metric, (150.0 if metric == ROWS else threshold / 2, "ok"))
        found.append(DriftRow(ds, RELEASE, customer, "2", metric, value, threshold, status))  # type: ignore[arg-type]
    return found


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three monitored days: acme_air drifts on the last two, globex_bank on the last, initech_saas
    has too few rows on the last, hooli has no reference."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('drift') / 'mlflow.db'}"
    history = DriftHistory(uri)
    for i, ds in enumerate(DAYS):
        day = rows(ds, "globex_bank") + rows(ds, "initech_saas")
        day += rows(ds, "hooli", **{m: (None, "no_reference") for m in METRICS if m != ROWS})
        day += rows(ds, "acme_air", score_js=(0.1 + 0.2 * i, "drift" if i else "ok"))
        if i == 2:
            day = rows(ds, "globex_bank", score_psi=(PSI_DRIFT, "drift"), volume_change=(9.0, "drift"))
            day += rows(ds, "initech_saas", **{m: (1.0, "insufficient") for m in METRICS})
            day += rows(ds, "acme_air", score_js=(JS_DRIFT, "drift"))
            day += rows(ds, "hooli", **{m: (None, "no_reference") for m in METRICS if m != ROWS})
        history.record(ds, RELEASE, day)
    return uri


def test_report_prints_the_flagged_customers_and_plots_each(
    capsys: pytest.CaptureFixture[str], recorded: str, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    report = ("drift", "report", "--ds", DAYS[2], "--days", "3", "--out", str(out), "--mlflow-uri", recorded)
    code, printed, err = run(capsys, *report)
    assert (code, err) == (0, "")
    lines = printed.splitlines()
    assert lines[0].split() == ["customer", "metric", "value", "threshold"]
    # Worst first: globex_bank's volume at 9/3 before acme_air's score_js at 5/3 of its threshold.
    assert [line.split() for line in lines[1:4]] == [
        ["globex_bank", "volume_change", "9.000", "3"],
        ["globex_bank", "score_psi", f"{PSI_DRIFT:.3f}", f"{DEFAULT_THRESHOLDS['score_psi']:g}"],
        ["acme_air", "score_js", f"{JS_DRIFT:.3f}", f"{DEFAULT_THRESHOLDS['score_js']:g}"],
    ]
    assert lines[4] == (
        f"drift report ds={DAYS[2]} release={RELEASE[:12]}: 4 customers, 2 flagged, 1 with too few rows, "
        f"1 without a reference; 2 PNG(s) of the last 3 day(s) in {out}"
    )
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "acme_air.png",
        "globex_bank.png",
    ]
    assert (out / "acme_air.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    code, printed, _ = run(
        capsys, "drift", "report", "--ds", DAYS[0], "--out", str(out), "--mlflow-uri", recorded
    )
    assert code == 0  # an earlier drift report is replaced
    assert printed.splitlines()[-1].endswith(f"0 PNG(s) of the last 1 day(s) in {out}")  # nothing flagged
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


def test_report_refuses_a_day_never_monitored_and_a_foreign_folder(
    capsys: pytest.CaptureFixture[str], recorded: str, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "drift", "report", "--ds", "2026-12-01", "--mlflow-uri", recorded)
    assert code == 1
    assert err == (
        f"retrain: error: no drift recorded for ds=2026-12-01 in {recorded} (latest days before it: "
        f"{', '.join(DAYS)}); run `retrain drift run --ds 2026-12-01` or monitor_daily first\n"
    )
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = run(
        capsys, "drift", "report", "--ds", DAYS[2], "--out", str(foreign), "--mlflow-uri", recorded
    )
    assert code == 1
    assert err.startswith(f"retrain: error: refusing to replace {foreign}")
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_run_checks_thresholds_and_mlflow_before_starting_spark(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pyspark.sql import SparkSession

    def started(builder: object) -> None:
        raise AssertionError("Spark started before the thresholds and MLflow were checked")

    # A tripwire, not a stand-in: another test's session may already be up in this process.
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", started)
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    settings = tmp_path / "thresholds.json"
    settings.write_text(json.dumps({"customers": {"acme_air": {"score_jsd": 0.2}}}))
    drift_run = ("drift", "run", "--release", RELEASE, "--ds", DAYS[0], "--thresholds", str(settings))
    code, _, err = run(capsys, *drift_run)
    assert code == 1
    assert err.startswith(
        f"retrain: error: drift thresholds file {settings} customer 'acme_air': unknown metric 'score_jsd'"
    )
    settings.write_text(json.dumps({"min_rows": 20}))
    code, _, err = run(capsys, *drift_run, "--mlflow-uri", f"http://127.0.0.1:{closed_port()}")
    assert code == 1
    assert err.startswith("retrain: error: cannot reach MLflow tracking server http://127.0.0.1:")
    code, _, err = run(capsys, "drift", "run", "--release", RELEASE, "--ds", "2026-11-31")
    assert (code, err) == (
        1,
        "retrain: error: drift run: argument --ds: expected a date YYYY-MM-DD, got '2026-11-31'\n",
    )
