"""Write a DAG file into the test AIRFLOW_HOME's dags folder and parse it (``dag.test()`` needs it there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.dag_processing.dagbag import DagBag


def load_dag(home: Path, dag_id: str, source: str) -> Any:
    """The DAG ``dag_id`` defined by ``source``, saved as ``<home>/dags/<dag_id>.py``."""
    path = home / "dags" / f"{dag_id}.py"
    path.write_text(source)
    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]
