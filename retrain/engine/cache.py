"""Adapters kept in memory, least recently used first out, bounded by their bytes."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from retrain.engine.errors import EngineError
from retrain.engine.weights import AdapterWeights

log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    hits: int = 0
    loads: int = 0
    evictions: int = 0


class AdapterCache:
    """Customer -> :class:`AdapterWeights`, loaded on first use, evicted least recently used first.

    The adapters of the batch being scored stay in even when they alone exceed the budget: the
    overshoot is bounded by one batch's adapters, and the cache shrinks back after that batch.
    """

    def __init__(self, max_bytes: int, load: Callable[[str], AdapterWeights]) -> None:
        if max_bytes <= 0:
            raise EngineError(f"the adapter cache needs a positive byte budget, got {max_bytes} bytes")
        self.max_bytes = max_bytes
        self._load = load
        self._entries: OrderedDict[str, AdapterWeights] = OrderedDict()
        self.bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, customer: object) -> bool:
        return customer in self._entries

    def get_many(self, customers: Sequence[str]) -> dict[str, AdapterWeights]:
        """The adapters of ``customers`` (distinct), loading the missing ones."""
        found = {}
        for customer in customers:
            weights = self._entries.get(customer)
            if weights is None:
                weights = self._load(customer)
                self._entries[customer] = weights
                self.bytes += weights.nbytes
                self.stats.loads += 1
            else:
                self._entries.move_to_end(customer)
                self.stats.hits += 1
            found[customer] = weights
        self._evict(keep=found.keys())
        return found

    def _evict(self, keep: object) -> None:
        for customer in list(self._entries):
            if self.bytes <= self.max_bytes:
                return
            if customer in keep:  # type: ignore[operator]
                continue
            self.bytes -= self._entries.pop(customer).nbytes
            self.stats.evictions += 1
