"""Packaging: setup.cfg lists every package (the provider lives under operators/, its plugin under
plugins/); the CLI runs; the wheel alone installs a complete provider."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import pytest

import retrain

from .wheel import build_wheel

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_setup_cfg() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "retrain").rglob("__init__.py")} | {
        ".".join(p.parent.relative_to(ROOT / "operators").parts)
        for p in (ROOT / "operators" / "retrain_airflow").rglob("__init__.py")
    }
    assert (ROOT / "plugins" / "__init__.py").is_file()
    found.add("retrain_airflow.plugins")  # the top-level plugins/, mapped by package_dir
    assert listed == found


def test_core_does_not_import_airflow() -> None:
    """Argo pods and Spark executors run retrain/ without Airflow installed."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "retrain").rglob("*.py")
        if any(
            line.lstrip().startswith(("import airflow", "from airflow"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_console_script_runs() -> None:
    script = Path(sys.executable).with_name("retrain")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "demo-data" in result.stdout


# Run inside the fresh venv: what a user gets from `pip install retrain-suite[airflow]`.
INSTALLED_PROBE = """
import json
from importlib.resources import files
import retrain, retrain_airflow.pipelines
from airflow import plugins_manager
from airflow.configuration import conf
from airflow.providers_manager import ProvidersManager
from retrain.validation.suite import PACKAGED_SUITE, load_suite

manager = ProvidersManager()
plugins = {p["name"]: str(p["source"]) for p in plugins_manager.get_plugin_info()}
apps, _ = plugins_manager.get_fastapi_plugins()
print(json.dumps({
    "modules": [retrain.__file__, retrain_airflow.pipelines.__file__],
    "provider": manager.providers["retrain-suite"].version,
    "hooks": {t: manager.hooks[t].hook_name for t in ("dolt", "argo")},
    "plugins": plugins,
    "apps": [a["url_prefix"] for a in apps],
    "plugin_errors": plugins_manager.get_import_errors(),
    "warehouse": conf.get("retrain", "warehouse"),
    "suite": load_suite(PACKAGED_SUITE).name,
    "facet_schemas": sorted(f.name for f in files("retrain_airflow").joinpath("schemas").iterdir()),
}))
"""


@pytest.mark.slow
def test_the_wheel_alone_is_a_complete_provider(tmp_path: Path) -> None:
    """Build the wheel, install it with its [airflow] extra into a fresh venv and look at it from
    outside the checkout: provider, connection types, plugin, config section, packaged suite."""
    wheel = build_wheel(tmp_path / "build")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",  # half the install time; what the probe imports compiles as it goes
            "-c",
            str(ROOT / "constraints.txt"),
            f"{wheel}[airflow]",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=900,
    )
    home = tmp_path / "airflow"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }  # no PYTHONPATH: nothing of the checkout is importable
    script = tmp_path / "probe.py"  # a file, not -c: pyspark takes a main without __file__ for doctests
    script.write_text(INSTALLED_PROBE)
    probe = subprocess.run(
        [str(python), str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(probe.stdout.splitlines()[-1])
    assert all(path.startswith(str(venv)) for path in found["modules"]), found["modules"]
    assert found["provider"] == retrain.__version__
    assert found["hooks"] == {"dolt": "Dolt", "argo": "Argo Workflows"}
    assert "airflow.plugins" in found["plugins"]["retrain"]
    assert found["apps"] == ["/releases"]
    assert found["plugin_errors"] == {}
    assert found["warehouse"] == f"{home}/retrain/warehouse"
    assert found["suite"] == "examples"
    shipped = sorted(f.name for f in (ROOT / "operators" / "retrain_airflow" / "schemas").glob("*.json"))
    assert found["facet_schemas"] == shipped  # the OpenLineage facets' JSON Schemas
    listed = subprocess.run(
        [
            str(venv / "bin" / "airflow"),
            "config",
            "list",
            "--section",
            "retrain",
            "--show-values",
            "--include-descriptions",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "suite_path",
        "training_backend",
        "warehouse",
        "handoff_path",
        "spark_pool",
        "commit_poll_seconds",
    ):
        assert f"\n{option} = " in listed, listed
    assert "training_backend = local" in listed
    # The templates users apply, written by the installed code: the YAML this repository commits.
    written = subprocess.run(
        [str(venv / "bin" / "retrain"), "templates", "--out", str(tmp_path / "templates")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(written) == 3
    for path in map(Path, written):
        assert path.read_text() == (ROOT / path.relative_to(tmp_path / "templates")).read_text()
