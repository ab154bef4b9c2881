"""The dynamic batcher alone (no KServe): concurrent requests share forward passes, bad ones fail alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from retrain.engine import AdapterEngine, EngineError, Predictions, UnknownCustomerError
from retrain.serving.batcher import DynamicBatcher

pytestmark = pytest.mark.serving


class CountingEngine(AdapterEngine):
    """The real engine, recording the rows of each ``predict`` call (each call is one batch)."""

    calls: list[int]

    def predict(self, texts: Sequence[str], customers: Sequence[str]) -> Predictions:
        self.calls.append(len(texts))
        return super().predict(texts, customers)


@pytest.fixture(scope="module")
def counting(trained_release: Any) -> CountingEngine:
    engine = CountingEngine.from_release_dir(trained_release.release_dir)
    assert isinstance(engine, CountingEngine)
    engine.calls = []
    return engine


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
    counting.calls.clear()
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
    counting.calls.clear()
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
