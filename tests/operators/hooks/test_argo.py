"""ArgoHook.test_connection against the Argo Server stand-in, a closed port and a silent one."""

from __future__ import annotations

import json

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.fanout.argo import TEMPLATE_NAME
from retrain_airflow.hooks.argo import ArgoHook

from ...retrain.fanout.argo_server_stand_in import StandInState, airflow_connection, argo_server_stand_in
from ...retrain.sockets import BOUND, MARGIN, Elapsed, closed_port, silent_port

TOKEN = "argo-secret-token-42"


@pytest.fixture(autouse=True)
def bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))


def connect(
    monkeypatch: pytest.MonkeyPatch, url: str, token: str = TOKEN, namespace: str = "ml-training"
) -> ArgoHook:
    monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, token, namespace))
    return ArgoHook()


def test_succeeds_when_the_namespace_has_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    state = StandInState(token=TOKEN)
    with argo_server_stand_in(state) as url:
        ok, message = connect(monkeypatch, url).test_connection()
    assert (ok, message) == (
        True,
        f"Argo Server {url}: namespace ml-training has workflow template {TEMPLATE_NAME}",
    )
    assert state.requests == [
        f"GET /api/v1/workflow-templates/ml-training/{TEMPLATE_NAME}"
    ]  # one GET, no retry


def test_wrong_token_is_named_without_showing_either_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with argo_server_stand_in(StandInState(token=TOKEN)) as url:
        ok, message = connect(monkeypatch, url, token="wrong-token-7").test_connection()
    assert (ok, message) == (False, f"Argo Server {url} rejected the token (401)")


def test_missing_template_says_what_to_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    with argo_server_stand_in(StandInState(token=TOKEN, templates=[])) as url:
        ok, message = connect(monkeypatch, url, namespace="team-b").test_connection()
    assert not ok
    assert message == (
        f"Argo Server {url}: namespace team-b has no workflow template {TEMPLATE_NAME} (404); "
        f"apply argo_templates/{TEMPLATE_NAME}.yaml"
    )


def test_server_error_is_reported_once_without_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    state = StandInState(token=TOKEN, server_errors=5)
    with argo_server_stand_in(state) as url:
        ok, message = connect(monkeypatch, url).test_connection()
    assert (ok, message) == (
        False,
        f"Argo Server {url}: GET workflow template answered HTTP 503 Service Unavailable",
    )
    assert len(state.requests) == 1


def test_closed_port_fails_at_once_naming_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with Elapsed() as timer:
        ok, message = connect(monkeypatch, url).test_connection()
    assert (ok, message) == (False, f"cannot reach Argo Server at {url}: Connection refused")
    assert timer.seconds < MARGIN


def test_silent_server_fails_within_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with silent_port() as port, Elapsed() as timer:
        url = f"http://127.0.0.1:{port}"
        ok, message = connect(monkeypatch, url).test_connection()
    assert (ok, message) == (
        False,
        f"Argo Server {url}: no answer within {BOUND:g}s (${CONNECT_TIMEOUT_ENV})",
    )
    assert BOUND <= timer.seconds < BOUND + MARGIN


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (
            {"conn_type": "argo", "password": TOKEN},
            "Argo connection 'argo_default' names no host (the Argo Server)",
        ),
        (None, "The conn_id `argo_default` isn't defined"),
    ],
)
def test_incomplete_or_missing_connection_is_a_message_not_a_raise(
    monkeypatch: pytest.MonkeyPatch, connection: dict[str, object] | None, expected: str
) -> None:
    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_ARGO_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", json.dumps(connection))
    ok, message = ArgoHook().test_connection()
    assert (ok, message) == (False, expected)
    assert TOKEN not in message


def test_connection_without_a_host_is_an_input_error() -> None:
    from airflow.sdk import Connection

    from retrain.errors import InputError
    from retrain_airflow.hooks.argo import server_url

    with pytest.raises(InputError, match=r"^Argo connection 'argo' names no host \(the Argo Server\)$"):
        server_url(Connection(conn_id="argo", conn_type="argo"))
