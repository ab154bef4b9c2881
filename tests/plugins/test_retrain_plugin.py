"""Airflow's plugin manager finds the plugin in plugins/ with its app and its "Releases" view."""

from __future__ import annotations

from airflow import plugins_manager


def test_plugin_registers_the_releases_app_and_view() -> None:
    plugins = {plugin["name"]: plugin for plugin in plugins_manager.get_plugin_info()}
    assert "retrain" in plugins, f"loaded plugins: {sorted(plugins)}"
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [(a["name"], a["url_prefix"]) for a in apps] == [("Retrain releases", "/releases")]
    (view,) = plugins["retrain"]["external_views"]
    assert view["name"] == "Releases"
    assert not view["href"].startswith("/")  # relative, so it survives a proxy's path prefix
