"""First contact with an MLflow tracking server: bounded in time, one message, the password hidden."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout, redacted_url
from retrain.errors import InputError, ServiceUnreachableError
from retrain.tracking import (
    MLFLOW_HTTP_DEFAULTS,
    NoTrackingStoreError,
    TrackingUnreachableError,
    TrackingUriError,
    tracking_uri,
)

from .sockets import BOUND, MARGIN, Elapsed, closed_port, health_only_port, silent_port

SECRET = "s3cr%40t-pw"  # percent-encoded "s3cr@t-pw", as it must appear in a URI


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """tracking_uri sets MLflow's variables in os.environ: restore them after each test."""
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", *MLFLOW_HTTP_DEFAULTS):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"http://bob:{SECRET}@mlflow.example:5000/path", "http://bob:***@mlflow.example:5000/path"),
        ("https://bob@mlflow.example", "https://bob@mlflow.example"),
        ("mysql+pymysql://ml:pw@db:3306/mlflow", "mysql+pymysql://ml:***@db:3306/mlflow"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://bob:pw@[::1", "http://***"),  # unparseable: nothing shown
        ("http://[::1", "http://[::1"),  # unparseable, but no password to hide
        ("mysql://ml:pw@db:99999/x", "mysql://ml:***@db:99999/x"),  # a bad port still splits
    ],
)
def test_redacted_url_hides_only_the_password(uri: str, shown: str) -> None:
    assert redacted_url(uri) == shown


def test_closed_port_fails_in_bound_naming_the_server_without_its_password() -> None:
    port = closed_port()
    with Elapsed() as timer, pytest.raises(TrackingUnreachableError) as raised:
        tracking_uri(f"http://bob:{SECRET}@127.0.0.1:{port}")
    assert timer.seconds < BOUND + MARGIN
    assert (
        str(raised.value)
        == f"cannot reach MLflow tracking server http://bob:***@127.0.0.1:{port}: Connection refused"
    )
    assert isinstance(raised.value, ServiceUnreachableError)


def test_silent_server_fails_in_bound() -> None:
    with silent_port() as port, Elapsed() as timer, pytest.raises(TrackingUnreachableError) as raised:
        tracking_uri(f"http://127.0.0.1:{port}")
    assert BOUND * 0.9 < timer.seconds < BOUND + MARGIN
    assert str(raised.value) == (
        f"cannot reach MLflow tracking server http://127.0.0.1:{port}: "
        f"no answer within {BOUND:g}s ($RETRAIN_CONNECT_TIMEOUT)"
    )


def test_credentials_move_from_the_uri_to_mlflows_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")  # a user's own setting wins
    with health_only_port() as port:
        assert tracking_uri(f"http://bob:{SECRET}@127.0.0.1:{port}/") == f"http://127.0.0.1:{port}/"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cr@t-pw"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]


def test_local_stores_are_not_contacted(tmp_path: os.PathLike[str]) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking_uri(uri) == uri
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", "1e9", "31536001"])
def test_bad_connect_timeout_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Capped at a year as the Dolt timeout is: 1e9 s would wait 31 years on a silent server."""
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, value)
    with pytest.raises(InputError) as raised:
        connect_timeout()
    assert str(raised.value) == (
        "$RETRAIN_CONNECT_TIMEOUT must be a number of seconds above 0 and at most 31536000 (a year), "
        f"got '{value}'"
    )


@contextmanager
def not_mlflow_port() -> Iterator[int]:
    """A loopback HTTP server answering 404 to every path, as a model server's REST port does to /health."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # http.server calls it by this name
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file:///nonexistent", r"unsupported MLflow tracking URI file:///nonexistent: use http\(s\)://"),
        ("./mlruns", "unsupported MLflow tracking URI ./mlruns"),
        ("gopher://x", "unsupported MLflow tracking URI gopher://x"),
        ("http://[::1", r"invalid MLflow tracking URI http://\[::1: Invalid IPv6 URL"),
        ("http://127.0.0.1:99999", "invalid MLflow tracking URI http://127.0.0.1:99999: Port out of range"),
        ("http://", "invalid MLflow tracking URI http://: no host"),
        ("sqlite:///{tmp}", "MLflow store {tmp} is a directory; give its SQLite file"),
        ("sqlite:///{tmp}/fifo", "MLflow store {tmp}/fifo is not a regular file"),
        ("sqlite:///{tmp}/garbage.db", "MLflow store {tmp}/garbage.db is not an SQLite database"),
        ("sqlite:///{tmp}/training.db", "MLflow store {tmp}/training.db is not an SQLite database"),
    ],
)
def test_unusable_uris_are_one_line_at_once(tmp_path: Path, uri: str, message: str) -> None:
    """MLflow would raise a traceback, or retry a directory or a FIFO forever."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "garbage.db").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "training.db").write_bytes(b"CTLD" + bytes(200))  # a Dolt repository, not MLflow's
    with Elapsed() as timer, pytest.raises(TrackingUriError, match=message.format(tmp=tmp_path)) as raised:
        tracking_uri(uri.format(tmp=tmp_path))
    assert timer.seconds < MARGIN
    assert "\n" not in str(raised.value)


def test_a_model_servers_port_is_not_an_mlflow_server() -> None:
    with not_mlflow_port() as port, pytest.raises(TrackingUriError) as raised:
        tracking_uri(f"http://127.0.0.1:{port}")
    assert str(raised.value) == (
        f"http://127.0.0.1:{port} is not an MLflow tracking server: GET /health answered 404 "
        "(a model server's or another service's port?)"
    )


def test_reading_never_creates_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from retrain.cli import main as retrain

    missing = tmp_path / "new" / "sub" / "x.db"
    with pytest.raises(NoTrackingStoreError, match=f"no MLflow store at {missing}: nothing was trained"):
        tracking_uri(f"sqlite:///{missing}", create=False)
    for command in (["list"], ["show", "0" * 32], ["diff", "0" * 32, "1" * 32]):
        assert retrain(["release", *command, "--mlflow-uri", f"sqlite:///{missing}"]) == 1
        assert f"retrain: error: no MLflow store at {missing}" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    assert tracking_uri(f"sqlite:///{missing}") == f"sqlite:///{missing}"  # a command that writes makes it
