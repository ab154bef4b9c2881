"""The real server under load: prompt 503s past its queue, abandoned requests unscored, deadlines, metrics.

What was scored is read from the server's own Prometheus metrics (``GET /metrics``), so each test
compares counters before and after. Every loop is bounded; everything stays on loopback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import statistics
import time
from typing import Any

import pytest
import requests

from .conftest import ENGINE_WORKERS, MODEL_NAME, RunningServer
from .v2 import infer_body

pytestmark = pytest.mark.serving

INFER = f"/v2/models/{MODEL_NAME}/infer"
BLOCKER_ROWS = 512  # a request that keeps the engine busy while others queue behind it


def metrics(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's /metrics: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.base_url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted({"model_name": MODEL_NAME, **labels}.items()))), 0.0)


def rows(trained_release: Any, count: int) -> tuple[list[str], list[str]]:
    texts, customers = trained_release.texts, trained_release.text_customers
    return [texts[i % len(texts)] for i in range(count)], [customers[i % len(texts)] for i in range(count)]


def raw_post(server: RunningServer, body: dict[str, Any]) -> socket.socket:
    """An infer request sent on its own connection; the answer is left unread."""
    payload = json.dumps(body).encode()
    connection = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    connection.sendall(
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return connection


def wait_for(condition: Any, seconds: float, what: str) -> float:
    """Poll ``condition()`` every 10 ms for at most ``seconds``; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} not within {seconds}s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_burst_past_the_queue_gets_prompt_503s_with_retry_after(
    serving_process: RunningServer, trained_release: Any
) -> None:
    """12 requests of 64 rows at once: 2 batches in the engine and 4 queued fit, the rest is refused."""
    body = infer_body(*rows(trained_release, 64))
    before = metrics(serving_process)
    sessions = [requests.Session() for _ in range(12)]
    for session in sessions:  # connections open before the burst, so it arrives at once
        session.get(f"{serving_process.base_url}/v2/health/live", timeout=10)

    def send(session: requests.Session) -> tuple[int, float, requests.Response]:
        started = time.monotonic()
        response = session.post(f"{serving_process.base_url}{INFER}", json=body, timeout=60)
        return response.status_code, time.monotonic() - started, response

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(send, sessions))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    refused = [(seconds, response) for status, seconds, response in answers if status == 503]
    assert refused, f"no request was refused: {statuses}"
    for seconds, response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert "at capacity" in response.json()["error"]
        assert seconds < 1.0, f"a refusal took {seconds:.2f}s"
    for status, _, response in answers:
        if status == 200:
            assert len(response.json()["outputs"][0]["data"]) == 64
    after = metrics(serving_process)
    grew = sample(after, "retrain_serving_dropped_total", reason="queue_full") - sample(
        before, "retrain_serving_dropped_total", reason="queue_full"
    )
    assert grew == len(refused)


def test_requests_whose_clients_left_are_not_scored(
    serving_process: RunningServer, trained_release: Any
) -> None:
    """One big request holds the engine; 4 more follow, then their clients hang up.

    Of the 4, the engine's other workers take one each (scored: the engine cannot be interrupted),
    one is formed as the next batch (dropped before it is scored), the rest wait in the queue.
    """
    before = metrics(serving_process)
    scored_rows = "retrain_serving_batch_rows_sum"
    blocker = raw_post(serving_process, infer_body(*rows(trained_release, BLOCKER_ROWS)))
    time.sleep(0.3)  # read and handed to the engine (it scores 64 rows at a time: seconds of work)
    leaving = [raw_post(serving_process, infer_body(*rows(trained_release, 64))) for _ in range(4)]
    queued = 4 - ENGINE_WORKERS
    wait_for(
        lambda: sample(metrics(serving_process), "retrain_serving_queue_rows") == 64 * queued,
        10,
        f"{queued} requests queued",
    )
    for connection in leaving:
        connection.close()
    emptied = wait_for(
        lambda: sample(metrics(serving_process), "retrain_serving_queue_rows") == 0, 1.0, "queue emptied"
    )
    blocker.settimeout(60)
    answer = b""
    while b'"outputs"' not in answer or not answer.rstrip().endswith(b"}"):
        chunk = blocker.recv(1 << 16)
        assert chunk, f"the server closed the big request's connection: {answer[:300]!r}"
        answer += chunk
    blocker.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    wait_for(
        lambda: (
            sample(metrics(serving_process), "retrain_serving_dropped_total", reason="disconnected")
            >= sample(before, "retrain_serving_dropped_total", reason="disconnected") + 4
        ),
        5,
        "4 requests dropped",
    )
    after = metrics(serving_process)
    scored_beside = 64 * (ENGINE_WORKERS - 1)
    assert sample(after, scored_rows) - sample(before, scored_rows) == BLOCKER_ROWS + scored_beside, (
        f"queue emptied in {emptied:.2f}s"
    )
    assert sample(after, "retrain_serving_dropped_total", reason="disconnected") == (
        sample(before, "retrain_serving_dropped_total", reason="disconnected") + 4
    )


def test_an_expired_deadline_is_a_prompt_503(serving_process: RunningServer, trained_release: Any) -> None:
    url = f"{serving_process.base_url}{INFER}"
    expired = requests.post(
        url, json=infer_body(*rows(trained_release, 2), parameters={"timeout": 1}), timeout=30
    )
    assert expired.status_code == 503, expired.text
    assert "deadline" in expired.json()["error"]
    bad = requests.post(
        url, json=infer_body(*rows(trained_release, 2), parameters={"timeout": "soon"}), timeout=30
    )
    assert bad.status_code == 400
    assert "parameter 'timeout' is 'soon'" in bad.json()["error"]
    ample = requests.post(
        url, json=infer_body(*rows(trained_release, 2), parameters={"timeout": 60_000_000}), timeout=30
    )
    assert ample.status_code == 200, ample.text

    async def over_grpc() -> str:
        from kserve import InferenceGRPCClient, InferInput, InferRequest

        texts, customers = rows(trained_release, 2)
        inputs = [
            InferInput("text", [2], "BYTES", data=[t.encode() for t in texts]),
            InferInput("customer_id", [2], "BYTES", data=[c.encode() for c in customers]),
        ]
        request = InferRequest(model_name=MODEL_NAME, infer_inputs=inputs, parameters={"timeout": 1})
        client = InferenceGRPCClient(serving_process.grpc_url, timeout=60)
        try:
            await client.infer(request)
        except Exception as error:  # grpc.aio.AioRpcError
            return str(error)
        finally:
            await client.close()
        return "answered"

    assert "DEADLINE_EXCEEDED" in asyncio.run(over_grpc())


def test_batching_metrics_are_on_the_metrics_endpoint(
    serving_process: RunningServer, trained_release: Any
) -> None:
    response = requests.post(
        f"{serving_process.base_url}{INFER}", json=infer_body(*rows(trained_release, 3)), timeout=30
    )
    assert response.status_code == 200, response.text
    samples = metrics(serving_process)
    for name in (
        "retrain_serving_queue_rows",
        "retrain_serving_queue_requests",
        "retrain_serving_batch_requests_count",
        "retrain_serving_batch_rows_sum",
        "retrain_serving_queue_wait_seconds_count",
        "retrain_serving_scoring_seconds_sum",
        "request_predict_seconds_count",  # KServe's own, beside ours
    ):
        assert (name, (("model_name", MODEL_NAME),)) in samples, f"{name} is missing from /metrics"
    assert sample(samples, "retrain_serving_batch_rows_sum") >= 3
    assert sample(samples, "retrain_serving_scoring_seconds_sum") > 0


def test_an_answer_leaves_whole_without_waiting_for_an_ack(
    serving_process: RunningServer, trained_release: Any
) -> None:
    """The server writes an answer's head and body apart. With Nagle's algorithm on, the body waited
    for the client's delayed ACK of the head: about 40 ms per answer on a kept-alive connection."""
    payload = json.dumps(infer_body(*rows(trained_release, 1))).encode()
    request = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    head_to_end = []
    with socket.create_connection(("127.0.0.1", serving_process.http_port), timeout=30) as connection:
        answers = connection.makefile("rb")
        for _ in range(20):
            connection.sendall(request)
            status = answers.readline()  # returns once the first segment, the head, has arrived
            first_segment = time.perf_counter()
            length = 0
            while (line := answers.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                length = int(value) if name.lower() == "content-length" else length
            answers.read(length)
            head_to_end.append(time.perf_counter() - first_segment)
            assert b" 200 " in status, status
    assert statistics.median(head_to_end) < 0.02, f"head to end of answer: {sorted(head_to_end)}"


def test_a_model_not_loaded_yet_answers_503(tmp_path: Any) -> None:
    from retrain.serving.batcher import UnavailableError
    from retrain.serving.model import ReleaseModel

    model = ReleaseModel(tmp_path)  # nothing is loaded until load()
    with pytest.raises(UnavailableError, match="model retrain is not loaded yet") as raised:
        asyncio.run(model.score(["a text"], ["a_customer"]))
    assert raised.value.http_status == 503
