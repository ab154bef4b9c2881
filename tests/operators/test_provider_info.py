"""The provider entry point: every module and class it lists exists and imports, its info validates
against Airflow's schemas, and Airflow's UI gets the connection forms it declares."""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest
from airflow.providers_manager import ProvidersManager

from retrain.dolt.connections import URL_OPTIONS
from retrain_airflow.get_provider_info import get_provider_info
from retrain_airflow.hooks.argo import ArgoHook
from retrain_airflow.hooks.dolt import DoltHook


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


def airflow_schema(name: str) -> dict[str, Any]:
    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_provider_info_validates_against_airflows_schemas() -> None:
    info = get_provider_info()
    jsonschema.validate(info, airflow_schema("provider_info.schema.json"))
    # provider_info's schema leaves the connection forms open; provider.yaml's spells them out
    connection_schema = airflow_schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], connection_schema)


def test_each_form_lists_the_extras_its_hook_reads() -> None:
    forms = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert set(forms["dolt"]["conn-fields"]) == {"path", "web_url", *URL_OPTIONS}
    assert set(forms["argo"]["conn-fields"]) == {"namespace", "verify"}
    for hook in (DoltHook, ArgoHook):
        form = forms[hook.conn_type]
        assert form["hook-name"] == hook.hook_name  # the UI's name and the one Airflow logs agree
        assert "get_ui_field_behaviour" not in vars(hook)  # deprecated since Airflow 3.2: declared above
        assert "get_connection_form_widgets" not in vars(hook)


@pytest.fixture(scope="module")
def providers() -> ProvidersManager:
    return ProvidersManager()


def test_providers_manager_exposes_the_forms_without_warnings(
    providers: ProvidersManager, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.INFO, "airflow.providers_manager"),
    ):
        warnings.simplefilter("always")
        hooks = {conn_type: providers.hooks[conn_type] for conn_type in ("dolt", "argo")}
        behaviours = providers.field_behaviours
        widgets = providers.connection_form_widgets
    ours = [str(w.message) for w in caught if "retrain_airflow" in str(w.message)]
    ours += [r.getMessage() for r in caplog.records if "retrain_airflow" in r.getMessage()]
    assert ours == []  # neither "not fully initialized" nor a deprecated hook method
    assert {t: (h.hook_name, h.connection_testable) for t, h in hooks.items() if h} == {
        "dolt": ("Dolt", True),
        "argo": ("Argo Workflows", True),
    }
    assert behaviours["dolt"]["relabeling"] == {"schema": "Database"}
    assert behaviours["argo"]["hidden_fields"] == ["login"]
    assert behaviours["argo"]["relabeling"]["password"] == "Bearer token"
    labels = {
        name: w.field["schema"]["title"]
        for name, w in widgets.items()
        if "__dolt__" in name or "__argo__" in name
    }
    assert labels == {
        "extra__dolt__path": "Doltlite file",
        "extra__dolt__web_url": "Web UI URL",
        "extra__dolt__timeout": "Connect timeout (s)",
        "extra__dolt__query_timeout": "Query timeout (s)",
        "extra__argo__namespace": "Namespace",
        "extra__argo__verify": "Verify TLS certificate",
    }


def test_the_ui_api_serves_the_forms(providers: ProvidersManager) -> None:
    """What ``/ui/connections/hook_meta`` answers the connection form with."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {m.connection_type: m.model_dump() for m in HookMetaService.hook_meta_data()}
    dolt, argo = meta["dolt"], meta["argo"]
    assert (dolt["hook_name"], argo["hook_name"]) == ("Dolt", "Argo Workflows")
    assert dolt["standard_fields"]["url_schema"]["title"] == "Database"
    assert argo["standard_fields"]["login"]["hidden"]
    assert dolt["extra_fields"]["path"]["schema"]["title"] == "Doltlite file"  # stored in extra as "path"
    assert argo["extra_fields"]["namespace"]["value"] == "ml-training"
