"""ArgoClient against the local Argo Server stand-in (no cluster can run here)."""

from __future__ import annotations

import re

import pytest
from hera.workflows import Parameter, Workflow
from hera.workflows import models as m

from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.fanout.argo_client import (
    ArgoAuthError,
    ArgoClient,
    ArgoConflictError,
    ArgoError,
    ArgoNotFoundError,
    ArgoUnreachableError,
)

from ..sockets import BOUND, MARGIN, Elapsed, closed_port, silent_port
from .argo_server_stand_in import StandInState, argo_server_stand_in, shard_pod_node

WORKFLOW = Workflow(generate_name="retrain-train-", workflow_template_ref=m.WorkflowTemplateRef(name="t"))


def client(url: str, token: str = "good-token") -> ArgoClient:
    return ArgoClient(url, token=token, namespace="ml-training", retries=2, backoff=0.01)


def test_submit_and_poll_to_success() -> None:
    state = StandInState(token="good-token")
    with argo_server_stand_in(state) as url:
        argo = client(url)
        name = argo.submit(WORKFLOW)
        phases = [argo.status(name) for _ in range(4)]
    assert re.fullmatch(r"retrain-train-[0-9a-f]{10}", name)
    assert state.submitted[0]["metadata"]["name"] == name  # named by the client, not the server
    assert [s.phase for s in phases] == ["Pending", "Running", "Succeeded", "Succeeded"]
    assert [s.finished for s in phases] == [False, False, True, True]
    assert phases[-1].progress == "3/3"
    assert state.submitted[0]["spec"] == WORKFLOW.to_dict()["spec"]
    assert "fields=metadata.name" in state.requests[1]  # polls ask only for phase and progress
    assert argo.workflow_url(name) == f"{url}/workflows/ml-training/{name}"


def test_failed_workflow_names_its_failed_nodes() -> None:
    state = StandInState(
        token="good-token", phases=["Running", "Failed"], failed_nodes={"train(3:3)": "Error (exit code 1)"}
    )
    with argo_server_stand_in(state) as url:
        argo = client(url)
        name = argo.submit(WORKFLOW)
        argo.status(name)
        status = argo.status(name)
        assert status.phase == "Failed"
        assert [(n.display_name, n.message) for n in status.nodes.values()] == [
            ("train(3:3)", "Error (exit code 1)")
        ]


def test_failures_are_explained_by_the_shard_each_customer_was_trained_in() -> None:
    state = StandInState(token="good-token", phases=["Failed"])
    customers = ["acme_air", "globex_bank", "initech_saas", "umbrella"]  # shard 0: acme_air, umbrella
    with argo_server_stand_in(state) as url:
        argo = client(url)
        name = argo.submit(
            Workflow(generate_name="retrain-train-", arguments=[Parameter(name="shards", value="3")])
        )
        state.node_steps = [shard_pod_node(name, 0, "Failed", message="failed customers: umbrella: no rows")]
        assert argo.status(name).nodes[0].failed
        reasons = argo.failed_customers(name, customers, ["umbrella", "globex_bank"])
    assert reasons == {
        "umbrella": f"workflow {name} pod train(0:0) Failed: failed customers: umbrella: no rows",
        "globex_bank": f"workflow {name} never ran shard 1 (Failed)",
    }


def test_stop() -> None:
    state = StandInState(token="good-token", phases=["Running"])
    with argo_server_stand_in(state) as url:
        argo = client(url)
        name = argo.submit(WORKFLOW)
        argo.stop(name)
        assert argo.status(name).phase == "Failed"
    assert state.stopped == [name]


def test_401_names_the_endpoint_and_hides_the_token() -> None:
    with (
        argo_server_stand_in(StandInState(token="good-token")) as url,
        pytest.raises(ArgoAuthError, match=r"rejected the token \(401\)") as raised,
    ):
        client(url, token="wrong-secret-token").submit(WORKFLOW)
    assert url in str(raised.value)
    assert "wrong-secret-token" not in str(raised.value)
    assert "wrong-secret-token" not in repr(client(url, token="wrong-secret-token"))


def test_404_for_an_unknown_workflow() -> None:
    with (
        argo_server_stand_in(StandInState(token="good-token")) as url,
        pytest.raises(ArgoNotFoundError, match="/api/v1/workflows/ml-training/nope not found"),
    ):
        client(url).status("nope")


def test_5xx_is_retried_then_reported() -> None:
    state = StandInState(token="good-token", server_errors=2)
    with argo_server_stand_in(state) as url:
        assert client(url).submit(WORKFLOW).startswith("retrain-train-")
        state.server_errors = 10
        with pytest.raises(
            ArgoUnreachableError, match=r"\(POST /api/v1/workflows/ml-training, 3 attempts in .*\): HTTP 503"
        ):
            client(url).submit(WORKFLOW)


@pytest.mark.parametrize("lost_by", ["504", "drop"])
def test_a_create_whose_answer_is_lost_is_not_created_twice(lost_by: str) -> None:
    """The server creates the workflow, then a gateway times out (504) or the connection drops: the
    retried POST carries the same name, gets 409, and is read as the workflow it created."""
    state = StandInState(token="good-token", lost_creates=1, lose_answer_by=lost_by)
    with argo_server_stand_in(state) as url:
        name = client(url).submit(WORKFLOW)
        assert [w["metadata"]["name"] for w in state.submitted] == [name]
        assert [r.split("?")[0] for r in state.requests] == [
            "POST /api/v1/workflows/ml-training",
            "POST /api/v1/workflows/ml-training",
            f"GET /api/v1/workflows/ml-training/{name}",
        ]
        assert client(url).submit(WORKFLOW) != name  # a new submission is a new workflow


def test_a_name_taken_by_another_workflow_is_a_conflict() -> None:
    named = Workflow(name="nightly", workflow_template_ref=m.WorkflowTemplateRef(name="t"))
    state = StandInState(token="good-token")
    with argo_server_stand_in(state) as url:
        assert client(url).submit(named) == "nightly"
        with pytest.raises(
            ArgoConflictError, match=r'409 workflows\.argoproj\.io "nightly" already exists'
        ) as raised:
            client(url).submit(named)
    assert len(state.submitted) == 1
    assert raised.value.http_status == 409


def test_unreachable_server() -> None:
    with argo_server_stand_in(StandInState(token="t")) as url:
        pass  # the server is shut down again
    with pytest.raises(ArgoError, match=f"cannot reach Argo Server at {url} .*: Connection refused"):
        client(url).status("x")


def test_closed_port_fails_within_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries and their backoff stop at the bound, where 3 retries alone would sleep 1 + 2 + 4 s."""
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    url = f"http://127.0.0.1:{closed_port()}"
    with Elapsed() as timer, pytest.raises(ArgoUnreachableError) as raised:
        ArgoClient(url, token="t", namespace="ml-training").status("x")
    assert timer.seconds < BOUND + MARGIN
    assert str(raised.value).startswith(
        f"cannot reach Argo Server at {url} (GET /api/v1/workflows/ml-training/x,"
    )
    assert str(raised.value).endswith("Connection refused")
    assert raised.value.retryable


def test_silent_server_fails_within_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    with silent_port() as port, Elapsed() as timer, pytest.raises(ArgoUnreachableError) as raised:
        ArgoClient(f"http://127.0.0.1:{port}", token="t", namespace="ml-training").submit(WORKFLOW)
    assert BOUND * 0.9 < timer.seconds < BOUND + MARGIN
    assert (
        f"cannot reach Argo Server at http://127.0.0.1:{port} (POST /api/v1/workflows/ml-training, 1 attempt"
        in str(raised.value)
    )
    assert str(raised.value).endswith(f"no answer within {BOUND:g}s ($RETRAIN_CONNECT_TIMEOUT)")
