"""What Airflow reads of this provider without importing it: ``get_provider_info()``, through the
``apache_airflow_provider`` entry point (as Airflow's own providers keep it, in a module of its own).

It names the hooks, triggers, sensors, operators and extra links, the connection forms of ``dolt``
and ``argo`` and the ``[retrain]`` config section. The AirflowPlugin is not listed here: the
``airflow.plugins`` entry point loads it under either ``[core] lazy_discover_providers`` setting,
and a second listing is reported as a plugin import error when providers are discovered eagerly.
"""

from __future__ import annotations

from typing import Any

import retrain


def _text_field(label: str, description: str, **schema: Any) -> dict[str, Any]:
    """One ``conn-fields`` entry: an optional extra shown in the connection form."""
    return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}


def _seconds_field(label: str, description: str) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["number", "null"], "minimum": 0}}


# The connection forms, read by Airflow's UI from here without importing the hooks (Airflow 3.2+).
DOLT_CONNECTION: dict[str, Any] = {
    "connection-type": "dolt",
    "hook-class-name": "retrain_airflow.hooks.dolt.DoltHook",
    "hook-name": "Dolt",
    "ui-field-behaviour": {
        "relabeling": {"schema": "Database"},
        "placeholders": {
            "host": "dolt sql-server host (leave empty for an embedded doltlite file)",
            "port": "3306",
            "schema": "training",
            "login": "root",
        },
    },
    "conn-fields": {
        "path": _text_field(
            "Doltlite file",
            "Absolute path of an embedded doltlite repository; when set, host and port are unused.",
        ),
        "web_url": _text_field(
            "Web UI URL", "The repository on DoltHub or DoltLab, for commit and diff links.", format="url"
        ),
        "timeout": _seconds_field(
            "Connect timeout (s)",
            "sql-server only: seconds to connect "
            "(default $RETRAIN_DOLT_TIMEOUT, else $RETRAIN_CONNECT_TIMEOUT, else 15).",
        ),
        "query_timeout": _seconds_field(
            "Query timeout (s)",
            "sql-server only: seconds each query may read or write "
            "(default $RETRAIN_DOLT_QUERY_TIMEOUT, else 600).",
        ),
    },
}
ARGO_CONNECTION: dict[str, Any] = {
    "connection-type": "argo",
    "hook-class-name": "retrain_airflow.hooks.argo.ArgoHook",
    "hook-name": "Argo Workflows",
    "ui-field-behaviour": {
        "hidden-fields": ["login"],
        "relabeling": {"password": "Bearer token", "schema": "Scheme (https or http)"},
        "placeholders": {
            "host": "argo-server.argo.svc",
            "port": "2746",
            "schema": "https",
        },
    },
    "conn-fields": {
        "namespace": _text_field(
            "Namespace",
            "Kubernetes namespace of the workflows and the retrain-train-adapters template.",
            default="ml-training",
        ),
        "verify": {
            "label": "Verify TLS certificate",
            "description": "Uncheck only for a self-signed test server; "
            'a CA bundle path may be given as "verify" in Extra.',
            "schema": {"type": ["boolean", "null"], "default": True},
        },
    },
}


def _option(description: str, default: str, example: str) -> dict[str, Any]:
    """One ``[retrain]`` option; string-typed, as Variables (which override it) are strings."""
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": "string",
        "example": example,
        "default": default,
    }


# The deployment settings `airflow config list` documents. Airflow expands {AIRFLOW_HOME} in defaults;
# AIRFLOW__RETRAIN__<OPTION> sets one by environment, as for any Airflow option.
CONFIG: dict[str, Any] = {
    "retrain": {
        "description": "Deployment settings of the retrain DAGs, read when DAG files are parsed. "
        "An Airflow Variable named retrain_<option> overrides an option at run time "
        "(except spark_pool and commit_poll_seconds, which are read at parse time only).",
        "options": {
            "suite_path": _option(
                "Great Expectations suite (JSON) the validation gate runs. Empty: the suite shipped "
                "with the package (retrain/validation/suites/examples.json).",
                default="",
                example="/shared/retrain/suites/examples.json",
            ),
            "training_backend": _option(
                "Where adapters train: local (processes on the Airflow worker) or argo "
                "(GPU pods through the argo_default connection).",
                default="local",
                example="argo",
            ),
            "data_docs_dir": _option(
                "Folder of the Great Expectations Data Docs, one page per validated commit.",
                default="{AIRFLOW_HOME}/retrain/data_docs",
                example="/shared/retrain/data_docs",
            ),
            "warehouse": _option(
                "Hive warehouse the scoring DAGs read and write.",
                default="{AIRFLOW_HOME}/retrain/warehouse",
                example="hdfs:///user/hive/warehouse",
            ),
            "scoring_cache": _option(
                "Local cache of a release's adapters while scoring.",
                default="{AIRFLOW_HOME}/retrain/scoring",
                example="/tmp/retrain-scoring",
            ),
            "reports_dir": _option(
                "Folder of retro-test reports (HTML with plots, and their JSON).",
                default="{AIRFLOW_HOME}/retrain/reports",
                example="/shared/retrain/reports",
            ),
            "handoff_path": _option(
                "Where per-customer task results too large for XCom are written (an Airflow "
                "ObjectStoragePath: s3:// or gs:// where workers share no disk).",
                default="file://{AIRFLOW_HOME}/retrain/handoff",
                example="s3://ml-airflow/retrain/handoff",
            ),
            "commit_poll_seconds": _option(
                "Seconds between the Dolt commit trigger's looks at the training branch's head "
                "(retrain_on_commit): how soon a commit starts a run, against one query per poll.",
                default="30",
                example="10",
            ),
            "spark_pool": _option(
                "Airflow pool of the Spark tasks; one slot serializes them (needed with an embedded "
                "Derby metastore).",
                default="default_pool",
                example="spark",
            ),
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "retrain-suite",
        "name": "Retrain",
        "description": "Per-customer adapter retraining on Dolt commits, with MLflow lineage.",
        "versions": [retrain.__version__],
        "connection-types": [DOLT_CONNECTION, ARGO_CONNECTION],
        "config": CONFIG,
        "hooks": [
            {"integration-name": "Dolt", "python-modules": ["retrain_airflow.hooks.dolt"]},
            {"integration-name": "Argo Workflows", "python-modules": ["retrain_airflow.hooks.argo"]},
        ],
        "triggers": [
            {"integration-name": "Dolt", "python-modules": ["retrain_airflow.triggers.dolt"]},
            {"integration-name": "Argo Workflows", "python-modules": ["retrain_airflow.triggers.argo"]},
        ],
        "sensors": [{"integration-name": "Dolt", "python-modules": ["retrain_airflow.sensors.dolt"]}],
        "operators": [
            {
                "integration-name": "Dolt",
                "python-modules": ["retrain_airflow.operators.dolt", "retrain_airflow.operators.validation"],
            },
            {"integration-name": "Argo Workflows", "python-modules": ["retrain_airflow.operators.training"]},
            {"integration-name": "MLflow", "python-modules": ["retrain_airflow.operators.release"]},
            {
                "integration-name": "Apache Hive",
                "python-modules": [
                    "retrain_airflow.operators.scoring",
                    "retrain_airflow.operators.reports",
                    "retrain_airflow.operators.drift",
                ],
            },
            {"integration-name": "KServe", "python-modules": ["retrain_airflow.operators.serving"]},
        ],
        "extra-links": [
            "retrain_airflow.links.DataDocsLink",
            "retrain_airflow.links.ArgoWorkflowLink",
            "retrain_airflow.links.MLflowRunLink",
            "retrain_airflow.links.DoltCommitDiffLink",
        ],
        "integrations": [
            {"integration-name": "Dolt", "external-doc-url": "https://docs.dolthub.com/"},
            {
                "integration-name": "Argo Workflows",
                "external-doc-url": "https://argoproj.github.io/workflows/",
            },
            {"integration-name": "MLflow", "external-doc-url": "https://mlflow.org/docs/latest/"},
        ],
    }
