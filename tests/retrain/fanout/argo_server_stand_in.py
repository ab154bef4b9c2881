"""A STAND-IN for the Argo Server REST API, for tests only: no cluster can run on these machines.

It speaks the documented shapes (``POST /api/v1/workflows/{ns}`` with ``{"workflow": ...}``,
``GET /api/v1/workflows/{ns}/{name}?fields=...`` answering only the listed fields, ``PUT
.../stop``, ``GET /api/v1/workflow-templates/{ns}/{name}``), checks the bearer token, moves each
workflow one step further along a scripted path of phases (and node statuses) per poll, and can
answer 5xx a given number of times, or lose the answer to a create after creating the workflow
(a gateway's 504, or a dropped connection). A workflow keeps the name it was sent with (409 when
that name is taken, as Kubernetes answers), else gets ``generateName`` and a counter. It runs no pods.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Nodes = dict[str, dict[str, Any]]


@dataclass
class StandInState:
    token: str
    phases: list[str] = field(default_factory=lambda: ["Pending", "Running", "Succeeded"])
    failed_nodes: dict[str, str] = field(default_factory=dict)  # display name -> message, every read
    node_steps: list[Nodes] = field(default_factory=list)  # status.nodes as of each poll, like phases
    started_at: str | None = None  # status.startedAt
    server_errors: int = 0  # answer this many requests with 503 first
    lost_creates: int = 0  # create this many workflows, then lose the answer (see ``lose_answer_by``)
    lose_answer_by: str = "504"  # "504": a gateway timed out waiting; "drop": close with no answer
    templates: list[str] = field(default_factory=lambda: ["retrain-train-adapters"])  # in every namespace
    submitted: list[dict[str, Any]] = field(default_factory=list)
    reads: dict[str, int] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def shard_pod_node(
    workflow: str,
    shard: int,
    phase: str,
    *,
    message: str = "",
    progress: str | None = None,
    node_type: str = "Pod",
    attempt: int | None = None,
) -> Nodes:
    """One training pod's node as Argo records it for ``withParam`` item ``shard`` of task ``train``."""
    display = f"train({shard}:{shard})" + (f"({attempt})" if attempt is not None else "")
    node_id = f"{workflow}-{shard}-{node_type.lower()}-{attempt or 0}"
    node: dict[str, Any] = {
        "id": node_id,
        "name": f"{workflow}.{display}",
        "displayName": display,
        "type": node_type,
        "templateName": "train-shard",
        "phase": phase,
        "progress": progress or ("1/1" if phase in ("Succeeded", "Failed", "Error") else "0/1"),
        "inputs": {"parameters": [{"name": "shard", "value": str(shard)}]},
        "startedAt": f"2026-01-01T00:{(attempt or 0):02d}:00Z",
    }
    if message:
        node["message"] = message
    return {node_id: node}


def _matches(labels: dict[str, str], clause: str) -> bool:
    """One Kubernetes label selector clause: ``key=value`` or ``key!=value``."""
    if "!=" in clause:
        key, value = clause.split("!=", 1)
        return labels.get(key) != value
    key, value = clause.split("=", 1)
    return labels.get(key) == value


def _select(document: dict[str, Any], fields: str) -> dict[str, Any]:
    """Only the dotted paths listed in ``fields``, as the Argo Server's ``fields`` parameter does."""
    if not fields:
        return document
    selected: dict[str, Any] = {}
    for path in fields.split(","):
        source, target = document, selected
        *parents, leaf = path.split(".")
        for key in parents:
            source = source.get(key) or {}
            target = target.setdefault(key, {})
        if leaf in source:
            target[leaf] = source[leaf]
    return selected


def _handler(state: StandInState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _route(self, method: str) -> None:
            state.requests.append(f"{method} {self.path}")
            if state.server_errors > 0:
                state.server_errors -= 1
                return self._reply(503, {"code": 14, "message": "the server is currently unavailable"})
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._reply(401, {"code": 16, "message": "token not valid"})
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")  # api v1 workflows ns [name [stop]]
            if method == "GET" and parts[:3] == ["api", "v1", "workflow-templates"] and len(parts) == 5:
                if parts[4] not in state.templates:
                    message = f'workflowtemplates.argoproj.io "{parts[4]}" not found'
                    return self._reply(404, {"code": 5, "message": message})
                return self._reply(200, {"metadata": {"name": parts[4], "namespace": parts[3]}})
            if method == "GET" and parts[:3] == ["api", "v1", "workflows"] and len(parts) == 4:
                return self._reply(200, self._list(parts[3], parse_qs(url.query)))
            if parts[:3] != ["api", "v1", "workflows"] or len(parts) < 4:
                return self._reply(404, {"code": 5, "message": "not found"})
            by_name = {w["metadata"]["name"]: w for w in state.submitted}
            if method == "POST" and len(parts) == 4:
                length = int(self.headers.get("Content-Length", 0))
                workflow = json.loads(self.rfile.read(length))["workflow"]
                metadata = workflow["metadata"]
                if metadata.get("name") in by_name:
                    message = f'workflows.argoproj.io "{metadata["name"]}" already exists'
                    return self._reply(409, {"code": 6, "message": message})
                metadata.setdefault("name", f"{metadata.get('generateName')}{len(state.submitted):05d}")
                state.submitted.append(workflow)
                if state.lost_creates > 0:
                    state.lost_creates -= 1
                    if state.lose_answer_by == "drop":
                        self.close_connection = True
                        return None
                    return self._reply(504, {"message": "upstream request timeout"})
                return self._reply(200, workflow)
            if len(parts) < 5 or parts[4] not in by_name:
                return self._reply(
                    404, {"code": 5, "message": f'workflows.argoproj.io "{parts[-1]}" not found'}
                )
            name = parts[4]
            if method == "PUT" and parts[5:] == ["stop"]:
                state.stopped.append(name)
                return self._reply(200, {**by_name[name], "status": {"phase": "Failed"}})  # whole, as Argo
            fields = parse_qs(url.query).get("fields", [""])[0]
            read = state.reads.get(name, 0)
            if "metadata.name" in fields.split(","):  # a poll moves the workflow one step on
                state.reads[name] = read + 1
            else:
                read = max(read - 1, 0)  # other reads see the state the last poll saw
            return self._reply(200, _select(self._workflow(by_name[name], read), fields))

        def _list(self, namespace: str, query: dict[str, list[str]]) -> dict[str, Any]:
            """ListWorkflows: ``listOptions.labelSelector`` (``k=v``, ``k!=v``) and ``fields`` on items."""
            clauses = [c for c in query.get("listOptions.labelSelector", [""])[0].split(",") if c]
            fields = query.get("fields", [""])[0]
            items = []
            for submitted in state.submitted:
                if submitted["metadata"].get("namespace", namespace) != namespace:
                    continue
                name = submitted["metadata"]["name"]
                document = self._workflow(submitted, max(state.reads.get(name, 0) - 1, 0))
                labels = dict(document["metadata"].get("labels") or {})
                if document["status"]["phase"] in ("Succeeded", "Failed", "Error"):
                    labels["workflows.argoproj.io/completed"] = "true"
                if all(_matches(labels, clause) for clause in clauses):
                    items.append(document)
            item_fields = ",".join(f.removeprefix("items.") for f in fields.split(",") if f)
            # The Argo Server (Go) sends null, not [], when nothing matches.
            return {"metadata": {}, "items": [_select(i, item_fields) for i in items] or None}

        def _workflow(self, submitted: dict[str, Any], read: int) -> dict[str, Any]:
            name = submitted["metadata"]["name"]
            total = len(state.phases)
            phase = "Failed" if name in state.stopped else state.phases[min(read, total - 1)]
            nodes = dict(state.node_steps[min(read, len(state.node_steps) - 1)]) if state.node_steps else {}
            for i, (display, message) in enumerate(state.failed_nodes.items()):
                nodes[f"{name}-{i}"] = {
                    "displayName": display,
                    "type": "Pod",
                    "phase": "Failed",
                    "message": message,
                }
            status: dict[str, Any] = {
                "phase": phase,
                "progress": f"{min(read, total)}/{total}",
                "nodes": nodes,
            }
            if state.started_at:
                status["startedAt"] = state.started_at
            return {**submitted, "status": status}

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


@contextmanager
def argo_server_stand_in(state: StandInState) -> Iterator[str]:
    """Serve the stand-in on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def airflow_connection(url: str, token: str, namespace: str | None = "ml-training") -> str:
    """``AIRFLOW_CONN_ARGO_DEFAULT``'s JSON for the stand-in at ``url`` (the Argo hook's connection)."""
    host, port = url.removeprefix("http://").split(":")
    connection: dict[str, object] = {
        "conn_type": "argo",
        "host": host,
        "port": int(port),
        "schema": "http",
        "password": token,
    }
    if namespace is not None:
        connection["extra"] = {"namespace": namespace}
    return json.dumps(connection)
