"""A client of the Argo Server: Hera's ``WorkflowsService`` through a bounded, retrying session.

Submitting and stopping are Hera's ``create_workflow`` and ``stop_workflow``. Every request, Hera's
and the poll's, goes through :class:`ArgoSession`: urllib3's retries of connection errors and 5xx,
all attempts within one ``$RETRAIN_CONNECT_TIMEOUT`` deadline, and the suite's errors for what the
server answered. A submission names its workflow before the first attempt, so a POST retried after
the server created the workflow but the answer was lost gets a 409 and is read as "already
created", never a second workflow training the same customers on more GPU pods.

Progress and failures are counted in customers, not pods: each training pod's node carries its
shard number, and :mod:`retrain.fanout.shards` says which customers a shard trains. The bearer
token is sent in a header and never appears in messages or ``repr``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self, cast
from urllib.parse import urlsplit

import requests
import urllib3
from hera.workflows import Workflow, WorkflowsService
from hera.workflows.models import Workflow as WorkflowModel
from hera.workflows.models import WorkflowCreateRequest, WorkflowStopRequest
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout, root_cause
from retrain.errors import ConflictError, NotFoundError, RetrainError, ServiceUnreachableError
from retrain.fanout.shards import shard_size

log = logging.getLogger(__name__)

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Error"})
FAILED_PHASES = frozenset({"Failed", "Error"})
NODE_DONE_PHASES = TERMINAL_PHASES | {"Skipped", "Omitted"}
CUSTOMERS_LABEL = "retrain/customers"  # on submissions: how many customers progress counts
SUBMISSION_LABEL = "retrain/submission"  # on submissions: which submit() created it (its retries too)
COMPLETED_LABEL = "workflows.argoproj.io/completed"  # set to "true" by Argo once a workflow is over
FAILED_CUSTOMERS_MARK = "failed customers: "  # how ``retrain train-shard`` names its failures
_SHARD_TASK = re.compile(r"^train\((\d+):(\d+)\)")  # withParam display name: task(index:item)


class ArgoError(RetrainError):
    """The Argo Server refused or failed a request; the message names the endpoint."""

    http_status = 502


class ArgoAuthError(ArgoError):
    """The server refused the token (401/403): retrying with the same token cannot help."""

    http_status = 401


class ArgoNotFoundError(ArgoError, NotFoundError):
    """No such workflow or template in the namespace."""

    http_status = 404


class ArgoConflictError(ArgoError, ConflictError):
    """The server already holds a workflow of that name (409) that this submission did not create."""

    http_status = 409


class ArgoUnreachableError(ArgoError, ServiceUnreachableError):
    """The Argo Server did not answer, or answered with a server error, within the retry budget."""

    http_status = 503


@dataclass(frozen=True)
class ShardNode:
    """Where one training pod stands: its retry node's phase when it has one, its latest pod's message."""

    shard: int
    display_name: str
    phase: str
    message: str = ""
    progress: str = ""  # "done/total" as the pod reports it; Argo's default is 0/1, then 1/1

    @property
    def failed(self) -> bool:
        return self.phase in FAILED_PHASES

    def customers_done(self, size: int) -> int:
        """Customers of this shard already trained (or given up on)."""
        if self.phase in NODE_DONE_PHASES:
            return size
        done, _, total = self.progress.partition("/")
        return int(done) if total == str(size) and done.isdigit() else 0

    def customers_failed(self, size: int) -> int:
        """How many of this shard's customers failed: those its message names, else all of them."""
        if not self.failed:
            return 0
        named = _named_failures(self.message)
        return min(len(named), size) if named else size


@dataclass(frozen=True)
class WorkflowStatus:
    name: str
    phase: str  # "" until the controller picks the workflow up, then Pending, Running, Succeeded...
    progress: str  # "done/total" nodes, as Argo reports it
    message: str = ""
    customers: int | None = None  # from the submission's label; None for other workflows
    shards: int = 1
    started_at: datetime | None = None
    nodes: dict[int, ShardNode] = field(default_factory=dict)  # by shard number

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def customer_counts(self) -> tuple[int, int] | None:
        """(done, failed) customers from the pods' node statuses, when the workflow says how many."""
        if self.customers is None:
            return None
        sizes = {s: shard_size(self.customers, s, self.shards) for s in self.nodes}
        done = sum(node.customers_done(sizes[s]) for s, node in self.nodes.items())
        failed = sum(node.customers_failed(sizes[s]) for s, node in self.nodes.items())
        return done, failed

    def progress_line(self, now: datetime) -> str:
        """E.g. ``412/1000 customers done, 2 failed, 35.0 adapters/min (Running, 206/500 pods)``."""
        counts = self.customer_counts()
        phase = self.phase or "New"
        if counts is None:
            return f"{phase}, progress {self.progress}"
        done, failed = counts
        minutes = (now - self.started_at).total_seconds() / 60 if self.started_at else 0.0
        rate = (done - failed) / minutes if minutes > 0 else 0.0
        pods = sum(node.phase in NODE_DONE_PHASES for node in self.nodes.values())
        return (
            f"{done}/{self.customers} customers done, {failed} failed, {rate:.1f} adapters/min "
            f"({phase}, {pods}/{self.shards} pods finished)"
        )


class ArgoClient:
    """A session with one Argo Server, in one namespace.

    :param base_url: the Argo Server, e.g. ``https://argo.example.com:2746``.
    :param timeout: seconds one call may take, retries of connection errors and 5xx included
        (default ``$RETRAIN_CONNECT_TIMEOUT``): an absent server fails in bounded time, and
        Airflow's task retries, not a hidden loop, decide what happens next.
    :param retries: retries within that time, as urllib3 spaces them: the first at once, then
        ``backoff`` times 2, 4, ... seconds.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        namespace: str,
        verify: bool | str = True,
        timeout: float | None = None,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        session = ArgoSession(
            self.base_url, connect_timeout() if timeout is None else timeout, retries, backoff, verify
        )
        # Hera joins its paths onto ``host``: the slash keeps a path prefix such as ``/argo``.
        self._service = WorkflowsService(
            host=f"{self.base_url}/", token=token, namespace=namespace, session=session
        )
        if self._service.token:  # Hera's "Bearer ..." form, for the poll too
            session.headers["Authorization"] = self._service.token

    def __repr__(self) -> str:
        return f"ArgoClient({self.base_url!r}, namespace={self.namespace!r})"

    def workflow_url(self, name: str) -> str:
        """The workflow's page in the Argo UI."""
        return f"{self.base_url}/workflows/{self.namespace}/{name}"

    def submit(self, workflow: Workflow) -> str:
        """Create the workflow once; returns its name.

        The name is chosen here (``generate_name`` and a random suffix, as the server would) and
        the workflow labelled with this submission, so every attempt of the POST creates the same
        workflow: a retry after the server created it answers 409, and the label tells it from
        someone else's workflow of that name.
        """
        built = cast(WorkflowModel, workflow.build())  # Hera types it as any of its workflow kinds
        submission = secrets.token_hex(8)
        metadata = built.metadata
        if not metadata.name:
            metadata.name = f"{metadata.generate_name or 'workflow-'}{submission[:10]}"
            metadata.generate_name = None
        metadata.labels = {**(metadata.labels or {}), SUBMISSION_LABEL: submission}
        name = str(metadata.name)
        try:
            created = self._service.create_workflow(
                WorkflowCreateRequest(workflow=built), namespace=self.namespace
            )
        except ArgoConflictError:
            labels = (self._fields(name, "metadata.labels").get("metadata") or {}).get("labels") or {}
            if labels.get(SUBMISSION_LABEL) != submission:
                raise
            log.warning(
                "Argo Server created workflow %s before its answer was lost; not creating it again", name
            )
            return name
        return str(created.metadata.name)

    def status(self, name: str) -> WorkflowStatus:
        """Phase, progress and each training pod's node: one GET of the fields that say it."""
        data = self._fields(
            name,
            "metadata.name,metadata.labels,spec.arguments.parameters,status.phase,"
            "status.progress,status.message,status.startedAt,status.nodes",
        )
        status = data.get("status") or {}
        customers = ((data.get("metadata") or {}).get("labels") or {}).get(CUSTOMERS_LABEL)
        started = status.get("startedAt")
        return WorkflowStatus(
            name,
            status.get("phase", ""),
            status.get("progress", ""),
            status.get("message", ""),
            customers=int(customers) if customers is not None else None,
            shards=_shards(data),
            started_at=datetime.fromisoformat(started) if started else None,
            nodes=_shard_nodes(status.get("nodes") or {}),
        )

    def failed_customers(
        self, name: str, customers: Sequence[str], unregistered: Iterable[str]
    ) -> dict[str, str]:
        """Why each of ``unregistered`` has no version: the node of the pod that trained its shard.

        MLflow says which customers failed; this only explains them, so a pod training several
        customers where one failed names that one alone.
        """
        data = self._fields(name, "spec.arguments.parameters,status.phase,status.message,status.nodes")
        status = data.get("status") or {}
        shards, nodes = _shards(data), _shard_nodes(status.get("nodes") or {})
        shard_by_customer = {c: i % shards for i, c in enumerate(sorted(customers))}
        reasons: dict[str, str] = {}
        for customer in unregistered:
            shard = shard_by_customer[customer]
            node = nodes.get(shard)
            if node is None:
                workflow = f"{status.get('phase', '')}: {status.get('message', '')}".rstrip(": ")
                reasons[customer] = f"workflow {name} never ran shard {shard} ({workflow})"
            else:
                detail = f": {node.message}" if node.message else ""
                reasons[customer] = f"workflow {name} pod {node.display_name} {node.phase}{detail}"
        return reasons

    def unfinished(self, label: str, value: str) -> dict[str, dict[str, str]]:
        """Each workflow labelled ``label=value`` that has not completed: name -> its parameters.

        One list call, label-selected and ``fields``-filtered on the server, like the poll.
        """
        url = f"{self.base_url}/api/v1/workflows/{self.namespace}"
        params = {
            "listOptions.labelSelector": f"{label}={value},{COMPLETED_LABEL}!=true",
            "fields": "items.metadata.name,items.spec.arguments.parameters",
        }
        answer = self._service.session.get(url, params=params).json()
        found: dict[str, dict[str, str]] = {}
        for item in answer.get("items") or []:  # the Argo Server sends null for none
            listed = ((item.get("spec") or {}).get("arguments") or {}).get("parameters") or []
            found[item["metadata"]["name"]] = {p["name"]: p.get("value", "") for p in listed}
        return found

    def stop(self, name: str, message: str = "stopped by retrain") -> None:
        self._service.stop_workflow(name, WorkflowStopRequest(message=message), namespace=self.namespace)

    def _fields(self, name: str, fields: str) -> dict[str, Any]:
        """The workflow's JSON, only ``fields`` of it (a poll of a 500-pod workflow stays small).

        Hera's ``get_workflow`` cannot serve this: it parses the reply into its typed ``Workflow``,
        which requires ``metadata`` and each node's ``id`` and ``name``, so a ``fields=``-filtered
        reply fails validation. The GET goes through the same session, retries and errors.
        """
        url = f"{self.base_url}/api/v1/workflows/{self.namespace}/{name}"
        answer: dict[str, Any] = self._service.session.get(url, params={"fields": fields}).json()
        return answer


@dataclass
class _Call:
    """One request's budget: when its last attempt must end, and how many attempts failed so far."""

    deadline: float
    failures: int = 0


_CALL: ContextVar[_Call] = ContextVar("argo_call")


class _DeadlineTimeout(urllib3.Timeout):
    """Each attempt's timeout, connecting and reading together: what is left of the call's deadline.

    urllib3 clones the request's timeout for every attempt, so the clone is where it shrinks.
    """

    def __init__(self, deadline: float) -> None:
        super().__init__(total=max(deadline - time.monotonic(), 0.001))
        self.deadline = deadline

    def clone(self) -> _DeadlineTimeout:
        return _DeadlineTimeout(self.deadline)


class _DeadlineRetry(Retry):
    """urllib3's retries, counted, and exhausted where the next backoff would end past the deadline."""

    def increment(self, *args: Any, **kwargs: Any) -> Self:
        _CALL.get().failures += 1
        return super().increment(*args, **kwargs)

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or time.monotonic() + self.get_backoff_time() >= _CALL.get().deadline

    def sleep(self, response: Any = None) -> None:
        last = self.history[-1]
        failure = root_cause(last.error) if last.error else f"HTTP {last.status}"
        log.warning(
            "Argo Server %s %s: %s (attempt %d), retrying in %.1fs",
            last.method,
            last.url,
            failure,
            len(self.history),
            self.get_backoff_time(),
        )
        super().sleep(response)


class ArgoSession(requests.Session):
    """Every request to one Argo Server, Hera's included: bounded, retried, answered with the suite's errors.

    Connection errors and 5xx are retried (urllib3's ``Retry``, POST too) while ``timeout`` seconds
    last in all; then :class:`ArgoUnreachableError` names the server, the request and the attempts.
    401/403, 404, 409 and other 4xx raise :class:`ArgoAuthError`, :class:`ArgoNotFoundError`,
    :class:`ArgoConflictError` and :class:`ArgoError` here, so callers never parse Hera's generic
    exceptions. ``verify`` (a flag or a CA bundle path) overrides the flag Hera passes with each
    request.
    """

    def __init__(
        self, base_url: str, timeout: float, retries: int, backoff: float, verify: bool | str
    ) -> None:
        super().__init__()
        self.base_url, self.timeout = base_url, timeout
        self.verify = verify
        retry = _DeadlineRetry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=frozenset(range(500, 600)),
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        self.mount("http://", HTTPAdapter(max_retries=retry))
        self.mount("https://", HTTPAdapter(max_retries=retry))

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        call = _Call(started + self.timeout)
        where = f"{request.method} {urlsplit(request.url or '').path}"
        token = _CALL.set(call)
        try:
            response = super().send(
                request, **{**kwargs, "timeout": _DeadlineTimeout(call.deadline), "verify": self.verify}
            )
        except requests.RequestException as error:
            failure = (
                f"no answer within {self.timeout:g}s (${CONNECT_TIMEOUT_ENV})"
                if _timed_out(error)
                else root_cause(error)
            )
        else:
            if response.status_code < 500:
                return self._checked(response, where)
            failure = f"HTTP {response.status_code} {_reason(response)}"
        finally:
            _CALL.reset(token)
        attempts = max(call.failures, 1)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''} in {time.monotonic() - started:.1f}s"
        raise ArgoUnreachableError(
            f"cannot reach Argo Server at {self.base_url} ({where}, {tries}): {failure}"
        )

    def _checked(self, response: requests.Response, where: str) -> requests.Response:
        """A non-5xx answer, or the error it stands for."""
        code = response.status_code
        if code == 401:
            raise ArgoAuthError(f"Argo Server {self.base_url} rejected the token (401) for {where}")
        if code == 403:
            raise ArgoAuthError(f"Argo Server {self.base_url} denied {where} (403)")
        if code == 404:
            raise ArgoNotFoundError(f"Argo Server {self.base_url}: {where} not found (404)")
        if code == 409:
            raise ArgoConflictError(f"Argo Server {where}: 409 {_reason(response)}")
        if code >= 400:
            raise ArgoError(f"Argo Server {where}: {code} {_reason(response)}")
        return response


def _timed_out(error: BaseException) -> bool:
    """Whether the last attempt ran out of time, rather than being refused or reset.

    urllib3's ``NewConnectionError`` (refused, DNS) subclasses its ``TimeoutError``, as requests notes.
    """
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return not any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in chain) and any(
        isinstance(e, TimeoutError | urllib3.exceptions.TimeoutError) for e in chain
    )


def _shards(workflow: dict[str, Any]) -> int:
    """The submission's ``shards`` parameter; the template's default, 1, when it was not given."""
    parameters = ((workflow.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    return int(next((p["value"] for p in parameters if p.get("name") == "shards"), 1))


def _shard_nodes(nodes: dict[str, Any]) -> dict[int, ShardNode]:
    """The training pods' nodes by shard; a retried shard's outcome is its Retry node's phase."""
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for node in nodes.values():
        shard = _shard_number(node) if node.get("type") in ("Pod", "Retry") else None
        if shard is not None:
            by_shard.setdefault(shard, []).append(node)
    found: dict[int, ShardNode] = {}
    for shard, group in by_shard.items():
        pods = sorted(
            (n for n in group if n.get("type") == "Pod"), key=lambda n: str(n.get("startedAt") or "")
        )
        outcome = next((n for n in group if n.get("type") == "Retry"), None) or pods[-1]
        latest = pods[-1] if pods else outcome
        found[shard] = ShardNode(
            shard,
            str(outcome.get("displayName", "")),
            str(outcome.get("phase", "")),
            str(latest.get("message") or outcome.get("message") or ""),
            str(latest.get("progress", "")),
        )
    return found


def _shard_number(node: dict[str, Any]) -> int | None:
    """The node's ``shard`` input, else the item in its display name ``train(index:item)``."""
    for parameter in (node.get("inputs") or {}).get("parameters") or []:
        if parameter.get("name") == "shard" and str(parameter.get("value", "")).isdigit():
            return int(parameter["value"])
    match = _SHARD_TASK.match(str(node.get("displayName", "")))
    return int(match.group(2)) if match else None


def _named_failures(message: str) -> list[str]:
    """Customers a pod's message names after ``failed customers:`` (``c: reason; c2: reason``)."""
    _, mark, listed = message.partition(FAILED_CUSTOMERS_MARK)
    if not mark:
        return []
    return [
        item.split(": ", 1)[0].strip()
        for item in (listed.splitlines() or [""])[0].split("; ")
        if item.strip()
    ]


def _reason(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.text))[:300]
    except ValueError:
        return response.text[:300]
