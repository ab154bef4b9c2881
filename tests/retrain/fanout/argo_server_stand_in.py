"""A STAND-IN for the Argo Server REST API, for tests only: no cluster can run on these machines.

It speaks the documented shapes (``POST /api/v1/workflows/{ns}`` with ``{"workflow": ...}``,
``GET /api/v1/workflows/{ns}/{name}?fields=...``, ``PUT .../stop``), checks the bearer token,
moves each workflow one phase further per status read along a scripted path, and can answer
5xx a given number of times. It runs no pods.
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


@dataclass
class StandInState:
    token: str
    phases: list[str] = field(default_factory=lambda: ["Pending", "Running", "Succeeded"])
    failed_nodes: dict[str, str] = field(default_factory=dict)
    server_errors: int = 0  # answer this many requests with 503 first
    submitted: list[dict[str, Any]] = field(default_factory=list)
    reads: dict[str, int] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


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
            if parts[:3] != ["api", "v1", "workflows"] or len(parts) < 4:
                return self._reply(404, {"code": 5, "message": "not found"})
            names = [w["metadata"]["name"] for w in state.submitted]
            if method == "POST" and len(parts) == 4:
                length = int(self.headers.get("Content-Length", 0))
                workflow = json.loads(self.rfile.read(length))["workflow"]
                workflow["metadata"]["name"] = (
                    f"{workflow['metadata']['generateName']}{len(state.submitted):05d}"
                )
                state.submitted.append(workflow)
                return self._reply(200, workflow)
            if len(parts) < 5 or parts[4] not in names:
                return self._reply(
                    404, {"code": 5, "message": f'workflows.argoproj.io "{parts[-1]}" not found'}
                )
            name = parts[4]
            if method == "PUT" and parts[5:] == ["stop"]:
                state.stopped.append(name)
                return self._reply(200, {"metadata": {"name": name}, "status": {"phase": "Failed"}})
            fields = parse_qs(url.query).get("fields", [""])[0]
            if fields == "status.nodes":
                nodes = {
                    f"{name}-{i}": {
                        "displayName": display,
                        "type": "Pod",
                        "phase": "Failed",
                        "message": message,
                    }
                    for i, (display, message) in enumerate(state.failed_nodes.items())
                }
                return self._reply(200, {"status": {"nodes": nodes}})
            read = state.reads.get(name, 0)
            state.reads[name] = read + 1
            phase = "Failed" if name in state.stopped else state.phases[min(read, len(state.phases) - 1)]
            total = len(state.phases)
            return self._reply(
                200,
                {
                    "metadata": {"name": name},
                    "status": {"phase": phase, "progress": f"{min(read, total)}/{total}"},
                },
            )

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
