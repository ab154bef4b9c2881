"""MLflow set-up shared by training, releases and scoring: where the tracking store is, and experiments."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import retrain
from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout, redacted_url, root_cause, total_timeout
from retrain.errors import InputError, NotFoundError, ServiceUnreachableError

DEFAULT_STORE = Path("var/mlflow")
CODE_VERSION_ENV = "RETRAIN_CODE_VERSION"
# Image tags that move from build to build: never a code version (a training key would outlive the code).
MUTABLE_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master"})
# MLflow's own defaults retry a dead server for minutes (7 retries, backoff factor 2, 120 s per try).
# These bound every later call too; a user's own settings of these variables win.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


# Schemes of the stores MLflow's client can use (a dialect may follow: postgresql+psycopg2://).
# Its file store (file:// or a plain path) is refused by MLflow 3 itself: use SQLite instead.
SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
# The first bytes of an SQLite file (MLflow's store is always stock SQLite, never doltlite's).
SQLITE_HEADER = b"SQLite format 3\x00"


class TrackingUnreachableError(ServiceUnreachableError):
    """The MLflow tracking server did not answer within ``$RETRAIN_CONNECT_TIMEOUT``."""


class TrackingUriError(InputError):
    """A tracking URI MLflow cannot use: malformed, an unsupported scheme, not an SQLite file."""


class NoTrackingStoreError(NotFoundError):
    """A command that only reads releases found no local store (it never creates one)."""


def tracking_uri(uri: str | None = None, *, create: bool = True) -> str:
    """The tracking URI to hand MLflow: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded store.

    The embedded store is SQLite under ``var/mlflow``. A URI MLflow cannot use is refused in one
    line (:class:`TrackingUriError`), and so is an ``sqlite:///`` path that is a directory, a FIFO
    or not an SQLite file, which MLflow would retry or wait on forever. Without ``create`` (a
    read-only command) a missing SQLite store is :class:`NoTrackingStoreError`, not a new one.

    For a tracking server (``http(s)://``), this is the first contact: its ``user:password@``
    moves into ``$MLFLOW_TRACKING_USERNAME`` and ``$MLFLOW_TRACKING_PASSWORD`` (MLflow sends them
    as basic auth), so no message, log line or UI link built from the returned URI shows the
    password; MLflow's HTTP retries are bounded (:data:`MLFLOW_HTTP_DEFAULTS`); and the server
    must answer within the connect timeout, else :class:`TrackingUnreachableError`.
    """
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not resolved:
        if create:
            DEFAULT_STORE.mkdir(parents=True, exist_ok=True)
        resolved = f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"
    scheme = _scheme(resolved)
    if scheme == "sqlite":
        _check_sqlite_store(resolved, create=create)
    if scheme not in ("http", "https"):
        return resolved
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    server = _move_credentials(resolved)
    _check_reachable(server, redacted_url(resolved))
    return server


def _scheme(uri: str) -> str:
    """The URI's scheme without its dialect, when MLflow can use it."""
    shown = redacted_url(uri)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises for a port out of range or not a number
    except ValueError as error:
        raise TrackingUriError(f"invalid MLflow tracking URI {shown}: {error}") from None
    scheme = parts.scheme.partition("+")[0].lower()
    if scheme not in SCHEMES:
        raise TrackingUriError(
            f"unsupported MLflow tracking URI {shown}: use http(s)://HOST:PORT, sqlite:///FILE or a "
            "database URL (postgresql://, mysql://, mssql://)"
        )
    if scheme in ("http", "https") and not parts.hostname:
        raise TrackingUriError(f"invalid MLflow tracking URI {shown}: no host")
    return scheme


def _check_sqlite_store(uri: str, *, create: bool) -> None:
    """An ``sqlite:///`` store must be an SQLite file, or missing when ``create`` allows making it."""
    name = uri.removeprefix("sqlite:///").split("?")[0]
    if name in ("", ":memory:"):
        return
    path = Path(name)
    try:
        found = path.stat()
    except FileNotFoundError:
        if create:
            return
        raise NoTrackingStoreError(
            f"no MLflow store at {path}: nothing was trained or released there (check --mlflow-uri "
            "or $MLFLOW_TRACKING_URI); this command reads a store and never creates one"
        ) from None
    except OSError as error:
        raise TrackingUriError(f"MLflow store {path}: {error.strerror}") from None
    if stat.S_ISDIR(found.st_mode):
        raise TrackingUriError(
            f"MLflow store {path} is a directory; give its SQLite file, e.g. sqlite:///{path}/mlflow.db"
        )
    if not stat.S_ISREG(found.st_mode):
        raise TrackingUriError(f"MLflow store {path} is not a regular file (a FIFO, socket or device)")
    with path.open("rb") as file:
        head = file.read(16)
    if head and head != SQLITE_HEADER:
        raise TrackingUriError(f"MLflow store {path} is not an SQLite database (no SQLite header)")


def _move_credentials(uri: str) -> str:
    """``uri`` without its userinfo, which goes to MLflow's credential variables (the URI's win)."""
    parts = urlsplit(uri)
    if parts.username is None:
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
    if parts.password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _check_reachable(uri: str, shown: str) -> None:
    """One ``GET /health`` bounded in total: MLflow's client would retry an absent server for minutes.

    Any answer below 500 (even 401 from an auth proxy) shows a server is there; a 404 shows it is
    not MLflow's (every MLflow server answers ``/health``): a model server's port, say.
    """
    import requests

    seconds = connect_timeout()
    try:
        response = requests.get(
            f"{uri.rstrip('/')}/health", timeout=total_timeout(seconds), allow_redirects=False
        )
    except requests.Timeout:
        reason = f"no answer within {seconds:g}s (${CONNECT_TIMEOUT_ENV})"
    except requests.RequestException as error:
        reason = root_cause(error)
    else:
        if response.status_code == 404:
            raise TrackingUriError(
                f"{shown} is not an MLflow tracking server: GET /health answered 404 (a model server's "
                "or another service's port?)"
            )
        if response.status_code < 500:
            return
        reason = f"/health answered HTTP {response.status_code}"
    raise TrackingUnreachableError(f"cannot reach MLflow tracking server {shown}: {reason}")


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
    """``$RETRAIN_CODE_VERSION`` (an image's tag or digest), else the git commit, else the package version.

    A mutable tag such as ``latest`` is refused: adapters trained by new code would share its
    training key with the old ones and be skipped as already trained.
    """
    if version := os.environ.get(CODE_VERSION_ENV, "").strip():
        if version.lower() in MUTABLE_TAGS:
            raise InputError(
                f"${CODE_VERSION_ENV}={version} names no code version (the tag moves from build to "
                "build); set the image's version tag or digest"
            )
        return version
    package_dir = Path(retrain.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--", str(package_dir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
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
