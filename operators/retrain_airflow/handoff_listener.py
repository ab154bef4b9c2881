"""Purges a DAG run's handed-off files (:mod:`retrain_airflow.handoff`) once the run succeeded.

A listener of the provider's plugin, so every DAG using the operators gets it, whoever wrote the
DAG. Airflow calls it where the run's state is decided (the scheduler; ``dag.test()`` in process).
A failed run keeps its files, so that its failed tasks can be cleared and rerun.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from retrain_airflow.handoff import purge

log = logging.getLogger(__name__)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    if purge(dag_run.dag_id, dag_run.run_id):
        log.info("purged the handed-off files of %s run %s", dag_run.dag_id, dag_run.run_id)
