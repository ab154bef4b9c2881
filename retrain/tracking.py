"""MLflow set-up shared by training, releases and scoring: where the tracking store is, and experiments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import retrain

DEFAULT_STORE = Path("var/mlflow")
CODE_VERSION_ENV = "RETRAIN_CODE_VERSION"


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded SQLite store under ``var/mlflow``."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    DEFAULT_STORE.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def ensure_experiment(name: str, uri: str) -> str:
    """The experiment's id, creating it with artifacts beside a local SQLite store (not in the cwd)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    artifacts = None
    if uri.startswith("sqlite:///"):
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=artifacts))
    except Exception:  # another worker created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def code_version() -> str:
    """``$RETRAIN_CODE_VERSION`` (set in images), else the checkout's git commit, else the package version."""
    if os.environ.get(CODE_VERSION_ENV):
        return os.environ[CODE_VERSION_ENV]
    package_dir = Path(retrain.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--", str(package_dir)],
            capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        return f"{head}-dirty" if dirty else head
    except (OSError, subprocess.SubprocessError):
        return retrain.__version__


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI: the tracking server, or ``$RETRAIN_MLFLOW_UI_URL`` (local store)."""
    base = _ui_base(uri)
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def model_version_url(uri: str, model_name: str, version: str) -> str | None:
    """The registered model version's page in the MLflow UI (see :func:`run_url`)."""
    base = _ui_base(uri)
    return f"{base}/#/models/{model_name}/versions/{version}" if base else None


def _ui_base(uri: str) -> str | None:
    base = uri if uri.startswith(("http://", "https://")) else os.environ.get("RETRAIN_MLFLOW_UI_URL")
    return base.rstrip("/") if base else None
