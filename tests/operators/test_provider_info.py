"""The provider entry point: every module and class it lists exists and imports."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from retrain_airflow import get_provider_info


def test_entry_point_is_registered() -> None:
    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("retrain_airflow")
    ]
    assert entry.load() is get_provider_info


def test_listed_modules_and_hook_classes_import() -> None:
    info = get_provider_info()
    for section in ("hooks", "triggers", "sensors", "operators"):
        for integration in info[section]:
            for module in integration["python-modules"]:
                importlib.import_module(module)
    for connection_type in info["connection-types"]:
        module, name = connection_type["hook-class-name"].rsplit(".", 1)
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == connection_type["connection-type"]
