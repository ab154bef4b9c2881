"""Which customers' adapters sit in the engine's slot pools: least recently used first out.

The cache hands out slot numbers; the engine's ``load`` copies an adapter into one and ``grow``
enlarges the pools. Pools grow (doubling) as adapters arrive, up to the most slots the byte budget
holds, so memory follows the adapters in use and never passes the budget. Batches run in several
threads at once: a batch holds its adapters' slots while it runs, and a held slot is never evicted.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from retrain.engine.errors import EngineError

log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    hits: int = 0
    loads: int = 0
    evictions: int = 0


@dataclass(frozen=True)
class Resident:
    """A customer's adapter in the pools: its slot, and its labels in the head's order."""

    slot: int
    labels: list[str]


class AdapterCache:
    """Customer -> :class:`Resident`, loaded on first use, evicted least recently used first.

    :param max_bytes: the budget for slots; the pools never hold more slots than it pays for, nor
        more than ``adapters`` (the release's count).
    :param slot_bytes: one slot's bytes across every pool; ``slots``: the slots allocated now.
    :param load: copies a customer's adapter into a slot and returns its labels.
    :param grow: enlarges the pools to the given number of slots.
    """

    def __init__(
        self,
        max_bytes: int,
        slot_bytes: int,
        *,
        adapters: int,
        slots: int,
        load: Callable[[str, int], list[str]],
        grow: Callable[[int], None],
    ) -> None:
        if max_bytes <= 0:
            raise EngineError(f"the adapter cache needs a positive byte budget, got {max_bytes} bytes")
        if max_bytes < slot_bytes:
            raise EngineError(
                f"the adapter cache's budget of {max_bytes} bytes is below one adapter's slot of "
                f"{slot_bytes} bytes"
            )
        self.max_bytes = max_bytes
        self.max_slots = min(max_bytes // slot_bytes, max(adapters, 1))
        self.slot_bytes = slot_bytes
        self.slots = slots
        self._load = load
        self._grow = grow
        self._entries: OrderedDict[str, Resident] = OrderedDict()  # least recently used first
        self._free = list(range(slots - 1, -1, -1))
        self._held: Counter[str] = Counter()  # customer -> batches running on its slot now
        self._released = threading.Condition()  # guards the cache; notified when a batch lets go
        self.stats = CacheStats()

    @property
    def bytes(self) -> int:
        """Bytes of the slots holding an adapter."""
        return len(self._entries) * self.slot_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, customer: object) -> bool:
        return customer in self._entries

    @contextmanager
    def holding(self, customers: Sequence[str]) -> Iterator[dict[str, Resident]]:
        """The slots of ``customers`` (distinct, at most :attr:`max_slots`), loaded if missing and
        kept in place within the block. When running batches hold the slots it would need, it waits
        for one of them to finish (so a thread must not nest two blocks).

        Evicts only adapters outside ``customers`` that no running batch holds.
        """
        if len(customers) > self.max_slots:
            raise EngineError(f"{len(customers)} adapters at once, but the pools hold {self.max_slots}")
        with self._released:
            loads = self.stats.loads
            while (found := self._residents(customers)) is None:
                self._released.wait()
            self.stats.hits += len(found) - (self.stats.loads - loads)
            self._held.update(found.keys())
        try:
            yield found
        finally:
            with self._released:
                self._held.subtract(found.keys())
                self._released.notify_all()

    def _residents(self, customers: Sequence[str]) -> dict[str, Resident] | None:
        """The slots of ``customers``, loading the missing ones; None while running batches hold the
        slots that loading them needs."""
        found: dict[str, Resident] = {}
        for customer in customers:  # first the resident ones, so that no load evicts them
            if (resident := self._entries.get(customer)) is not None:
                self._entries.move_to_end(customer)
                found[customer] = resident
        for customer in customers:
            if customer in found:
                continue
            slot = self._take_slot(keep=found)
            if slot is None:
                return None
            try:
                resident = Resident(slot, self._load(customer, slot))
            except BaseException:
                self._free.append(slot)
                raise
            self.stats.loads += 1
            self._entries[customer] = found[customer] = resident
        return found

    def _take_slot(self, keep: dict[str, Resident]) -> int | None:
        if not self._free and self.slots < self.max_slots:
            grown = min(self.max_slots, max(2 * self.slots, 1))
            self._grow(grown)
            self._free = list(range(grown - 1, self.slots - 1, -1))
            self.slots = grown
        if self._free:
            return self._free.pop()
        # The least recently used adapter that neither this batch nor a running one needs.
        victim = next((c for c in self._entries if c not in keep and not self._held[c]), None)
        if victim is None:
            return None
        self.stats.evictions += 1
        return self._entries.pop(victim).slot
