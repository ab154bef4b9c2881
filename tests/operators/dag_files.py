"""Write a DAG file into the test AIRFLOW_HOME's dags folder and import it (``dag.test()`` needs it there)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def load_dag(home: Path, dag_id: str, source: str) -> Any:
    """The DAG object defined as ``dag`` by ``source``, saved as ``<home>/dags/<dag_id>.py``."""
    path = home / "dags" / f"{dag_id}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(dag_id, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag
