"""Airflow's plugin manager finds the installed plugin, with its app and its "Releases" view, however
providers are discovered; no plugins folder is involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow import plugins_manager

from retrain_airflow.get_provider_info import get_provider_info

# apache-airflow-providers-openlineage 2.20 declares its own plugin both ways (entry point and
# provider info): with eager provider discovery Airflow 3.3 reports that second copy. Not ours.
UPSTREAM_DUPLICATES = {
    "OpenLineageProviderPlugin": "Plugin 'OpenLineageProviderPlugin' already registered, skipping"
}
# Prints what a fresh Airflow process loaded: plugin names (with repeats), their sources, the apps.
PROBE = """
import json
from airflow import plugins_manager
info = plugins_manager.get_plugin_info()
apps, _ = plugins_manager.get_fastapi_plugins()
print(json.dumps({
    "names": [p["name"] for p in info],
    "sources": {p["name"]: str(p["source"]) for p in info},
    "apps": [a["url_prefix"] for a in apps],
    "errors": plugins_manager.get_import_errors(),
}))
"""


def test_plugin_registers_the_releases_app_and_view() -> None:
    plugins = {plugin["name"]: plugin for plugin in plugins_manager.get_plugin_info()}
    assert "retrain" in plugins, f"loaded plugins: {sorted(plugins)}"
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [(a["name"], a["url_prefix"]) for a in apps] == [("Retrain releases", "/releases")]
    (view,) = plugins["retrain"]["external_views"]
    assert view["name"] == "Releases"
    assert not view["href"].startswith("/")  # relative, so it survives a proxy's path prefix


def test_the_entry_point_is_the_plugins_only_registration() -> None:
    """Declared once: a second listing in the provider info is loaded, skipped by name and reported
    as a plugin import error when providers are discovered eagerly."""
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "retrain"]
    assert entry.load().name == "retrain"
    assert "plugins" not in get_provider_info()


def loaded(tmp_path: Path, lazy_discover_providers: bool) -> dict[str, object]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),  # empty: only installed plugins
        "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": str(lazy_discover_providers),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    loaded: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("lazy_discover_providers", [True, False], ids=["lazy", "eager"])
def test_either_provider_discovery_loads_it_once_with_no_import_error(
    tmp_path: Path, lazy_discover_providers: bool
) -> None:
    found = loaded(tmp_path, lazy_discover_providers)
    assert found["names"].count("retrain") == 1  # type: ignore[attr-defined]
    assert "airflow.plugins" in found["sources"]["retrain"]  # type: ignore[index]
    assert found["apps"] == ["/releases"]
    assert found["errors"] == ({} if lazy_discover_providers else UPSTREAM_DUPLICATES)
