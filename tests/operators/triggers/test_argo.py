"""ArgoWorkflowTrigger and the collected result at 1,000 and 10,000 customers.

The Argo Server is the only thing stood in (no cluster can run here): it reports the training
pods' node statuses step by step, three customers failing. MLflow is real (SQLite in tmp_path);
the test registers the others' versions with the tags a pod sets, as the pods would have.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from sqlalchemy.engine import Engine

from retrain.adapters.registry import (
    EXPERIMENT,
    METRIC_TAG_PREFIX,
    SEARCH_PAGE_SIZE,
    TAG_PREFIX,
    model_name,
)
from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.fanout.argo import ArgoTrainingSpec, build_submission, collect_results, resolve_selection
from retrain.fanout.shards import shard_size
from retrain.tracking import ensure_experiment
from retrain_airflow.hooks.argo import ArgoHook
from retrain_airflow.triggers.argo import ArgoWorkflowTrigger

from ...retrain.fanout.argo_server_stand_in import (
    Nodes,
    StandInState,
    airflow_connection,
    argo_server_stand_in,
    shard_pod_node,
)
from ...retrain.sockets import BOUND, MARGIN, Elapsed, silent_port

TOKEN = "argo-token-123"
COMMIT = "c0ffee" * 6 + "beef"


class CountingMlflowClient:
    """The real MlflowClient, counting each call: every one is a round trip to a tracking server."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def mlflow_client(tmp_path: Path) -> Iterator[MlflowClient]:
    """A real SQLite store; commits skip fsync so that registering 10,000 versions takes a minute."""

    def no_fsync(connection: Any, _: Any) -> None:
        connection.execute("PRAGMA synchronous=OFF")

    sqlalchemy.event.listen(Engine, "connect", no_fsync)
    try:
        yield MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    finally:
        sqlalchemy.event.remove(Engine, "connect", no_fsync)


def register_like_a_pod(client: MlflowClient, experiment: str, parent: str, customer: str) -> str:
    """What ``train_and_register`` leaves in MLflow for one customer: a child run and a tagged version."""
    tags = {
        f"{TAG_PREFIX}dolt_repo": "mysql://retrain@dolt/training",
        f"{TAG_PREFIX}table": "examples",
        f"{TAG_PREFIX}commit": COMMIT,
        f"{TAG_PREFIX}customer": customer,
        f"{TAG_PREFIX}row_count": "40",
        f"{TAG_PREFIX}rows_fingerprint": "f" * 64,
        f"{TAG_PREFIX}code_version": "1.4.0",
        f"{TAG_PREFIX}base_model": "all-MiniLM-L6-v2",
        f"{TAG_PREFIX}training_key": customer[-12:].zfill(24),
    }
    run = client.create_run(
        experiment, run_name=model_name(customer), tags={**tags, "mlflow.parentRunId": parent}
    )
    client.create_registered_model(model_name(customer), tags={f"{TAG_PREFIX}kind": "customer-adapter"})
    client.create_model_version(
        model_name(customer),
        f"runs:/{run.info.run_id}/adapter",
        run_id=run.info.run_id,
        tags={**tags, f"{METRIC_TAG_PREFIX}accuracy": "0.900000", f"{METRIC_TAG_PREFIX}f1": "0.880000"},
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def node_steps(workflow: str, count: int, shards: int, failing: dict[int, str]) -> list[Nodes]:
    """Node statuses poll by poll: none yet; 40% done and 10% half-way; 80%; all (one shard retried)."""

    def pods(finished: int, running: int, half_way: bool) -> Nodes:
        nodes: Nodes = {}
        for shard in range(finished):
            if shard in failing:
                nodes |= shard_pod_node(workflow, shard, "Failed", message=failing[shard])
            else:
                nodes |= shard_pod_node(workflow, shard, "Succeeded")
        size = shard_size(count, finished, shards)
        for shard in range(finished, finished + running):
            nodes |= shard_pod_node(
                workflow, shard, "Running", progress=f"{size // 2 if half_way else 0}/{size}"
            )
        return nodes

    last = pods(shards, 0, False)
    retried = 3  # an evicted pod, retried: its shard's outcome is the Retry node's
    for key in [k for k, node in last.items() if node["displayName"] == f"train({retried}:{retried})"]:
        del last[key]
    last |= shard_pod_node(workflow, retried, "Succeeded", node_type="Retry")
    last |= shard_pod_node(workflow, retried, "Error", message="pod deleted", attempt=0)
    last |= shard_pod_node(workflow, retried, "Succeeded", attempt=1)
    return [{}, pods(shards * 2 // 5, shards // 10, True), pods(shards * 4 // 5, 0, False), last]


def test_fan_out_reports_progress_in_customers_and_names_exactly_the_failed_ones(
    mlflow_client: MlflowClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    count = 1000  # paging past one search page: tests/retrain/adapters/test_registry.py
    customers = [f"customer_{i:05d}" for i in range(count)]
    experiment = ensure_experiment(EXPERIMENT, mlflow_client.tracking_uri)
    parent = mlflow_client.create_run(experiment, tags={"retrain.commit": COMMIT}).info.run_id
    spec = ArgoTrainingSpec(pack_size=2)  # packs of 2: the 500-pod cap, two customers a pod
    workflow = build_submission(
        spec,
        table="examples",
        commit=COMMIT,
        customers=customers,
        parent_run_id=parent,
        store_artifact=lambda name, text: mlflow_client.log_text(parent, text, name),
    )
    parameters = {p["name"]: p["value"] for p in workflow.to_dict()["spec"]["arguments"]["parameters"]}
    shards = int(parameters["shards"])
    assert shards == spec.max_pods  # several customers per pod: a failed pod is not a failed customer
    # Three customers fail; customer_00500 shares shard 0 with customer_00000, which succeeds.
    failing = {7: customers[7], 0: customers[500], shards - 1: customers[-1]}
    messages = {
        s: f"Error (exit code 1): failed customers: {c}: TrainingDataError: single class"
        for s, c in failing.items()
    }
    # What the pods would have registered (their selection read back as a pod reads it).
    pod_customers = resolve_selection(parameters["selection"], parent, mlflow_client.tracking_uri)
    assert pod_customers == customers
    runs = {
        c: register_like_a_pod(mlflow_client, experiment, parent, c)
        for c in pod_customers
        if c not in failing.values()
    }

    started = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = StandInState(token=TOKEN, phases=["Pending", "Running", "Running", "Failed"], started_at=started)
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        argo = ArgoHook().get_client()
        name = argo.submit(workflow)
        state.node_steps = node_steps(name, count, shards, messages)
        trigger = ArgoWorkflowTrigger(argo_conn_id="argo_default", workflow=name, poll_interval=0.01)
        classpath, kwargs = trigger.serialize()
        rebuilt = getattr(importlib.import_module(classpath.rsplit(".", 1)[0]), classpath.rsplit(".", 1)[1])
        assert rebuilt(**kwargs).serialize() == (classpath, kwargs)

        event = first_event(trigger, timeout=30)
        counting = CountingMlflowClient(mlflow_client)
        registered, failed = collect_results(
            argo, counting, workflow=name, commit=COMMIT, customers=customers
        )

    size = count // shards
    progress = re.compile(
        rf"workflow {name}: (\d+/\d+ customers done, \d+ failed), "
        r"([\d.]+) adapters/min \((\w+), (\d+/\d+) pods finished\)"
    )
    lines = progress.findall(capsys.readouterr().out)  # the triggerer's log (Airflow logs to stdout)
    assert [(counts, phase, pods) for counts, _, phase, pods in lines] == [
        (f"0/{count} customers done, 0 failed", "Pending", f"0/{shards}"),
        (f"{225 * size}/{count} customers done, 2 failed", "Running", f"200/{shards}"),  # 50 pods half-way
        (f"{400 * size}/{count} customers done, 2 failed", "Running", f"400/{shards}"),
        (f"{count}/{count} customers done, 3 failed", "Failed", f"{shards}/{shards}"),
    ]
    assert float(lines[1][1]) == pytest.approx((225 * size - 2) / 10, rel=0.05)  # started ten minutes ago
    assert event == {
        "status": "finished",
        "workflow": name,
        "phase": "Failed",
        "progress": "3/4",
        "message": "",
        "customers": count,
        "customers_done": count,
        "customers_failed": 3,
    }

    assert sorted(failed) == sorted(failing.values())
    for shard, customer in failing.items():
        assert failed[customer] == f"workflow {name} pod train({shard}:{shard}) Failed: {messages[shard]}"
    assert len(registered) == count - 3
    assert customers[0] in registered  # the other customer of shard 0
    assert all(registered[c].run_id == run for c, run in runs.items())
    assert registered[customers[1]].metrics == {"accuracy": 0.9, "f1": 0.88}
    # Bounded MLflow round trips: pages of versions, never one call per customer.
    assert counting.calls == ["search_model_versions"] * math.ceil((count - 3) / SEARCH_PAGE_SIZE)


def first_event(trigger: ArgoWorkflowTrigger, timeout: float = 60) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        events = trigger.run()
        event = await asyncio.wait_for(events.__anext__(), timeout)
        await events.aclose()
        return dict(event.payload)

    return asyncio.run(run())


def test_a_silent_argo_server_past_the_grace_ends_the_trigger_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no grace left, one error event, and Airflow's task retries take over."""
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    with silent_port() as port:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(f"http://127.0.0.1:{port}", TOKEN))
        trigger = ArgoWorkflowTrigger(
            argo_conn_id="argo_default", workflow="retrain-train-x", poll_interval=0.01, unreachable_timeout=0
        )
        with Elapsed() as timer:
            event = first_event(trigger, timeout=30)
    assert timer.seconds < BOUND + MARGIN
    assert event["status"] == "error"
    assert event["message"].startswith(f"cannot reach Argo Server at http://127.0.0.1:{port} (GET ")
    assert event["message"].endswith(f"no answer within {BOUND:g}s ($RETRAIN_CONNECT_TIMEOUT)")
    assert TOKEN not in event["message"]


def small_workflow() -> Any:
    return build_submission(
        ArgoTrainingSpec(),
        table="examples",
        commit=COMMIT,
        customers=["acme_air", "globex_bank"],
        parent_run_id="0" * 32,
        store_artifact=lambda name, text: pytest.fail("two customers travel inline"),
    )


def test_an_argo_server_outage_within_the_grace_only_delays_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An Argo Server restart does not cost the task a try: the workflow runs on meanwhile."""
    state = StandInState(token=TOKEN)
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        name = ArgoHook().get_client().submit(small_workflow())
        polls_before = len(state.requests)
        state.server_errors = 10  # more than one poll's retries: at least two polls come back unanswered
        trigger = ArgoWorkflowTrigger(
            argo_conn_id="argo_default", workflow=name, poll_interval=0.01, unreachable_timeout=120
        )
        event = first_event(trigger)
    assert (event["status"], event["phase"]) == ("finished", "Succeeded")
    assert state.server_errors == 0
    assert len(state.requests) - polls_before >= 10 + len(state.phases)
    assert state.submitted == [state.submitted[0]]  # nothing resubmitted


def test_a_refused_poll_ends_the_trigger_at_once_whatever_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    state = StandInState(token=TOKEN)
    with argo_server_stand_in(state) as url:
        monkeypatch.setenv("AIRFLOW_CONN_ARGO_DEFAULT", airflow_connection(url, TOKEN))
        trigger = ArgoWorkflowTrigger(
            argo_conn_id="argo_default",
            workflow="retrain-train-gone",
            poll_interval=0.01,
            unreachable_timeout=600,
        )
        with Elapsed() as timer:
            event = first_event(trigger)
    assert timer.seconds < MARGIN
    assert event["status"] == "error"
    assert "retrain-train-gone" in event["message"]
    assert "not found" in event["message"]
