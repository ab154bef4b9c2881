"""Each monitored day's drift results in MLflow, where the Health page and ``retrain drift report``
read them without Spark.

One run per day in the ``retrain-drift`` experiment: tags ``retrain.ds``, ``retrain.release_id``
and counts, and the day's rows as the ``drift.json`` artifact. A rerun of a day logs a new run; the
newest finished run of a day is that day's record (the Hive ``drift`` table is replaced the same
way). A run turns FINISHED only after its artifact is stored, so a reader never sees half a day.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrain.adapters.registry import TAG_PREFIX, mlflow_errors
from retrain.tracking import ensure_experiment, tracking_uri

DRIFT_EXPERIMENT = "retrain-drift"
DAY_FILE = "drift.json"


@dataclass(frozen=True)
class DriftRow:
    """One row of the Hive ``drift`` table."""

    ds: str
    release: str
    customer: str
    adapter_version: str
    metric: str
    value: float | None
    threshold: float | None
    status: str


@dataclass(frozen=True)
class DriftDay:
    ds: str
    release_id: str
    run_id: str
    rows: tuple[DriftRow, ...]


class DriftHistory:
    """The days recorded in one MLflow tracking store."""

    def __init__(self, mlflow_uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(mlflow_uri)
        self.client = MlflowClient(self.uri)

    @mlflow_errors
    def record(self, ds: str, release_id: str, rows: Sequence[DriftRow]) -> str:
        """Store one day's rows; returns the run id."""
        experiment = ensure_experiment(DRIFT_EXPERIMENT, self.uri)
        flagged = sorted({r.customer for r in rows if r.status == "drift"})
        run = self.client.create_run(
            experiment,
            run_name=f"drift-{ds}",
            tags={
                f"{TAG_PREFIX}ds": ds,
                f"{TAG_PREFIX}release_id": release_id,
                f"{TAG_PREFIX}customers": str(len({r.customer for r in rows})),
                f"{TAG_PREFIX}drifting": str(len(flagged)),
            },
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / DAY_FILE
                path.write_text(json.dumps([asdict(r) for r in rows]))
                self.client.log_artifact(run.info.run_id, str(path))
        except BaseException:
            self.client.set_terminated(run.info.run_id, status="FAILED")
            raise
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        return str(run.info.run_id)

    @mlflow_errors
    def days(self, last: int = 14, until: str | None = None) -> list[DriftDay]:
        """The newest record of each of the last ``last`` recorded days (up to ``until``), oldest first."""
        from mlflow.entities import ViewType

        experiment = self.client.get_experiment_by_name(DRIFT_EXPERIMENT)
        if experiment is None:
            return []
        query = "attributes.status = 'FINISHED'"
        # MLflow compares tags with = and LIKE only: days after `until` are skipped here.
        last_day = dt.date.fromisoformat(until).isoformat() if until is not None else None
        newest: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [experiment.experiment_id],
                query,
                run_view_type=ViewType.ACTIVE_ONLY,
                order_by=[f"tags.`{TAG_PREFIX}ds` DESC", "attributes.start_time DESC"],
                max_results=200,
                page_token=token,
            )
            for run in page:
                ds = run.data.tags[f"{TAG_PREFIX}ds"]
                if last_day is None or ds <= last_day:
                    newest.setdefault(ds, run)
            token = page.token
            if not token or len(newest) > last:
                break
        chosen = sorted(newest)[-last:]
        return [
            self._day(newest[ds].info.run_id, ds, newest[ds].data.tags[f"{TAG_PREFIX}release_id"])
            for ds in chosen
        ]

    def day(self, ds: str) -> DriftDay | None:
        """The newest record of ``ds``, if that day was monitored."""
        days = self.days(last=1, until=ds)
        return days[0] if days and days[0].ds == ds else None

    @functools.lru_cache(maxsize=64)  # a run's artifact never changes  # noqa: B019
    def _day(self, run_id: str, ds: str, release_id: str) -> DriftDay:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(
                run_id=run_id, artifact_path=DAY_FILE, dst_path=tmp, tracking_uri=self.uri
            )
            records = json.loads(Path(local).read_text())
        return DriftDay(ds, release_id, run_id, tuple(DriftRow(**record) for record in records))
