"""The dynamic batcher alone (no KServe): concurrent requests share forward passes, bad ones fail alone.

Under load: the next batch forms while one is scored, a full queue refuses at once, and requests
whose callers left or whose deadline passed are never scored. The real engine is held at its door
(``gate``) where a test needs it busy, so no test depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from retrain.engine import AdapterEngine, EngineError, Predictions, UnknownCustomerError
from retrain.serving.batcher import DeadlineExceededError, DynamicBatcher, UnavailableError

pytestmark = pytest.mark.serving


class CountingEngine(AdapterEngine):
    """The real engine, recording each ``predict`` call (each call is one batch).

    ``gate``: open (set) by default; a test clears it to keep the engine busy with the batch it took.
    """

    calls: list[int]  # rows per call
    scored: list[str]  # every text scored
    started: list[float]  # time.monotonic() as each call passed the gate
    gate: threading.Event

    def predict(self, texts: Sequence[str], customers: Sequence[str]) -> Predictions:
        self.calls.append(len(texts))
        assert self.gate.wait(timeout=30), "the test never opened the engine's gate"
        self.started.append(time.monotonic())
        self.scored.extend(texts)
        return super().predict(texts, customers)

    def reset(self) -> None:
        self.calls, self.scored, self.started = [], [], []
        self.gate.set()


def counting_engine(trained_release: Any, workers: int) -> CountingEngine:
    engine = CountingEngine.from_release_dir(trained_release.release_dir, workers=workers)
    assert isinstance(engine, CountingEngine)
    engine.gate = threading.Event()
    engine.reset()
    return engine


@pytest.fixture(scope="module")
def counting(trained_release: Any) -> CountingEngine:
    """One scoring worker: a test can hold the whole engine busy with one batch."""
    return counting_engine(trained_release, workers=1)


def requests_of(trained_release: Any, count: int, rows: int) -> list[tuple[list[str], list[str]]]:
    texts, customers = trained_release.texts, trained_release.text_customers
    return [(texts[i * rows : (i + 1) * rows], customers[i * rows : (i + 1) * rows]) for i in range(count)]


def all_at_once(batcher: DynamicBatcher, sent: list[tuple[list[str], list[str]]]) -> list[Predictions]:
    """Every request sent concurrently on one event loop; the batcher closed afterwards."""

    async def run() -> list[Predictions]:
        try:
            return await asyncio.gather(*(batcher.predict(t, c) for t, c in sent))
        finally:
            await batcher.close()

    return asyncio.run(run())


def test_concurrent_requests_share_a_batch(counting: CountingEngine, trained_release: Any) -> None:
    batcher = DynamicBatcher(counting, max_batch_size=64, max_wait_ms=200)
    sent = requests_of(trained_release, 12, 3)  # 36 rows of mixed customers, 12 requests
    counting.reset()
    answers = all_at_once(batcher, sent)
    assert sum(counting.calls) == 36
    assert counting.calls == [36], f"12 concurrent requests took {len(counting.calls)} batches"
    for (texts, customers), got in zip(sent, answers, strict=True):
        alone = counting.predict(texts, customers)  # each request scored on its own
        np.testing.assert_allclose(got.scores, alone.scores, atol=1e-5)
        assert got.labels == alone.labels
        assert got.adapter_versions == alone.adapter_versions


def test_batches_respect_the_row_limit(counting: CountingEngine, trained_release: Any) -> None:
    batcher = DynamicBatcher(counting, max_batch_size=8, max_wait_ms=200)
    sent = requests_of(trained_release, 6, 3)  # 18 rows: requests are never split, 2 fit per batch
    counting.reset()
    answers = all_at_once(batcher, sent)
    assert counting.calls == [6, 6, 6]
    assert [len(a.labels) for a in answers] == [3] * 6


def test_a_bad_request_fails_alone(counting: CountingEngine, trained_release: Any) -> None:
    batcher = DynamicBatcher(counting, max_batch_size=64, max_wait_ms=50)
    good = requests_of(trained_release, 3, 2)
    customer = trained_release.customers[0]

    async def run() -> list[Any]:
        try:
            return await asyncio.gather(
                batcher.predict(*good[0]),
                batcher.predict(["a text"], ["no_such_customer"]),
                batcher.predict(*good[1]),
                batcher.predict(["one", "two"], [customer]),
                batcher.predict(*good[2]),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    answers = asyncio.run(run())
    assert isinstance(answers[1], UnknownCustomerError)
    assert answers[1].customers == ["no_such_customer"]
    assert "no_such_customer" in str(answers[1])
    assert isinstance(answers[3], EngineError)
    assert "2 texts but 1 customer ids" in str(answers[3])
    assert all(isinstance(answers[i], Predictions) and len(answers[i].labels) == 2 for i in (0, 2, 4))


def test_settings_are_checked(counting: CountingEngine) -> None:
    with pytest.raises(EngineError, match="max batch size must be at least 1 row, got 0"):
        DynamicBatcher(counting, max_batch_size=0)
    with pytest.raises(EngineError, match="max wait must be 0 ms or more, got -1"):
        DynamicBatcher(counting, max_wait_ms=-1)
    with pytest.raises(
        EngineError, match=r"max queue rows must be at least the max batch size \(64\), got 8"
    ):
        DynamicBatcher(counting, max_batch_size=64, max_queue_rows=8)
    with pytest.raises(EngineError, match="max queue wait must be above 0 ms, got 0"):
        DynamicBatcher(counting, max_queue_ms=0)


def rows_of(trained_release: Any, count: int, start: int = 0) -> tuple[list[str], list[str]]:
    """One request of ``count`` rows (texts numbered, so each row can be traced to the engine)."""
    texts, customers = trained_release.texts, trained_release.text_customers
    rows = [(start + i) % len(texts) for i in range(count)]
    return [f"{texts[i]} #{start + i}" for i in rows], [customers[i] for i in rows]


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Yield to the event loop until ``condition()`` holds (bounded)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the batcher never got there"
        await asyncio.sleep(0.002)


async def send(
    batcher: DynamicBatcher, rows: tuple[list[str], list[str]], **options: Any
) -> asyncio.Task[Predictions]:
    """One request as a task that has reached the batcher (queued, or refused) when this returns."""
    task = asyncio.ensure_future(batcher.predict(*rows, **options))
    await asyncio.sleep(0)  # ``predict`` runs up to its first wait: checked, admitted, queued
    return task


def dropped(model: str, reason: str) -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("retrain_serving_dropped_total", {"model_name": model, "reason": reason})
        or 0.0
    )


def test_the_next_batch_forms_while_one_is_scored(counting: CountingEngine, trained_release: Any) -> None:
    """While the engine holds a batch, a full one is formed and handed over; a partial one goes when free."""
    batcher = DynamicBatcher(counting, max_batch_size=8, max_wait_ms=1000, max_queue_rows=64)
    counting.reset()
    counting.gate.clear()

    async def run() -> list[Predictions]:
        try:
            first = await send(batcher, rows_of(trained_release, 8, 0))
            await until(lambda: counting.calls == [8])  # the engine holds the first batch
            second = await send(batcher, rows_of(trained_release, 8, 100))
            await until(lambda: batcher.queued_rows == 0)  # formed and handed to the engine thread
            third = await send(batcher, rows_of(trained_release, 2, 200))
            await until(lambda: batcher.queued_rows == 2)  # partial: it waits for a free engine
            opened = time.monotonic()
            counting.gate.set()
            answers = await asyncio.gather(first, second, third)
            # The partial batch went as soon as the engine was free, not max_wait (1 s) after.
            assert counting.started[2] - opened < 0.5, counting.started[2] - opened
            return list(answers)
        finally:
            await batcher.close()

    answers = asyncio.run(run())
    assert counting.calls == [8, 8, 2]
    assert [len(a.labels) for a in answers] == [8, 8, 2]


def test_two_workers_score_two_batches_at_once(trained_release: Any) -> None:
    """With two scoring workers a second batch starts while the first is held; a third waits, formed."""
    pair = counting_engine(trained_release, workers=2)
    batcher = DynamicBatcher(pair, max_batch_size=8, max_wait_ms=1000, max_queue_rows=64)
    pair.gate.clear()

    async def run() -> list[Predictions]:
        try:
            first = await send(batcher, rows_of(trained_release, 8, 0))
            second = await send(batcher, rows_of(trained_release, 8, 100))
            await until(lambda: pair.calls == [8, 8])  # both held in the engine at once
            third = await send(batcher, rows_of(trained_release, 8, 200))
            await until(lambda: batcher.queued_rows == 0)  # formed, waiting for a worker
            fourth = await send(batcher, rows_of(trained_release, 2, 300))
            await until(lambda: batcher.queued_rows == 2)  # a backlog: it goes with the next free worker
            assert pair.calls == [8, 8]
            opened = time.monotonic()
            pair.gate.set()
            answers = await asyncio.gather(first, second, third, fourth)
            assert max(pair.started[2:]) - opened < 0.5  # not max_wait (1 s) after
            return list(answers)
        finally:
            await batcher.close()

    answers = asyncio.run(run())
    assert sorted(pair.calls) == [2, 8, 8, 8]
    assert [len(a.labels) for a in answers] == [8, 8, 8, 2]
    for answer, (texts, customers) in zip(
        answers,
        [rows_of(trained_release, n, start) for n, start in ((8, 0), (8, 100), (8, 200), (2, 300))],
        strict=True,
    ):
        alone = pair.predict(texts, customers)
        np.testing.assert_allclose(np.stack(answer.probabilities), np.stack(alone.probabilities), atol=1e-6)


def test_a_batch_takes_its_workers_share_at_once(trained_release: Any) -> None:
    """Two workers, one holding 4 rows: 20 single-row requests arriving together form a batch of 12
    (half the 24 rows in the server) at once, not one of 20 after max_wait; the 8 it left behind go
    with the next free worker, without waiting for company either."""
    pair = counting_engine(trained_release, workers=2)
    batcher = DynamicBatcher(pair, max_batch_size=32, max_wait_ms=1000, max_queue_ms=60000)
    pair.gate.clear()

    async def run() -> list[Predictions]:
        try:
            held = [await send(batcher, rows_of(trained_release, 4, 0))]
            await until(lambda: pair.calls == [4])
            arrived = time.monotonic()
            singles = [
                asyncio.ensure_future(batcher.predict(*rows_of(trained_release, 1, 10 + i)))
                for i in range(20)
            ]
            await until(lambda: pair.calls == [4, 12])
            assert time.monotonic() - arrived < 0.5  # not max_wait (1 s) after
            assert batcher.queued_rows == 8
            opened = time.monotonic()
            pair.gate.set()
            answers = await asyncio.gather(*held, *singles)
            assert pair.started[2] - opened < 0.5, pair.started[2] - opened
            return list(answers)
        finally:
            await batcher.close()

    answers = asyncio.run(run())
    assert pair.calls == [4, 12, 8]
    assert [len(a.labels) for a in answers] == [4] + [1] * 20
    alone = pair.predict(*rows_of(trained_release, 1, 15))
    np.testing.assert_allclose(answers[6].probabilities[0], alone.probabilities[0], atol=1e-6)


async def engine_busy_and_queue_full(
    batcher: DynamicBatcher, counting: CountingEngine, trained_release: Any, seen: int = 0
) -> list[asyncio.Task[Predictions]]:
    """Three requests of 8 rows: one held in the engine, the next handed to it, the third queued.

    ``seen``: the engine calls made before.
    """
    sent = [await send(batcher, rows_of(trained_release, 8, 0))]
    await until(lambda: len(counting.calls) == seen + 1)
    sent.append(await send(batcher, rows_of(trained_release, 8, 8)))
    await until(lambda: batcher.queued_rows == 0)
    sent.append(await send(batcher, rows_of(trained_release, 8, 16)))
    await until(lambda: batcher.queued_rows == 8)
    return sent


def test_a_full_queue_refuses_at_once(counting: CountingEngine, trained_release: Any) -> None:
    batcher = DynamicBatcher(counting, max_batch_size=8, max_wait_ms=0, max_queue_rows=8)
    counting.reset()
    counting.gate.clear()

    async def run() -> None:
        try:
            held = await engine_busy_and_queue_full(batcher, counting, trained_release)
            started = time.monotonic()
            with pytest.raises(
                UnavailableError, match=r"at capacity \(8 rows queued, the limit is 8\)"
            ) as refused:
                await batcher.predict(*rows_of(trained_release, 1, 99))
            assert time.monotonic() - started < 0.1
            assert refused.value.retry_after >= 1
            assert refused.value.http_status == 503
            counting.gate.set()
            assert [len(a.labels) for a in await asyncio.gather(*held)] == [8, 8, 8]
        finally:
            await batcher.close()

    asyncio.run(run())
    assert counting.calls == [8, 8, 8]


def test_the_queue_is_bounded_in_time_too(counting: CountingEngine, trained_release: Any) -> None:
    """Once requests waited longer than ``max_queue_ms`` for the engine, a queued one is not joined."""
    batcher = DynamicBatcher(counting, max_batch_size=8, max_wait_ms=0, max_queue_ms=10)
    counting.reset()
    counting.gate.clear()

    async def run() -> None:
        try:
            first = await send(batcher, rows_of(trained_release, 8, 0))
            await until(lambda: counting.calls == [8])
            waited = await send(batcher, rows_of(trained_release, 8, 8))  # waits behind the first
            await asyncio.sleep(0.05)
            counting.gate.set()
            await asyncio.gather(first, waited)  # the second batch's requests waited ~50 ms
            counting.gate.clear()
            held = await engine_busy_and_queue_full(batcher, counting, trained_release, seen=2)
            with pytest.raises(
                UnavailableError, match=r"requests wait \d+ ms for the engine, the limit is 10 ms"
            ):
                await batcher.predict(*rows_of(trained_release, 1, 99))
            counting.gate.set()
            await asyncio.gather(*held)
        finally:
            await batcher.close()

    asyncio.run(run())
    assert counting.calls == [8, 8, 8, 8, 8]


def test_the_queue_refuses_what_the_engines_pace_says_would_wait_too_long(
    counting: CountingEngine, trained_release: Any
) -> None:
    """After a slow batch (held 0.3 s for 8 rows), 8 rows queued would take ~0.3 s: past 100 ms,
    refused before anyone waited that long (the youngest of the last batch waited ~0 ms)."""
    batcher = DynamicBatcher(counting, max_batch_size=8, max_wait_ms=0, max_queue_ms=100)
    counting.reset()
    counting.gate.clear()

    async def run() -> None:
        try:
            slow = await send(batcher, rows_of(trained_release, 8, 0))
            await until(lambda: counting.calls == [8])
            await asyncio.sleep(0.3)
            counting.gate.set()
            await slow
            counting.gate.clear()
            held = [await send(batcher, rows_of(trained_release, 8, 8))]
            await until(lambda: len(counting.calls) == 2)
            held.append(await send(batcher, rows_of(trained_release, 8, 16)))
            await until(lambda: batcher.queued_rows == 0)  # formed, handed to the engine's line
            held.append(await send(batcher, rows_of(trained_release, 8, 24)))
            await until(lambda: batcher.queued_rows == 8)
            with pytest.raises(
                UnavailableError, match=r"the rows queued would take \d+ ms, the limit is 100 ms"
            ) as refused:
                await batcher.predict(*rows_of(trained_release, 1, 99))
            assert refused.value.retry_after == 1
            counting.gate.set()
            assert [len(a.labels) for a in await asyncio.gather(*held)] == [8, 8, 8]
        finally:
            await batcher.close()

    asyncio.run(run())
    assert counting.calls == [8, 8, 8, 8]


async def held_for(
    batcher: DynamicBatcher, counting: CountingEngine, rows: tuple[list[str], list[str]], seconds: float
) -> None:
    """One request's batch, held in the engine for ``seconds``: the pace learns a slow batch."""
    seen = len(counting.calls)
    counting.gate.clear()
    slow = await send(batcher, rows)
    await until(lambda: len(counting.calls) == seen + 1)
    await asyncio.sleep(seconds)
    counting.gate.set()
    await slow


async def queued_rows_then_taken(
    batcher: DynamicBatcher, counting: CountingEngine, trained_release: Any, start: int, queued: int
) -> None:
    """With the engine busy with one row and ``queued`` rows waiting, one more request is taken, not
    refused: the pace judges the queue short enough."""
    seen = len(counting.calls)
    counting.gate.clear()
    held = [await send(batcher, rows_of(trained_release, 1, start))]
    await until(lambda: len(counting.calls) == seen + 1)  # the engine busy with it
    held += [await send(batcher, rows_of(trained_release, queued, start + 1))]  # queued
    held += [await send(batcher, rows_of(trained_release, 1, start + 1 + queued))]  # taken
    counting.gate.set()
    assert [len(a.labels) for a in await asyncio.gather(*held)] == [1, queued, 1]


def test_the_pace_counts_the_batches_a_queue_forms(counting: CountingEngine, trained_release: Any) -> None:
    """A one-row batch held 0.6 s, then 15 rows scored at once: the pace comes from the 15-row batch
    only, so 4 rows queued wait well under 100 ms and the next request is taken. Counting the lone
    row too (moving sums of both) would have said about 4 x 33 ms, and refused it."""
    batcher = DynamicBatcher(counting, max_batch_size=16, max_wait_ms=0, max_queue_ms=100)
    counting.reset()

    async def run() -> None:
        try:
            await held_for(batcher, counting, rows_of(trained_release, 1, 0), 0.6)
            await batcher.predict(*rows_of(trained_release, 15, 1))
            await queued_rows_then_taken(batcher, counting, trained_release, start=16, queued=4)
        finally:
            await batcher.close()

    asyncio.run(run())
    assert counting.calls == [1, 15, 1, 5]


def test_a_pace_too_slow_is_corrected_by_small_batches(
    counting: CountingEngine, trained_release: Any
) -> None:
    """An 8-row batch held 1 s sets a pace of 125 ms a row. Single rows scored fast then bring it down,
    though no batch as large comes again: 2 rows queued are soon judged well under 100 ms, and the
    next request is taken (at 125 ms a row it would have been refused for good)."""
    batcher = DynamicBatcher(counting, max_batch_size=16, max_wait_ms=0, max_queue_ms=100)
    counting.reset()

    async def run() -> None:
        try:
            await held_for(batcher, counting, rows_of(trained_release, 8, 0), 1.0)
            for row in range(40):
                await batcher.predict(*rows_of(trained_release, 1, 8 + row))
            await queued_rows_then_taken(batcher, counting, trained_release, start=48, queued=2)
        finally:
            await batcher.close()

    asyncio.run(run())
    assert counting.calls == [8] + [1] * 41 + [3]


def test_requests_whose_callers_left_are_not_scored(counting: CountingEngine, trained_release: Any) -> None:
    from retrain.serving.metrics import PrometheusMetrics  # .venv-serve's: collected in the main venv too

    batcher = DynamicBatcher(
        counting, max_batch_size=8, max_wait_ms=0, metrics=PrometheusMetrics("test-callers-left")
    )
    counting.reset()
    counting.gate.clear()
    left, expired = rows_of(trained_release, 3, 300), rows_of(trained_release, 2, 400)
    before = dropped("test-callers-left", "disconnected"), dropped("test-callers-left", "deadline")

    async def run() -> None:
        try:
            busy = await send(batcher, rows_of(trained_release, 8, 0))
            await until(lambda: counting.calls == [8])
            gone = await send(batcher, left)
            kept = await send(batcher, rows_of(trained_release, 1, 500))
            await until(lambda: batcher.queued_rows == 4)
            gone.cancel()  # what the server does when the client disconnects
            await until(lambda: batcher.queued_rows == 1)
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError, match=r"deadline of 0\.050s passed"):
                await batcher.predict(*expired, timeout=0.05)
            assert time.monotonic() - started < 0.5  # answered at its deadline, the engine still busy
            counting.gate.set()
            await asyncio.gather(busy, kept)
        finally:
            await batcher.close()

    asyncio.run(run())
    assert counting.calls == [8, 1]
    assert not set(left[0] + expired[0]) & set(counting.scored)
    assert dropped("test-callers-left", "disconnected") == before[0] + 1
    assert dropped("test-callers-left", "deadline") == before[1] + 1


def test_a_stopping_batcher_refuses_new_requests_and_finishes_queued_ones(
    counting: CountingEngine, trained_release: Any
) -> None:
    batcher = DynamicBatcher(counting, max_batch_size=8, max_wait_ms=0)
    counting.reset()
    counting.gate.clear()

    async def run() -> None:
        try:
            queued = await engine_busy_and_queue_full(batcher, counting, trained_release)
            batcher.stop()
            with pytest.raises(UnavailableError, match="the model server is stopping") as refused:
                await batcher.predict(*rows_of(trained_release, 1))
            assert refused.value.http_status == 503
            counting.gate.set()
            assert [len(a.labels) for a in await asyncio.gather(*queued)] == [8, 8, 8]
        finally:
            await batcher.close()

    asyncio.run(run())
