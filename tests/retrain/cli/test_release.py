"""`retrain release ...` against a tracking server that cannot be reached or fails: one line, no password.

The commands themselves, end to end on a real MLflow store: tests/retrain/release/test_cli.py.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.tracking import MLFLOW_HTTP_DEFAULTS

from ..sockets import BOUND, MARGIN, Elapsed, closed_port, health_only_port, silent_port
from .invoke import run

PASSWORD = "pa55-w0rd"


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_an_unreachable_tracking_server_is_one_line_in_bound_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", *MLFLOW_HTTP_DEFAULTS):
        monkeypatch.delenv(name, raising=False)
    with ExitStack() as stack:
        port = stack.enter_context(silent_port()) if server == "silent" else closed_port()
        with Elapsed() as timer:
            code, out, err = run(
                capsys, "release", "list", "--mlflow-uri", f"http://bob:{PASSWORD}@127.0.0.1:{port}"
            )
    assert timer.seconds < BOUND + MARGIN
    assert (code, out) == (1, "")
    reason = (
        "Connection refused"
        if server == "closed"
        else f"no answer within {BOUND:g}s ($RETRAIN_CONNECT_TIMEOUT)"
    )
    assert (
        err
        == f"retrain: error: cannot reach MLflow tracking server http://bob:***@127.0.0.1:{port}: {reason}\n"
    )


def test_mlflows_own_errors_never_show_the_password(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that is up but failing: MLflow's message names the URI, which no longer holds the password."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with health_only_port() as port:
        code, out, err = run(
            capsys, "-v", "release", "list", "--mlflow-uri", f"http://bob:{PASSWORD}@127.0.0.1:{port}"
        )
    assert (code, out) == (1, "")
    assert f"http://127.0.0.1:{port}/api/" in err
    assert len(err.splitlines()) == 1
    assert PASSWORD not in err + caplog.text
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD  # MLflow sends it as basic auth instead
