"""Airflow provider for the retrain suite: thin hooks, sensors, triggers and operators over ``retrain``."""

from __future__ import annotations

from typing import Any

import retrain


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "retrain-suite",
        "name": "Retrain",
        "description": "Per-customer adapter retraining on Dolt commits, with MLflow lineage.",
        "versions": [retrain.__version__],
        "connection-types": [
            {"connection-type": "dolt", "hook-class-name": "retrain_airflow.hooks.dolt.DoltHook"},
            {"connection-type": "argo", "hook-class-name": "retrain_airflow.hooks.argo.ArgoHook"},
        ],
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
                "python-modules": ["retrain_airflow.operators.scoring", "retrain_airflow.operators.reports"],
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
