"""The Airflow assets the DAGs hand work on by: scored partitions, and the drift measured on them.

- ``scores``: each event is one partition scored by ``score_daily`` (a partitioned asset event:
  its partition key is the day ``ds``); its extra names ``ds``, ``release_id`` and ``output_table``.
  ``monitor_daily`` runs once per partition key.
- ``drift``: each event is one day whose drift was measured; its extra names ``ds``,
  ``release_id``, the ``drifting`` customers (a handoff reference when the list is large:
  :mod:`retrain_airflow.handoff`) and their ``count``. Not partitioned, so any DAG may schedule on it.
"""

from __future__ import annotations

from airflow.sdk import Asset

SCORES = Asset(name="scores", uri="hive://default/scores")
DRIFT = Asset(name="drift", uri="hive://default/drift")
