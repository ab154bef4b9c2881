"""First contact with an MLflow tracking server: bounded in time, one message, the password hidden."""

from __future__ import annotations

import os

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout, redacted_url
from retrain.errors import InputError, ServiceUnreachableError
from retrain.tracking import MLFLOW_HTTP_DEFAULTS, TrackingUnreachableError, tracking_uri

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


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_bad_connect_timeout_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, value)
    with pytest.raises(
        InputError, match=rf"^\$RETRAIN_CONNECT_TIMEOUT must be a positive number of seconds, got '{value}'$"
    ):
        connect_timeout()
