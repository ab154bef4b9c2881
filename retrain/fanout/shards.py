"""How an Argo fan-out splits customers into pods, kept free of Hera so the triggerer imports it cheaply.

Pods (``retrain train-shard``), the submission and the progress read from node statuses all use
these functions, so a failed pod maps back to exactly the customers it trained.
"""

from __future__ import annotations

from collections.abc import Sequence

from retrain.errors import InputError


def shard_count(customers: int, max_pods: int, pack_size: int = 1) -> int:
    """One pod per pack of ``pack_size`` customers, up to ``max_pods``; above it, larger shards
    (each pod trains its shard a pack at a time, refilling slots as customers finish)."""
    return max(1, min(-(-customers // max(1, pack_size)), max_pods))


def shard_of(customers: Sequence[str], shard: int, shards: int) -> list[str]:
    """The customers shard ``shard`` of ``shards`` trains: a stable round-robin over the sorted list."""
    if not 0 <= shard < shards:
        raise InputError(f"shard {shard} is outside 0..{shards - 1}")
    return sorted(customers)[shard::shards]


def shard_size(customers: int, shard: int, shards: int) -> int:
    """How many customers shard ``shard`` trains, knowing only how many there are in all."""
    return len(range(shard, customers, shards))
