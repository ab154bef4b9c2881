"""The slot cache on its own: least recently used out, a batch's adapters kept, pools grown by doubling,
slots held by running batches never evicted."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from retrain.engine.cache import AdapterCache, Resident
from retrain.engine.errors import AdapterFileError, EngineError


class Pools:
    """Records what the cache asks of the engine's pools: which customer sits in which slot."""

    def __init__(self) -> None:
        self.slots: list[str | None] = [None]
        self.grown: list[int] = []

    def load(self, customer: str, slot: int) -> list[str]:
        if customer == "broken":
            raise AdapterFileError("customer 'broken': adapter file is unreadable")
        self.slots[slot] = customer
        return ["routine", "urgent"]

    def grow(self, slots: int) -> None:
        self.slots += [None] * (slots - len(self.slots))
        self.grown.append(slots)


def cache_of(pools: Pools, slots: int, adapters: int = 100) -> AdapterCache:
    return AdapterCache(slots * 10, 10, adapters=adapters, slots=1, load=pools.load, grow=pools.grow)


def use(cache: AdapterCache, customers: Sequence[str]) -> dict[str, Resident]:
    """The slots of one batch that runs and finishes at once."""
    with cache.holding(customers) as found:
        return found


def test_pools_grow_by_doubling_up_to_the_budget_then_the_least_recently_used_leaves() -> None:
    pools = Pools()
    cache = cache_of(pools, slots=5)
    for customer in "abcde":
        use(cache, [customer])
    assert pools.grown == [2, 4, 5]
    use(cache, ["a"])  # b is now the least recently used
    use(cache, ["f"])
    assert "b" not in cache
    assert pools.slots.count("f") == 1
    assert (len(cache), cache.bytes, cache.stats.evictions, cache.stats.loads) == (5, 50, 1, 6)


def test_a_batch_keeps_its_own_adapters_and_a_failed_load_gives_its_slot_back() -> None:
    pools = Pools()
    cache = cache_of(pools, slots=2)
    use(cache, ["a", "b"])
    found = use(cache, ["b", "c"])  # a leaves, not b, though b was used before a
    assert {c: r.slot for c, r in found.items()} == {"b": pools.slots.index("b"), "c": pools.slots.index("c")}
    with pytest.raises(AdapterFileError, match="broken"):
        use(cache, ["c", "broken"])
    assert len(cache) == 1
    use(cache, ["c", "d"])  # the freed slot is used again; c stays
    assert sorted(s for s in pools.slots if s) == ["c", "d"]
    with pytest.raises(EngineError, match="3 adapters at once, but the pools hold 2"):
        use(cache, ["x", "y", "z"])


def test_pools_never_outnumber_the_release_and_a_budget_below_one_slot_is_refused() -> None:
    assert cache_of(Pools(), slots=50, adapters=3).max_slots == 3
    with pytest.raises(EngineError, match="budget of 9 bytes is below one adapter's slot of 10 bytes"):
        AdapterCache(9, 10, adapters=3, slots=1, load=Pools().load, grow=Pools().grow)


def test_a_held_slot_is_not_evicted_and_a_batch_needing_it_waits_for_its_release() -> None:
    pools = Pools()
    cache = cache_of(pools, slots=1)
    entered, got = threading.Event(), {}

    def second_batch() -> None:
        entered.set()
        got.update(use(cache, ["b"]))

    with cache.holding(["a"]) as held:
        waiting = threading.Thread(target=second_batch)
        waiting.start()
        assert entered.wait(5)
        waiting.join(0.2)
        assert waiting.is_alive(), "b took a's slot while a's batch was running"
        assert pools.slots[held["a"].slot] == "a"
    waiting.join(5)
    assert not waiting.is_alive()
    assert pools.slots == ["b"]
    assert "a" not in cache
    assert got["b"].slot == 0
