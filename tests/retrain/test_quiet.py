"""Library noise: MLflow's own log-level switch, and narrow filters for known library warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = """
import logging
from retrain.cli import main
code = main(["score", "--release", "0" * 32])
print(code, logging.getLogger("mlflow").getEffectiveLevel())
"""

WARN = """
import multiprocessing, warnings
from retrain.quiet import quiet_libraries

def warn(text):
    warnings.warn_explicit(text, FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")

if __name__ == "__main__":
    quiet_libraries()
    warn("`is_gradient_checkpointing` is deprecated and will be removed in v6. (parent)")
    warn("another deprecation (parent)")
    child = multiprocessing.get_context("spawn").Process(
        target=warn, args=("`is_gradient_checkpointing` is deprecated and will be removed in v6. (child)",)
    )
    child.start()
    child.join()
"""


def run(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (MLflow and warning filters are set up once per process)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_LOGGING_LEVEL", "PYTHONWARNINGS")}
    path = tmp_path / "script.py"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**environment, "PYTHONPATH": os.getcwd(), **env},
    )


@pytest.mark.parametrize(("level", "effective"), [(None, 30), ("DEBUG", 10)])
def test_the_cli_sets_mlflow_to_warning_through_its_own_switch(
    level: str | None, effective: int, tmp_path: Path
) -> None:
    (tmp_path / "mlflow.db").touch()  # scoring reads a store, never creates one
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = run(CLI, tmp_path, **env, **({"MLFLOW_LOGGING_LEVEL": level} if level else {}))
    assert result.stdout.split() == ["1", str(effective)]  # set before MLflow's import, not undone by it
    info = [line for line in result.stderr.splitlines() if " INFO mlflow" in line]
    assert bool(info) == (level == "DEBUG")  # "Creating initial MLflow database tables..." only when asked
    assert result.stderr.splitlines()[-1] == (
        "retrain: error: retrain score needs --table, --ds and --out (or --check-reference)"
    )


def test_known_warnings_are_ignored_narrowly_here_and_in_spawned_workers(tmp_path: Path) -> None:
    result = run(WARN, tmp_path)
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stderr.splitlines() if "Warning" in line]
    assert len(shown) == 1
    assert shown[0].endswith("FutureWarning: another deprecation (parent)")  # same module, other message


def test_the_users_own_warning_filters_win(tmp_path: Path) -> None:
    result = run(WARN, tmp_path, PYTHONWARNINGS="default::FutureWarning")
    assert result.returncode == 0, result.stderr
    assert sum("is_gradient_checkpointing" in line for line in result.stderr.splitlines()) == 2
