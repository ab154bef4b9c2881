"""Packaging: setup.cfg lists every package (the provider lives under operators/); the CLI runs."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_setup_cfg() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "retrain").rglob("__init__.py")} | {
        ".".join(p.parent.relative_to(ROOT / "operators").parts)
        for p in (ROOT / "operators" / "retrain_airflow").rglob("__init__.py")
    }
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
