"""A partner's retro-test report: how a pinned release would have scored their history.

Input is one row per scored request (``ds``, ``release``, ``request_id``, ``customer_id``,
``score``, ``label``) with the known outcome in ``true_label`` where the history has one. Output is
a folder with ``index.html``, ``metrics.csv`` and PNG plots: per-day ROC AUC and accuracy (days
with labels) and the score distributions (by true label where known).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sklearn.metrics import roc_auc_score

from retrain.identifiers import sql_identifier
from retrain.outputs import RETRO_REPORT, replacing

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REQUIRED_COLUMNS = ("ds", "release", "request_id", "customer_id", "score", "label", "true_label")


@dataclass(frozen=True)
class RetroReport:
    path: Path  # index.html
    days: int
    rows: int
    plots: list[Path]
    metrics: pd.DataFrame


def read_retro_scores(spark: Any, *, scores_table: str, history_table: str, customer: str) -> pd.DataFrame:
    """A customer's retro-test scores (every day and release) with the known outcomes joined in."""
    from pyspark.sql import functions as F

    sql_identifier(scores_table, "table")
    sql_identifier(history_table, "table")
    scores = spark.table(scores_table).where(F.col("customer_id") == customer)
    history = spark.table(history_table).where(F.col("customer_id") == customer)
    truth = F.col("label") if "label" in history.columns else F.lit(None).cast("string")
    outcomes = history.select("request_id", "ds", truth.alias("true_label"))
    joined = scores.join(outcomes, on=["request_id", "ds"], how="left")
    return joined.select(*REQUIRED_COLUMNS).toPandas()


def positive_label_of(scores: pd.DataFrame) -> str:
    """The label ``score`` is the probability of: the last in sorted order, as scoring defines it."""
    labels = set(scores["label"].dropna()) | set(scores["true_label"].dropna())
    if not labels:
        raise ValueError("retro-test scores carry no labels")
    return str(sorted(labels)[-1])


def daily_metrics(scores: pd.DataFrame, positive_label: str) -> pd.DataFrame:
    """Per day: rows, labelled rows, ROC AUC (NaN unless both outcomes occur) and accuracy."""
    rows = []
    for day, group in scores.groupby("ds", sort=True):
        labelled = group[group["true_label"].notna()]
        truth = (labelled["true_label"] == positive_label).to_numpy()
        auc = roc_auc_score(truth, labelled["score"]) if 0 < truth.sum() < len(truth) else math.nan
        accuracy = float((labelled["label"] == labelled["true_label"]).mean()) if len(labelled) else math.nan
        rows.append(
            {
                "ds": str(day),
                "release": ",".join(sorted(group["release"].unique())),
                "rows": len(group),
                "labelled": len(labelled),
                "roc_auc": auc,
                "accuracy": accuracy,
                "mean_score": float(group["score"].mean()),
            }
        )
    return pd.DataFrame(rows)


def write_retro_report(
    scores: pd.DataFrame, out_dir: Path, *, partner: str, positive_label: str, force: bool = False
) -> RetroReport:
    """Write the report for ``partner`` into ``out_dir``, built beside it and renamed into place.

    :param force: replace an earlier retro-test report there (:func:`retrain.outputs.replacing`:
        any other non-empty folder is refused).
    """
    lacking = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if lacking:
        raise ValueError(f"retro-test scores for {partner!r} lack column(s) {', '.join(lacking)}")
    if scores.empty:
        raise ValueError(f"no retro-test scores for {partner!r}: score some days first")
    with replacing(out_dir, RETRO_REPORT, force=force) as staging:
        metrics, plots = _write(scores, staging, partner, positive_label)
    return RetroReport(
        out_dir / "index.html", len(metrics), len(scores), [out_dir / p.name for p in plots], metrics
    )


def _write(
    scores: pd.DataFrame, out_dir: Path, partner: str, positive_label: str
) -> tuple[pd.DataFrame, list[Path]]:
    """The report's files in ``out_dir``; returns the daily metrics and the plots."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    metrics = daily_metrics(scores, positive_label)
    metrics.to_csv(out_dir / "metrics.csv", index=False)
    plots = []

    figure, axis = plt.subplots(figsize=(7, 3.5))
    days = list(range(len(metrics)))  # one tick per day, days without outcomes included
    axis.plot(days, metrics["roc_auc"], marker="o", label="ROC AUC")
    axis.plot(days, metrics["accuracy"], marker="s", label="accuracy")
    axis.set_xticks(days, metrics["ds"].tolist())
    axis.set_ylim(0, 1.05)
    axis.set_title(f"{partner}: daily metrics (labelled rows)")
    axis.legend(loc="lower right")
    figure.autofmt_xdate()
    plots.append(_save(figure, out_dir / "daily_metrics.png"))

    figure, axis = plt.subplots(figsize=(7, 3.5))
    bins = [i / 20 for i in range(21)]
    labelled = scores[scores["true_label"].notna()]
    if len(labelled):
        for outcome, group in labelled.groupby("true_label"):
            axis.hist(group["score"], bins=bins, alpha=0.6, label=f"true {outcome}")
    else:
        axis.hist(scores["score"], bins=bins, alpha=0.8, label="all rows (no labels)")
    axis.set_xlabel(f"score = P({positive_label})")
    axis.set_ylabel("rows")
    axis.set_title(f"{partner}: score distribution, {len(scores):,} rows")
    axis.legend()
    plots.append(_save(figure, out_dir / "score_distribution.png"))
    plt.close("all")

    (out_dir / "index.html").write_text(_html(partner, positive_label, scores, metrics, plots))
    return metrics, plots


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _html(
    partner: str, positive_label: str, scores: pd.DataFrame, metrics: pd.DataFrame, plots: list[Path]
) -> str:
    table = metrics.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a", border=0)
    images = "\n".join(f'<img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}">' for p in plots)
    releases = ", ".join(sorted(scores["release"].unique()))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Retro-test: {html.escape(partner)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}} td,th{{padding:.2em .8em;text-align:right}}
img{{max-width:100%;margin:1em 0}}</style></head>
<body><h1>Retro-test for {html.escape(partner)}</h1>
<p>{len(scores):,} historical requests over {len(metrics)} day(s), from {html.escape(metrics["ds"].min())}
to {html.escape(metrics["ds"].max())}, scored with release(s) <code>{html.escape(releases)}</code>.
Score is the probability of <b>{html.escape(positive_label)}</b>; ROC AUC and accuracy use the rows whose
outcome is known.</p>
{table}
{images}
</body></html>
"""
