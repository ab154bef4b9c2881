"""A small client of the Argo Server REST API: submit, poll phase and progress, read failures, stop.

The bearer token is sent in a header and never appears in messages or ``repr``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Error"})


class ArgoError(Exception):
    """The Argo Server refused or failed a request; the message names the endpoint."""


class ArgoAuthError(ArgoError):
    pass


class ArgoNotFoundError(ArgoError):
    pass


@dataclass(frozen=True)
class WorkflowStatus:
    name: str
    phase: str  # "" until the controller picks the workflow up, then Pending, Running, Succeeded...
    progress: str  # "done/total" nodes, as Argo reports it
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_PHASES


class ArgoClient:
    """:param base_url: the Argo Server, e.g. ``https://argo.example.com:2746``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        namespace: str,
        verify: bool | str = True,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token.removeprefix('Bearer ')}"
        self._session.verify = verify
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def __repr__(self) -> str:
        return f"ArgoClient({self.base_url!r}, namespace={self.namespace!r})"

    def workflow_url(self, name: str) -> str:
        """The workflow's page in the Argo UI."""
        return f"{self.base_url}/workflows/{self.namespace}/{name}"

    def submit(self, workflow: dict[str, Any]) -> str:
        """Create the workflow; returns its generated name."""
        created = self._request("POST", f"/api/v1/workflows/{self.namespace}", json={"workflow": workflow})
        return str(created["metadata"]["name"])

    def status(self, name: str) -> WorkflowStatus:
        data = self._request(
            "GET",
            f"/api/v1/workflows/{self.namespace}/{name}",
            params={"fields": "metadata.name,status.phase,status.progress,status.message"},
        )
        status = data.get("status") or {}
        return WorkflowStatus(
            name, status.get("phase", ""), status.get("progress", ""), status.get("message", "")
        )

    def failed_nodes(self, name: str) -> dict[str, str]:
        """Display name -> message of the pod nodes that failed (read once, at the end)."""
        data = self._request(
            "GET", f"/api/v1/workflows/{self.namespace}/{name}", params={"fields": "status.nodes"}
        )
        nodes = (data.get("status") or {}).get("nodes") or {}
        return {
            str(node.get("displayName", node_id)): str(node.get("message", ""))
            for node_id, node in nodes.items()
            if node.get("type") == "Pod" and node.get("phase") in ("Failed", "Error")
        }

    def stop(self, name: str, message: str = "stopped by retrain") -> None:
        self._request("PUT", f"/api/v1/workflows/{self.namespace}/{name}/stop", json={"message": message})

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        for attempt in range(self.retries + 1):
            try:
                response = self._session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.ConnectionError as error:
                if attempt == self.retries:
                    raise ArgoError(f"cannot reach Argo Server at {self.base_url}: {error}") from None
            else:
                if response.status_code == 401:
                    raise ArgoAuthError(
                        f"Argo Server {self.base_url} rejected the token (401) for {method} {path}"
                    )
                if response.status_code == 403:
                    raise ArgoAuthError(f"Argo Server {self.base_url} denied {method} {path} (403)")
                if response.status_code == 404:
                    raise ArgoNotFoundError(f"Argo Server {self.base_url}: {method} {path} not found (404)")
                if response.status_code < 500:
                    if response.status_code >= 400:
                        raise ArgoError(
                            f"Argo Server {method} {path}: {response.status_code} {_reason(response)}"
                        )
                    return response.json()
                if attempt == self.retries:
                    raise ArgoError(
                        f"Argo Server {method} {path} failed with {response.status_code} after "
                        f"{self.retries + 1} attempts: {_reason(response)}"
                    )
            delay = self.backoff * 2**attempt
            log.warning(
                "Argo Server %s %s failed (attempt %d), retrying in %.1fs", method, path, attempt + 1, delay
            )
            time.sleep(delay)
        raise AssertionError("unreachable")


def _reason(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.text))[:300]
    except ValueError:
        return response.text[:300]
