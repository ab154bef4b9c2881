"""Deployment settings the DAGs read: the provider's ``[retrain]`` config section.

The options, their defaults and descriptions are declared in the provider info
(:data:`retrain_airflow.get_provider_info.CONFIG`), so ``airflow config list --section retrain``
documents them and ``AIRFLOW__RETRAIN__<OPTION>`` sets one as for any Airflow option. They are
read when DAG files are parsed; each (but ``spark_pool`` and ``commit_poll_seconds``, which Airflow
uses at parse time) becomes a Jinja template that an Airflow Variable ``retrain_<option>`` overrides
from the next task on, without touching the metadata database at parse time. Secrets are not here:
Dolt comes from the ``dolt_default`` connection, MLflow from ``$MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import math

from airflow.sdk import conf

SECTION = "retrain"
TRAINING_TABLE = "examples"
KEY_COLUMN = "customer_id"


def configured(option: str) -> str:
    """The ``[retrain]`` value of ``option`` (its declared default when unset)."""
    return str(conf.get(SECTION, option))


def overridable(option: str) -> str:
    """A template of Variable ``retrain_<option>``, falling back to the configured value."""
    return "{{ var.value.get('" + f"{SECTION}_{option}" + "', " + _jinja_string(configured(option)) + ") }}"


def _jinja_string(value: str) -> str:
    """``value`` as a Jinja string literal, read back exactly (quotes and backslashes included)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Empty unless configured: the validation operator then runs the suite shipped with the package, found
# on the worker that runs it (a path resolved here would be the DAG processor's).
SUITE = overridable("suite_path")
DATA_DOCS = overridable("data_docs_dir")
TRAINING_BACKEND = overridable("training_backend")
WAREHOUSE = overridable("warehouse")
SCORING_CACHE = overridable("scoring_cache")
REPORTS = overridable("reports_dir")


def seconds(option: str) -> float:
    """The ``[retrain]`` value of ``option`` as seconds above 0, for a DAG that reads it at parse time
    (a bad value fails that DAG's import, named, and no other)."""
    value = configured(option)
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"[{SECTION}] {option} must be a number of seconds above 0, got {value!r}")
    return number


# Embedded Derby admits one Spark job at a time: `make up --embedded` sets a pool with one slot.
# With a thrift metastore (`make up`'s default) Spark tasks stay in default_pool and run side by side.
SPARK_POOL = configured("spark_pool")
