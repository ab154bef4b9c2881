"""The suite's wheel, built from a copy of what it packages (setuptools writes into its source folder)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ("retrain", "operators", "plugins")  # the packages' folders (setup.cfg's package_dir)
METADATA = ("setup.cfg", "pyproject.toml", "README.md")


def build_wheel(into: Path) -> Path:
    """Build ``retrain_suite-*.whl`` under ``into``; returns its path."""
    source, dist = into / "source", into / "dist"
    for name in PACKAGED:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in METADATA:
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("retrain_suite-*.whl")
    return wheel
