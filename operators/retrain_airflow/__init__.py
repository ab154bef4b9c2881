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
        ],
        "hooks": [{"integration-name": "Dolt", "python-modules": ["retrain_airflow.hooks.dolt"]}],
        "triggers": [{"integration-name": "Dolt", "python-modules": ["retrain_airflow.triggers.dolt"]}],
        "sensors": [{"integration-name": "Dolt", "python-modules": ["retrain_airflow.sensors.dolt"]}],
        "operators": [
            {
                "integration-name": "Dolt",
                "python-modules": ["retrain_airflow.operators.dolt", "retrain_airflow.operators.validation"],
            }
        ],
        "extra-links": ["retrain_airflow.links.DataDocsLink"],
        "integrations": [{"integration-name": "Dolt", "external-doc-url": "https://docs.dolthub.com/"}],
    }
