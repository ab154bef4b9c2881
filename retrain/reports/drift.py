"""A day's drift report: a PNG per flagged customer, each drift metric over the last days with its threshold.

The folder is built beside its target and renamed into place (:func:`retrain.outputs.replacing`);
an earlier drift report there is replaced, any other non-empty folder refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.drift.health import PLOTTED, CustomerHealth
from retrain.drift.metrics import VOLUME
from retrain.outputs import DRIFT_REPORT, replacing

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = 3  # panels per row: the six drift metrics in two rows


@dataclass(frozen=True)
class DriftPlots:
    folder: Path
    plots: dict[str, Path]  # customer -> its PNG


def write_drift_plots(days: Sequence[str], customers: Sequence[CustomerHealth], out_dir: Path) -> DriftPlots:
    """``<customer>.png`` in ``out_dir`` for each of ``customers`` (customer ids are safe file names)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    with replacing(out_dir, DRIFT_REPORT, force=True) as staging:
        for health in customers:
            figure = _figure(days, health)
            figure.savefig(staging / f"{health.customer}.png", dpi=90)
            plt.close(figure)
    return DriftPlots(out_dir, {h.customer: out_dir / f"{h.customer}.png" for h in customers})


def _figure(days: Sequence[str], health: CustomerHealth) -> Figure:
    import matplotlib.pyplot as plt

    rows = -(-len(PLOTTED) // COLUMNS)
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(4 * COLUMNS, 2.6 * rows), sharex=True, squeeze=False)
    positions = list(range(len(days)))
    for axis, metric in zip(axes.flat, PLOTTED, strict=False):
        series = health.series[metric]
        values = [row.value if row is not None and row.value is not None else float("nan") for row in series]
        axis.plot(positions, values, marker="o", markersize=3, color="#1f77b4")
        alarmed = [
            (i, row.value) for i, row in enumerate(series) if row is not None and row.status == "drift"
        ]
        if alarmed:
            axis.scatter(*zip(*alarmed, strict=True), color="#b3261e", zorder=3, label="drift")
        latest = health.latest(metric)
        if latest is not None and latest.threshold:
            lines = [latest.threshold, 1 / latest.threshold] if metric == VOLUME else [latest.threshold]
            for level in lines:
                axis.axhline(level, color="#b3261e", linestyle="--", linewidth=1)
        axis.set_ylim(bottom=0)
        axis.set_title(metric, fontsize=10)
        axis.set_xticks(positions, [day[5:] for day in days], rotation=45, fontsize=7)  # MM-DD
    for axis in list(axes.flat)[len(PLOTTED) :]:
        axis.set_visible(False)
    figure.suptitle(
        f"{health.customer}: {health.status} on {health.ds} "
        f"(release {health.release[:12]}, adapter v{health.adapter_version}); dashed: threshold"
    )
    figure.tight_layout()
    return figure
