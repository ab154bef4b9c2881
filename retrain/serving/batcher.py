"""Dynamic batching under load: rows of concurrent requests share one forward pass of the engine.

A forward pass over 64 rows costs little more than one over a single row, so requests that arrive
close together are scored together, customers mixed (the engine applies each row's own adapter).

- The engine scores as many batches at once as it has workers (two on a CPU, one on a GPU), each
  in its own thread. While they run, the event loop keeps accepting requests and forms the next
  batch. A batch takes at most ``max_batch_size`` rows and its worker's fair share of the rows in
  the server (queued and being scored, divided among the workers; a request larger than that is
  taken whole). A full batch, or one that holds its share while others are scored, is handed over
  at once: if no worker is free it waits in the engine's line, so a worker starts it the moment it
  is free, without waiting for the event loop. A smaller one goes as soon as a worker is free if its
  oldest request arrived while all were busy or was left behind by a batch (a backlog); otherwise
  that request first waits ``max_wait_ms`` for company (the first request at an idle engine, say).
  So the clients of a batch just answered, returning one by one, share the next batch rather than
  leave one worker with most of the rows (closed-loop clients otherwise settle into one large batch
  and one small one, and a worker idles while the large one is scored).
- The queue is bounded by rows (``max_queue_rows``, a fixed cap) and by time (``max_queue_ms``),
  measured two ways. Ahead: the rows queued before a new request, at the pace the engine's workers
  have been scoring rows, would keep it waiting longer than that. The pace is the moving sums of
  recent batches' seconds and rows, counting only batches of at least half ``max_batch_size``: the
  batches a queue becomes (a lone row costs several times more per row, and a pace learned from
  them refused the first burst after a quiet spell), and smaller batches that beat it per row;
  until one has been scored the pace refuses nothing. Behind: even the youngest request of the
  last batch scored had waited longer than that (CoDel's signal, a standing queue). The first
  refuses before the wait happens, the second catches what the pace misjudged. Past any bound a
  request is refused at once with :class:`UnavailableError` (HTTP 503 with ``Retry-After``, gRPC
  UNAVAILABLE), so overload turns into prompt refusals, not unbounded latency, however fast the
  machine is today.
- A request whose caller has gone (its task cancelled: a closed connection, a cancelled gRPC call)
  or whose own deadline passed leaves the queue at once and is never scored.

No KServe here: the REST and gRPC handlers, ``/invocations`` and the tests all use this class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from retrain.engine import EngineError, EngineInputError, Predictions, UnknownCustomerError
from retrain.errors import ServiceUnreachableError

log = logging.getLogger(__name__)

# Rows the engine's workers score at once, shared among them: the engine's own batch of 64 on a GPU,
# 32 for each of a CPU's two workers (a single-threaded worker takes about 0.25 s for 32 rows).
ROWS_IN_FLIGHT = 64
DEFAULT_MAX_WAIT_MS = 5.0  # how long a request at a free worker waits for company (see _collect)
# A cap for memory and for bursts the engine's pace has not shown yet; the time bound usually
# refuses first.
DEFAULT_MAX_QUEUE_ROWS = 256
# The time a request may wait for the engine: with its own batch's scoring and HTTP on top, an
# accepted request is answered within 0.5 s (at 1.5x overload on 2 CPU cores: p99 0.40 s, where
# 150 ms gave 0.63 s and 250 ms 0.99 s).
DEFAULT_MAX_QUEUE_MS = 100.0


class UnavailableError(ServiceUnreachableError):
    """The server cannot take this request now (full queue, stopping, not loaded): HTTP 503.

    ``retry_after``: whole seconds after which trying again is reasonable (the ``Retry-After``
    header).
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceededError(UnavailableError):
    """The request's own deadline passed before it was answered; it was not scored if still queued."""


class Engine(Protocol):
    """What the batcher needs of :class:`retrain.engine.AdapterEngine`."""

    @property
    def release_id(self) -> str: ...

    @property
    def customers(self) -> list[str]: ...

    @property
    def workers(self) -> int:
        """Batches the engine scores at once (``predict`` is called from that many threads)."""
        ...

    def predict(self, texts: Sequence[str], customers: Sequence[str]) -> Predictions: ...


class BatchMetrics(Protocol):
    """Where the batcher reports what it does (Prometheus in the server: ``retrain.serving.metrics``)."""

    def queue(self, requests: int, rows: int) -> None:
        """The queue now: requests and rows waiting for a batch."""

    def batch(self, requests: int, rows: int, queue_waits: list[float], scoring_seconds: float) -> None:
        """One batch scored: its size, each request's wait from arrival to the engine, the engine's time."""

    def dropped(self, reason: str) -> None:
        """A request left unscored: ``queue_full``, ``stopping``, ``deadline`` or ``disconnected``."""


class _Unobserved:
    """Metrics for callers that keep none (tests, in-process use)."""

    def queue(self, requests: int, rows: int) -> None:
        pass

    def batch(self, requests: int, rows: int, queue_waits: list[float], scoring_seconds: float) -> None:
        pass

    def dropped(self, reason: str) -> None:
        pass


@dataclass(eq=False)  # compared by identity: the queue removes this very request
class _Request:
    texts: list[str]
    customers: list[str]
    future: asyncio.Future[Predictions] = field(repr=False)
    arrived: float  # time.monotonic()
    backlog: bool  # every worker was busy when it arrived, or a batch left it: it goes with the next free one


@dataclass
class _Scored:
    """What an engine worker made of one batch: per request a result or an error."""

    outcomes: list[tuple[_Request, Predictions | BaseException]]
    queue_waits: list[float]
    seconds: float


class DynamicBatcher:
    """Gathers concurrent requests into mixed batches of at most ``max_batch_size`` rows (default
    :data:`ROWS_IN_FLIGHT` shared among the engine's workers).

    A request larger than ``max_batch_size`` is never split: it forms a batch of its own (the
    engine batches internally). Requests are checked before they are queued, so a bad request
    (unknown customer, texts and customers of different lengths) fails alone and never the batch
    it would have joined. A request larger than the whole queue is taken when the queue is empty.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int | None = None,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS,
        max_queue_ms: float = DEFAULT_MAX_QUEUE_MS,
        metrics: BatchMetrics | None = None,
    ) -> None:
        if max_batch_size is None:
            max_batch_size = max(1, ROWS_IN_FLIGHT // engine.workers)
        if max_batch_size < 1:
            raise EngineError(f"max batch size must be at least 1 row, got {max_batch_size}")
        if max_wait_ms < 0:
            raise EngineError(f"max wait must be 0 ms or more, got {max_wait_ms}")
        if max_queue_rows < max_batch_size:
            raise EngineError(
                f"max queue rows must be at least the max batch size ({max_batch_size}), got {max_queue_rows}"
            )
        if max_queue_ms <= 0:
            raise EngineError(f"max queue wait must be above 0 ms, got {max_queue_ms}")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self.max_queue_wait = max_queue_ms / 1000.0
        self.metrics: BatchMetrics = metrics or _Unobserved()
        self._known = frozenset(engine.customers)
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._stopping = False
        self._standing_wait = 0.0  # seconds the youngest request of the last batch waited
        # A worker's pace: seconds and rows of recent batches such as a queue forms (see _settle), each a
        # moving sum (0 rows: none yet).
        self._recent_seconds = self._recent_rows = 0.0
        self._in_engine: dict[asyncio.Future[_Scored], int] = {}  # batches scored or formed: their rows
        self._changed = asyncio.Event()  # a request arrived, or a batch left the engine
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=engine.workers, thread_name_prefix="engine"
        )

    def check(self, texts: Sequence[str], customers: Sequence[str]) -> None:
        """Raise :class:`EngineInputError` naming what is wrong with one request; nothing is queued."""
        if len(texts) != len(customers):
            raise EngineInputError(
                f"{len(texts)} texts but {len(customers)} customer ids: one customer id per text"
            )
        unknown = {c for c in customers if c not in self._known}
        if unknown:
            raise UnknownCustomerError(unknown, self.engine.release_id)

    @property
    def queued_rows(self) -> int:
        return self._pending_rows

    async def predict(
        self, texts: Sequence[str], customers: Sequence[str], *, timeout: float | None = None
    ) -> Predictions:
        """Score one request's rows, batched with whatever other requests are in flight.

        :param timeout: seconds the caller waits at most; past it :class:`DeadlineExceededError`,
            and the rows are not scored if they were still queued.
        :raises UnavailableError: at once, when the queue is full or the batcher stops.
        """
        self.check(texts, customers)
        if not texts:
            return Predictions([], [], [])
        self._admit(len(texts))
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        backlog = self._scoring() >= self.engine.workers
        request = _Request(list(texts), list(customers), loop.create_future(), time.monotonic(), backlog)
        self._pending.append(request)
        self._pending_rows += len(texts)
        self.metrics.queue(len(self._pending), self._pending_rows)
        self._changed.set()
        try:
            if timeout is None:
                return await request.future
            return await asyncio.wait_for(request.future, timeout)
        except TimeoutError:
            self._forget(request, "deadline")
            raise DeadlineExceededError(
                f"the request's deadline of {timeout:.3f}s passed before it was answered"
            ) from None
        except asyncio.CancelledError:  # the caller has gone: never score its rows
            self._forget(request, "disconnected")
            raise

    def stop(self) -> None:
        """Refuse new requests (503); those already queued are still scored."""
        self._stopping = True

    async def close(self) -> None:
        """Stop at once; requests still queued fail with a message saying the server stops."""
        self.stop()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(UnavailableError("the model server is stopping"))
        self._pending_rows = 0
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _admit(self, rows: int) -> None:
        if self._stopping:
            self.metrics.dropped("stopping")
            raise UnavailableError("the model server is stopping: send the request to another replica")
        if not self._pending_rows:  # nothing queued: the engine takes it with the next batch
            return
        row_seconds = self._recent_seconds / self._recent_rows if self._recent_rows else 0.0
        ahead = self._pending_rows * row_seconds / self.engine.workers
        limit = self.max_queue_wait * 1000
        if self._pending_rows + rows > self.max_queue_rows:
            reason, wait = f"{self._pending_rows} rows queued, the limit is {self.max_queue_rows}", ahead
        elif self._standing_wait > self.max_queue_wait:
            wait = self._standing_wait
            reason = f"requests wait {wait * 1000:.0f} ms for the engine, the limit is {limit:.0f} ms"
        elif ahead > self.max_queue_wait:
            wait = ahead
            reason = f"the rows queued would take {ahead * 1000:.0f} ms, the limit is {limit:.0f} ms"
        else:
            return
        self.metrics.dropped("queue_full")
        raise UnavailableError(
            f"the model server is at capacity ({reason}): retry later", retry_after=max(1, math.ceil(wait))
        )

    def _forget(self, request: _Request, reason: str) -> None:
        """Take a request its caller no longer waits for out of the queue (if a batch has not taken it)."""
        request.future.cancel()
        with contextlib.suppress(ValueError):  # already in a batch: the engine worker skips it
            self._pending.remove(request)
            self._pending_rows -= len(request.texts)
            self.metrics.queue(len(self._pending), self._pending_rows)
        self.metrics.dropped(reason)

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("a DynamicBatcher serves one event loop; create one per loop")
        if self._worker is None or self._worker.done():
            self._loop = loop
            self._worker = loop.create_task(self._run(), name="retrain-batcher")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._scoring() > self.engine.workers:  # all busy, the next batch formed: wait for one
                await asyncio.wait(self._in_engine, return_when=asyncio.FIRST_COMPLETED)
                continue
            batch = await self._collect()
            scoring = loop.run_in_executor(self._executor, self._score, batch)
            scoring.add_done_callback(functools.partial(self._settle, batch=batch))
            self._in_engine[scoring] = sum(len(request.texts) for request in batch)

    def _scoring(self) -> int:
        """Batches in the engine's workers or formed for the next free one."""
        self._in_engine = {scoring: rows for scoring, rows in self._in_engine.items() if not scoring.done()}
        return len(self._in_engine)

    async def _collect(self) -> list[_Request]:
        """The next batch: full, or a worker's share of the rows while others are scored, or less once a
        worker is free: at once for a backlog, else when its oldest request has waited ``max_wait`` for
        company (so at an idle engine the first request waits for company)."""
        while True:
            remaining: float | None = None  # until something changes
            in_engine = sum(rows for scoring, rows in self._in_engine.items() if not scoring.done())
            share = max(
                1, min(self.max_batch_size, math.ceil((self._pending_rows + in_engine) / self.engine.workers))
            )
            if self._pending_rows >= self.max_batch_size or (in_engine and self._pending_rows >= share):
                break
            if self._pending and self._scoring() < self.engine.workers:
                oldest = self._pending[0]
                remaining = 0.0 if oldest.backlog else oldest.arrived + self.max_wait - time.monotonic()
                if remaining <= 0:
                    break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        batch: list[_Request] = []
        rows = 0
        while self._pending and (not batch or rows + len(self._pending[0].texts) <= share):
            request = self._pending.popleft()
            self._pending_rows -= len(request.texts)
            batch.append(request)
            rows += len(request.texts)
        for request in self._pending:  # left behind by this batch: they go with the next free worker
            request.backlog = True
        self.metrics.queue(len(self._pending), self._pending_rows)
        return batch

    def _score(self, batch: list[_Request]) -> _Scored:
        """In one of the batcher's threads (one per engine worker): score the batch's requests whose
        callers still wait."""
        started = time.monotonic()
        # Reading ``cancelled()`` from this thread races at worst with a caller leaving right now:
        # its rows are scored and the answer dropped.
        live = [r for r in batch if not r.future.cancelled()]
        waits = [started - r.arrived for r in live]
        outcomes: list[tuple[_Request, Predictions | BaseException]] = []
        if live:
            texts = [t for r in live for t in r.texts]
            customers = [c for r in live for c in r.customers]
            try:
                scored = self.engine.predict(texts, customers)
            except Exception as error:
                if len(live) == 1:
                    outcomes = [(live[0], error)]
                else:
                    # One request's rows broke the batch (e.g. its adapter's file is unreadable):
                    # score each request alone, so only that request fails.
                    log.warning(
                        "a batch of %d requests failed (%s); scoring them one by one", len(live), error
                    )
                    outcomes = [(r, _alone(self.engine, r)) for r in live]
            else:
                start = 0
                for request in live:
                    end = start + len(request.texts)
                    outcomes.append((request, _slice(scored, start, end)))
                    start = end
        return _Scored(outcomes, waits, time.monotonic() - started)

    def _settle(self, scoring: asyncio.Future[_Scored], batch: list[_Request]) -> None:
        """On the event loop, once an engine worker is done with a batch: answer its callers."""
        self._changed.set()
        if scoring.cancelled() or scoring.exception() is not None:  # closed, or a bug in _score
            error = scoring.exception() if not scoring.cancelled() else None
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error or UnavailableError("the model server is stopping"))
            return
        scored = scoring.result()
        rows = 0
        for request, outcome in scored.outcomes:
            rows += len(request.texts)
            if request.future.done():  # its caller left while it was scored
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
        pace = self._recent_seconds / self._recent_rows if self._recent_rows else 0.0
        # The pace learns from batches such as a queue forms, of at least half max_batch_size: a lone row
        # costs several times more per row. A smaller batch counts only when it beat the pace per row,
        # which it shows too slow (else one slow batch could set a pace that refused every queue long
        # enough to form a large batch again).
        if scored.queue_waits and (2 * rows >= self.max_batch_size or scored.seconds < pace * rows):
            # Recent batches count most: the pace follows the machine's load within a few batches. Rows
            # weigh, not batches (averaging each batch's seconds per row refused about 1 in 60 requests
            # of 32 clients).
            keep = 0.8 if self._recent_rows else 0.0
            self._recent_seconds = keep * self._recent_seconds + scored.seconds
            self._recent_rows = keep * self._recent_rows + rows
        if scored.queue_waits:
            self._standing_wait = min(scored.queue_waits)
        if scored.outcomes:  # not a batch whose callers had all left
            self.metrics.batch(len(scored.outcomes), rows, scored.queue_waits, scored.seconds)


def _alone(engine: Engine, request: _Request) -> Predictions | BaseException:
    try:
        return engine.predict(request.texts, request.customers)
    except Exception as error:
        return error


def _slice(predictions: Predictions, start: int, end: int) -> Predictions:
    return Predictions(
        predictions.probabilities[start:end],
        predictions.labels[start:end],
        predictions.adapter_versions[start:end],
    )
