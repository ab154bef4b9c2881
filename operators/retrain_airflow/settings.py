"""Configuration the DAGs read at run time: Airflow Variables, each with an embedded default.

Values are Jinja templates (``{{ var.value.get(name, default) }}``), so a Variable set in the UI
applies from the next task on, and parsing DAG files never touches the metadata database. The
embedded defaults live under ``$RETRAIN_HOME`` (the directory ``make up`` runs from). Secrets are
not here: Dolt comes from the ``dolt_default`` connection, MLflow from ``$MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME = Path(os.environ.get("RETRAIN_HOME", Path.cwd())).resolve()
TRAINING_TABLE = "examples"
KEY_COLUMN = "customer_id"
# Embedded Derby admits one Spark job at a time: `make up --embedded` makes this pool with one slot.
# With a thrift metastore (`make up`'s default) Spark tasks stay in default_pool and run side by side.
SPARK_POOL = os.environ.get("RETRAIN_SPARK_POOL", "default_pool")


def variable(name: str, default: str) -> str:
    """A template for Variable ``name``, falling back to ``default``."""
    if "'" in default:
        raise ValueError(f"default for Variable {name!r} must not contain a quote: {default!r}")
    return "{{ var.value.get('" + name + "', '" + default + "') }}"


SUITE = variable("retrain_suite_path", str(HOME / "expectations" / "examples.json"))
DATA_DOCS = variable("retrain_data_docs_dir", str(HOME / "var" / "data_docs"))
TRAINING_BACKEND = variable("retrain_training_backend", "local")
WAREHOUSE = variable(
    "retrain_warehouse", os.environ.get("RETRAIN_WAREHOUSE", str(HOME / "var" / "warehouse"))
)
SCORING_CACHE = variable("retrain_scoring_cache", str(HOME / "var" / "scoring"))
REPORTS = variable("retrain_reports_dir", str(HOME / "var" / "reports"))
