"""The batcher's metrics in Prometheus' default registry, which KServe serves at ``GET /metrics``.

Beside KServe's own ``request_predict_seconds`` (per request, end to end), these say where the
time goes and how full the batches are, labelled by ``model_name`` as KServe labels its own:

- ``retrain_serving_queue_requests`` / ``retrain_serving_queue_rows``: waiting for a batch now;
- ``retrain_serving_batch_requests`` / ``retrain_serving_batch_rows``: the size of each batch;
- ``retrain_serving_queue_wait_seconds``: per request, from arrival until the engine starts it;
- ``retrain_serving_scoring_seconds``: per batch, the engine's time;
- ``retrain_serving_dropped_total{reason}``: requests left unscored (``queue_full``, ``stopping``,
  ``deadline``, ``disconnected``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LABELS = ["model_name"]
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

QUEUE_REQUESTS = Gauge("retrain_serving_queue_requests", "requests waiting for a batch", _LABELS)
QUEUE_ROWS = Gauge("retrain_serving_queue_rows", "rows waiting for a batch", _LABELS)
BATCH_REQUESTS = Histogram("retrain_serving_batch_requests", "requests per batch", _LABELS, buckets=_SIZES)
BATCH_ROWS = Histogram("retrain_serving_batch_rows", "rows per batch", _LABELS, buckets=_SIZES)
QUEUE_WAIT = Histogram(
    "retrain_serving_queue_wait_seconds",
    "per request, arrival until the engine starts it",
    _LABELS,
    buckets=_SECONDS,
)
SCORING = Histogram(
    "retrain_serving_scoring_seconds", "per batch, the engine's time", _LABELS, buckets=_SECONDS
)
DROPPED = Counter("retrain_serving_dropped", "requests left unscored, by reason", [*_LABELS, "reason"])


class PrometheusMetrics:
    """:class:`retrain.serving.batcher.BatchMetrics` for one served model."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._queue_requests = QUEUE_REQUESTS.labels(model_name)
        self._queue_rows = QUEUE_ROWS.labels(model_name)
        self._batch_requests = BATCH_REQUESTS.labels(model_name)
        self._batch_rows = BATCH_ROWS.labels(model_name)
        self._queue_wait = QUEUE_WAIT.labels(model_name)
        self._scoring = SCORING.labels(model_name)

    def queue(self, requests: int, rows: int) -> None:
        self._queue_requests.set(requests)
        self._queue_rows.set(rows)

    def batch(self, requests: int, rows: int, queue_waits: list[float], scoring_seconds: float) -> None:
        self._batch_requests.observe(requests)
        self._batch_rows.observe(rows)
        for wait in queue_waits:
            self._queue_wait.observe(wait)
        self._scoring.observe(scoring_seconds)

    def dropped(self, reason: str) -> None:
        DROPPED.labels(self.model_name, reason).inc()
