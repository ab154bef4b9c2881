"""Which customers' adapters sit in the engine's slot pools: least recently used first out.

The cache hands out slot numbers; the engine's ``load`` copies an adapter into one and ``grow``
enlarges the pools. Pools grow (doubling) as adapters arrive, up to the most slots the byte budget
holds, so memory follows the adapters in use and never passes the budget.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
        self.stats = CacheStats()

    @property
    def bytes(self) -> int:
        """Bytes of the slots holding an adapter."""
        return len(self._entries) * self.slot_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, customer: object) -> bool:
        return customer in self._entries

    def residents(self, customers: Sequence[str]) -> dict[str, Resident]:
        """The slots of ``customers`` (distinct, at most :attr:`max_slots`), loading the missing ones.

        Evicts only adapters outside ``customers``: a batch's own adapters stay in.
        """
        if len(customers) > self.max_slots:
            raise EngineError(f"{len(customers)} adapters at once, but the pools hold {self.max_slots}")
        found: dict[str, Resident] = {}
        for customer in customers:  # first the resident ones, so that no load evicts them
            if (resident := self._entries.get(customer)) is not None:
                self._entries.move_to_end(customer)
                self.stats.hits += 1
                found[customer] = resident
        for customer in customers:
            if customer in found:
                continue
            slot = self._take_slot(keep=found)
            try:
                resident = Resident(slot, self._load(customer, slot))
            except BaseException:
                self._free.append(slot)
                raise
            self.stats.loads += 1
            self._entries[customer] = found[customer] = resident
        return found

    def _take_slot(self, keep: dict[str, Resident]) -> int:
        if not self._free and self.slots < self.max_slots:
            grown = min(self.max_slots, max(2 * self.slots, 1))
            self._grow(grown)
            self._free = list(range(grown - 1, self.slots - 1, -1))
            self.slots = grown
        if self._free:
            return self._free.pop()
        victim = next(c for c in self._entries if c not in keep)  # least recently used
        self.stats.evictions += 1
        return self._entries.pop(victim).slot
