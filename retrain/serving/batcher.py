"""Dynamic batching: rows of concurrent requests share one forward pass of the engine.

A forward pass over 64 rows costs little more than one over a single row, so requests that arrive
within a few milliseconds of each other are scored together, customers mixed (the engine applies
each row's own adapter). The engine runs in one worker thread: the event loop keeps accepting
requests (and collecting the next batch) while a batch is scored.

No KServe here: the REST and gRPC handlers, ``/invocations`` and the tests all use this class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from retrain.engine import EngineError, Predictions, UnknownCustomerError

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 64  # rows: the engine's own batch size, one forward pass
DEFAULT_MAX_WAIT_MS = 5.0  # how long the first request of a batch waits for company


class Engine(Protocol):
    """What the batcher needs of :class:`retrain.engine.AdapterEngine`."""

    @property
    def release_id(self) -> str: ...

    @property
    def customers(self) -> list[str]: ...

    def predict(self, texts: Sequence[str], customers: Sequence[str]) -> Predictions: ...


@dataclass
class _Request:
    texts: list[str]
    customers: list[str]
    future: asyncio.Future[Predictions] = field(repr=False)


class DynamicBatcher:
    """Gathers concurrent requests into mixed batches of at most ``max_batch_size`` rows.

    A batch is scored as soon as it is full, or ``max_wait_ms`` after its first request arrived.
    A request larger than ``max_batch_size`` is never split: it forms a batch of its own (the
    engine batches internally). Requests are checked before they are queued, so a bad request
    (unknown customer, texts and customers of different lengths) fails alone and never the batch
    it would have joined.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    ) -> None:
        if max_batch_size < 1:
            raise EngineError(f"max batch size must be at least 1 row, got {max_batch_size}")
        if max_wait_ms < 0:
            raise EngineError(f"max wait must be 0 ms or more, got {max_wait_ms}")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._known = frozenset(engine.customers)
        self._pending: deque[_Request] = deque()
        self._arrived = asyncio.Event()  # binds to the running loop on first use
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # One thread: the engine scores one batch at a time anyway (its internal lock).
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")

    def check(self, texts: Sequence[str], customers: Sequence[str]) -> None:
        """Raise :class:`EngineError` naming what is wrong with one request; nothing is queued."""
        if len(texts) != len(customers):
            raise EngineError(
                f"{len(texts)} texts but {len(customers)} customer ids: one customer id per text"
            )
        unknown = {c for c in customers if c not in self._known}
        if unknown:
            raise UnknownCustomerError(unknown, self.engine.release_id)

    async def predict(self, texts: Sequence[str], customers: Sequence[str]) -> Predictions:
        """Score one request's rows, batched with whatever other requests are in flight."""
        self.check(texts, customers)
        if not texts:
            return Predictions([], [], [])
        self._ensure_worker()
        future: asyncio.Future[Predictions] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(list(texts), list(customers), future))
        self._arrived.set()
        return await future

    async def close(self) -> None:
        """Stop collecting; requests still queued fail with a message saying the server stops."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._pending:
            _settle(self._pending.popleft(), error=EngineError("the model server is stopping"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("a DynamicBatcher serves one event loop; create one per loop")
        if self._worker is None or self._worker.done():
            self._loop = loop
            self._worker = loop.create_task(self._run(), name="retrain-batcher")

    async def _run(self) -> None:
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            batch = [self._pending.popleft()]
            rows = len(batch[0].texts)
            deadline = time.monotonic() + self.max_wait
            while True:
                while self._pending and rows + len(self._pending[0].texts) <= self.max_batch_size:
                    batch.append(self._pending.popleft())
                    rows += len(batch[-1].texts)
                remaining = deadline - time.monotonic()
                if rows >= self.max_batch_size or self._pending or remaining <= 0:
                    break  # full, the next request does not fit, or waited long enough
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):  # then take what arrived meanwhile, and go
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            await self._score(batch)

    async def _score(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # a client that gave up was cancelled
        if not live:
            return
        texts = [t for r in live for t in r.texts]
        customers = [c for r in live for c in r.customers]
        loop = asyncio.get_running_loop()
        try:
            scored = await loop.run_in_executor(self._executor, self.engine.predict, texts, customers)
        except Exception as error:
            if len(live) == 1:
                _settle(live[0], error=error)
                return
            # One request's rows broke the batch (e.g. its adapter's file is unreadable): score each
            # request alone, so only that request fails.
            log.warning("a batch of %d requests failed (%s); scoring them one by one", len(live), error)
            for request in live:
                await self._score([request])
            return
        start = 0
        for request in live:
            end = start + len(request.texts)
            _settle(request, result=_slice(scored, start, end))
            start = end


def _slice(predictions: Predictions, start: int, end: int) -> Predictions:
    return Predictions(
        predictions.probabilities[start:end],
        predictions.labels[start:end],
        predictions.adapter_versions[start:end],
    )


def _settle(
    request: _Request, *, result: Predictions | None = None, error: BaseException | None = None
) -> None:
    if request.future.done():
        return
    if error is not None:
        request.future.set_exception(error)
    elif result is not None:
        request.future.set_result(result)
