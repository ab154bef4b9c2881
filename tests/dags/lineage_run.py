"""One run of ``retrain_on_commit`` in ``dag.test()``, for ``test_lineage.py``, in a process of its own:
OpenLineage reads its settings once per process, so the test's own Airflow cannot send events.

``python lineage_run.py DAG_FILE WAREHOUSE PAYLOAD_JSON RESULT_FILE``: seeds today's ``requests``
partition in WAREHOUSE, then runs the DAG as the commit event PAYLOAD_JSON (a ``CommitRange``
payload) triggers it. ``dag.test()`` takes no asset events, so the event is attached to the run it
creates, as the scheduler does for an asset-triggered run. Writes the run's state to RESULT_FILE.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any


def attach_commit_event(payload: dict[str, Any]) -> None:
    """Each run ``dag.test()`` creates consumes one event of the Dolt commit asset carrying ``payload``."""
    from airflow.models import dagrun
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    create = dagrun.get_or_create_dagrun

    def create_with_event(**kwargs: Any) -> Any:
        run = create(**kwargs)
        session = kwargs["session"]
        asset = session.scalar(select(AssetModel).where(AssetModel.name == "dolt_training_commits"))
        event = AssetEvent(asset_id=asset.id, extra={"payload": payload})
        session.add(event)
        run.consumed_asset_events.append(event)
        session.commit()
        return run

    dagrun.get_or_create_dagrun = create_with_event


def main(dag_file: str, warehouse: str, payload: str, result_file: str) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from pyspark.sql import SparkSession

    from retrain.demo.seed import seed_warehouse

    seed_warehouse(warehouse, customers=2, start=dt.datetime.now(dt.UTC).date(), days=1, rows_per_customer=2)
    bag = DagBag(dag_folder=dag_file)
    assert not bag.import_errors, bag.import_errors
    attach_commit_event(json.loads(payload))
    run = bag.dags["retrain_on_commit"].test(run_conf={"promotion_floor": None})  # 20-row adapters
    if (spark := SparkSession.getActiveSession()) is not None:
        spark.stop()
    with open(result_file, "w") as result:
        json.dump({"state": str(run.state), "run_id": run.run_id}, result)


if __name__ == "__main__":
    main(*sys.argv[1:])
