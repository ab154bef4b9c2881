"""Golden scores through a running model server: what clients get must match what training stored.

:func:`retrain.scoring.reference.check_reference` rescores each adapter's reference sample in this
process. That proves the release's files are sound, not that the deployed server serves them: a
stale image, another release rolled out behind the same Service, a damaged volume or a different
base model in the image all pass it. This check asks the server itself, over the Open Inference
Protocol's REST API (``POST {endpoint}/v2/models/{name}/infer``) with plain ``requests``, so it
runs anywhere the main package does (the CLI, Airflow workers) and needs neither KServe nor torch.

Every response must carry ``model_version`` equal to the release id: behind a load balancer during
a roll-out, some pods may still serve the previous release, so each batch is checked, not only the
first. The manifest id of a tampered release directory stays the same, so the scores are compared
too: ``score`` (the probability of the adapter's last label) against the stored ``p_<label>``.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import requests

from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout, redacted_url, root_cause, total_timeout
from retrain.dolt.repository import printable
from retrain.errors import ConflictError, RetrainError, ServiceUnreachableError
from retrain.release.store import ReleaseStore
from retrain.scoring.reference import check_tolerance, compare_rows, load_reference, probability_columns
from retrain.serving.protocol import DEFAULT_MODEL_NAME

BATCH_ROWS = 32  # rows per request: small enough for any server's request limits, few round trips


class EndpointCheckError(RetrainError):
    """The model server could not be checked or failed the check; the message names the URL."""


class EndpointUnreachableError(EndpointCheckError, ServiceUnreachableError):
    """No usable answer from the endpoint: refused, timed out, an HTTP error or not V2 JSON."""


class _RejectedError(EndpointUnreachableError):
    """The server answered the request with an HTTP error status."""


class ServedReleaseError(EndpointCheckError, ConflictError):
    """The endpoint serves another release (its ``model_version`` is not the release id asked for)."""


class EndpointMismatchError(EndpointCheckError, ConflictError):
    """Scores the server returned differ from the adapters' stored reference scores."""


@dataclass(frozen=True)
class EndpointCheck:
    """A passed check: rows compared and the largest score difference, per customer."""

    release_id: str
    endpoint: str
    model_name: str
    checked_rows: dict[str, int] = field(default_factory=dict)
    max_difference: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"{customer}: {rows} reference rows match through {self.endpoint} "
            f"(max difference {self.max_difference[customer]:.1e})"
            for customer, rows in self.checked_rows.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Row:
    customer: str
    text: str


def check_endpoint(
    store: ReleaseStore,
    release_id: str,
    endpoint: str,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    tolerance: float = 1e-4,
    timeout: float | None = None,
    batch_rows: int = BATCH_ROWS,
) -> EndpointCheck:
    """Send every adapter's reference sample to the server; raise :class:`EndpointCheckError` on any problem.

    :param endpoint: the server's base URL, e.g. ``http://retrain-serving-predictor.ml-serving``;
        messages and the result show it with any password hidden.
    :param timeout: seconds each request may take in all, connecting and reading the whole answer
        included (default ``$RETRAIN_CONNECT_TIMEOUT``): a dead endpoint, one that accepts without
        answering, or one that answers a byte at a time, fails fast.
    """
    check_tolerance(tolerance)
    started = time.monotonic()
    manifest = store.manifest(release_id)
    references = {entry.customer: load_reference(store, entry.run_id) for entry in manifest.adapters}
    # Customers are mixed in each request, the way live traffic reaches the server's batcher.
    rows = [_Row(customer, str(text)) for customer, frame in references.items() for text in frame["text"]]
    client = _V2Client(endpoint, model_name, connect_timeout() if timeout is None else timeout)
    scores: list[float] = []
    versions: list[str] = []
    with client:
        # An empty request first: it names the served release before any customer it may not know.
        with contextlib.suppress(_RejectedError):  # a server may refuse empty batches; the rows tell
            _expect_release(client, client.infer([], [])[0], release_id)
        for start in range(0, len(rows), batch_rows):
            batch = rows[start : start + batch_rows]
            served, outputs = client.infer([r.text for r in batch], [r.customer for r in batch])
            _expect_release(client, served, release_id)
            scores += _floats(outputs, "score", len(batch), client.url)
            versions += [str(v) for v in _column(outputs, "adapter_version", len(batch), client.url)]
    checked, worst, problems = {}, {}, []
    offset = 0
    for entry in manifest.adapters:
        reference = references[entry.customer]
        served_scores = np.array(scores[offset : offset + len(reference)], dtype=float)
        served_versions = set(versions[offset : offset + len(reference)])
        offset += len(reference)
        who = f"{entry.customer} ({entry.model_name} v{entry.version}, served as model version {release_id})"
        if served_versions - {entry.version}:
            problems.append(f"{who}: the server answered with adapter versions {sorted(served_versions)}")
        last_label = probability_columns(reference)[-1:]  # ``score`` is the last label's probability
        compared = compare_rows(reference, last_label, served_scores, tolerance)
        checked[entry.customer], worst[entry.customer] = compared.rows, compared.max_difference
        if compared.bad_rows:
            problems.append(compared.problem(who))
    if problems:
        raise EndpointMismatchError(
            f"{client.url} fails release {release_id}'s golden scores (tolerance {tolerance}): "
            + "; ".join(problems)
        )
    return EndpointCheck(
        release_id, redacted_url(endpoint), model_name, checked, worst, seconds=time.monotonic() - started
    )


def _expect_release(client: _V2Client, served: str, release_id: str) -> None:
    if served != release_id:
        raise ServedReleaseError(
            f"{client.url} serves release {served or '(no model_version)'}, not release {release_id}"
        )


class _V2Client:
    """The few calls of the Open Inference Protocol's REST API the check needs."""

    def __init__(self, endpoint: str, model_name: str, timeout: float) -> None:
        self._target = f"{endpoint.rstrip('/')}/v2/models/{model_name}/infer"
        self.url = redacted_url(self._target)  # for messages: never the password
        self.timeout = timeout
        self.session = requests.Session()

    def __enter__(self) -> _V2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def infer(self, texts: Sequence[str], customers: Sequence[str]) -> tuple[str, dict[str, dict[str, Any]]]:
        """The response's ``model_version`` and its outputs by name."""
        body = {
            "id": uuid.uuid4().hex,
            "inputs": [_bytes_tensor("text", texts), _bytes_tensor("customer_id", customers)],
        }
        response = self._post(body)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not response.ok:
            # V2 servers answer errors as {"error": "..."}; anything else is shown cut short.
            reason = payload.get("error") if isinstance(payload, dict) else None
            raise _RejectedError(
                f"model server at {self.url} answered HTTP {response.status_code}: "
                f"{printable(str(reason or response.text[:300]))}"
            )
        if not isinstance(payload, dict) or not isinstance(payload.get("outputs"), list):
            raise EndpointUnreachableError(
                f"model server at {self.url} did not answer an inference response (no outputs): "
                f"{printable(response.text[:300])}"
            )
        outputs = {str(o.get("name")): o for o in payload["outputs"] if isinstance(o, dict)}
        return printable(str(payload.get("model_version") or "")), outputs

    def _post(self, body: dict[str, Any]) -> requests.Response:
        """POST ``body`` and read the whole answer within ``timeout`` seconds in all.

        requests bounds each socket read, not the request: a server sending a byte a second holds
        it for ever. So the request runs in a daemon thread that is abandoned at the deadline.
        """
        outcome: list[requests.Response | requests.RequestException] = []

        def post() -> None:
            try:
                response = self.session.post(self._target, json=body, timeout=total_timeout(self.timeout))
                _ = response.content  # the whole body, inside the deadline
                outcome.append(response)
            except requests.RequestException as error:
                outcome.append(error)

        worker = threading.Thread(target=post, name="release-check-request", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not outcome or isinstance(outcome[0], requests.Timeout):
            raise EndpointUnreachableError(
                f"model server at {self.url} did not answer within {self.timeout:g}s (--timeout, "
                f"${CONNECT_TIMEOUT_ENV})"
            )
        if isinstance(outcome[0], requests.RequestException):
            raise EndpointUnreachableError(
                f"model server at {self.url} is unreachable: {_connection_problem(outcome[0])}"
            ) from None
        return outcome[0]


def _connection_problem(error: requests.RequestException) -> str:
    """Why the request failed, in words: never the raw bytes a non-HTTP/1.1 server sent."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, http.client.BadStatusLine):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return printable(root_cause(error))
    if str(cause.args[0] if cause.args else "").startswith("\x00\x00"):
        return "it answers in HTTP/2 frames, not HTTP/1.1: is that the gRPC port? The check needs REST"
    return "it answered something other than HTTP"


def _column(outputs: dict[str, dict[str, Any]], name: str, rows: int, url: str) -> list[Any]:
    data = outputs.get(name, {}).get("data")
    if not isinstance(data, list) or len(data) != rows:
        found = "missing" if data is None else f"{len(data) if isinstance(data, list) else data!r} values"
        raise EndpointUnreachableError(
            f"model server at {url} answered output {name!r} {found} for {rows} rows "
            f"(outputs: {sorted(outputs)})"
        )
    return data


def _floats(outputs: dict[str, dict[str, Any]], name: str, rows: int, url: str) -> list[float]:
    try:
        return [float(v) for v in _column(outputs, name, rows, url)]
    except (TypeError, ValueError) as error:
        raise EndpointUnreachableError(
            f"model server at {url} answered non-numeric {name!r} values: {error}"
        ) from error


def _bytes_tensor(name: str, values: Sequence[str]) -> dict[str, Any]:
    return {"name": name, "shape": [len(values)], "datatype": "BYTES", "data": list(values)}
