"""Airflow's plugin manager finds the installed plugin, with its app and its "Releases" view, however
providers are discovered; no plugins folder is involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow import plugins_manager

from retrain_airflow.get_provider_info import PLUGIN_CLASS, get_provider_info

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


def test_provider_info_names_the_same_plugin_class() -> None:
    (plugin,) = get_provider_info()["plugins"]
    module, name = PLUGIN_CLASS.rsplit(".", 1)
    assert plugin == {"name": "retrain", "plugin-class": PLUGIN_CLASS}
    assert getattr(__import__(module, fromlist=[name]), name).name == "retrain"


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


def test_default_discovery_loads_it_once_from_the_entry_point(tmp_path: Path) -> None:
    found = loaded(tmp_path, lazy_discover_providers=True)
    assert found["names"].count("retrain") == 1  # type: ignore[attr-defined]
    assert "airflow.plugins" in found["sources"]["retrain"]  # type: ignore[index]
    assert found["apps"] == ["/releases"]
    assert found["errors"] == {}


def test_eager_provider_discovery_still_loads_it_once(tmp_path: Path) -> None:
    """Listed by the entry point and the provider info, as Airflow's own providers do: Airflow keeps
    the first and records the second, by name, as a skipped duplicate (nothing else failed)."""
    found = loaded(tmp_path, lazy_discover_providers=False)
    assert found["names"].count("retrain") == 1  # type: ignore[attr-defined]
    assert found["apps"] == ["/releases"]
    assert list(found["errors"].values()) == ["Plugin 'retrain' already registered, skipping"]  # type: ignore[attr-defined]
