"""Many LoRA adapters in one pass over a shared base model, each row on its own adapter's slot.

The base model's layers run once for the whole batch; each row adds its own adapter's low-rank
delta and uses its own classifier head (the S-LoRA / Punica idea, for an encoder classifier). The
adapters live in preallocated slot pools, as vLLM keeps them: a batch carries one integer per row,
its slot, and every swapped layer gathers that row's factors with one index.

The same modules serve scoring (pools filled from adapter files, no gradients) and packed training
(pools are the parameters of a whole pack of customers; a row's gradient reaches only its slot).
The slot vector reaches the layers through a context variable set for the length of one
:meth:`SlotModel.routed` block, not through attributes left on the shared modules: each thread (and
each asyncio task) sees its own, so several threads can run batches through one model at once.

A layer takes either padded rows ``[rows, tokens, in]`` (the model's own forward, training) or a
batch's tokens packed row after row ``[tokens, in]`` (:mod:`retrain.engine.packed`); for the latter
the route carries the :class:`Grid` that says where each token sits in a padded ``[rows, width]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Grid:
    """Where a batch's packed tokens sit on a padded ``[rows, width]`` grid."""

    spots: torch.Tensor  # [tokens]: row * width + position
    rows: int
    width: int

    def place(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[tokens, n]`` onto the grid, ``[rows, width, n]``; zero where a row has no token."""
        grid = tokens.new_zeros(self.rows * self.width, tokens.shape[-1])
        return grid.index_copy_(0, self.spots, tokens).view(self.rows, self.width, -1)

    def tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """``[rows, width, n]`` back to the tokens, ``[tokens, n]``."""
        return grid.reshape(self.rows * self.width, -1).index_select(0, self.spots)


@dataclass(frozen=True)
class Route:
    """Which slot each row of the batch this thread is running takes, set by :meth:`SlotModel.routed`."""

    slots: torch.Tensor  # [rows]
    grid: Grid | None  # while the layers see packed tokens, [tokens, in]


_ROUTE: ContextVar[Route | None] = ContextVar("retrain_slot_route", default=None)


class SlotLoraLinear(nn.Module):
    """A base ``nn.Linear`` plus, per row, its slot's delta ``scale[s] * dropout(x) @ down[s] @ up[s]``.

    That is PEFT's ``lora_B(lora_A(dropout(x))) * lora_alpha / r`` with ``down = lora_A.T`` and
    ``up = lora_B.T``. A slot of lower rank than the pool is zero past its rank; an empty slot is zero.
    """

    def __init__(
        self,
        base: nn.Linear,
        slots: int,
        rank: int,
        *,
        trainable: bool = False,
        dropout: float = 0.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        dtype, device = dtype or base.weight.dtype, base.weight.device
        down = torch.zeros(slots, base.in_features, rank, dtype=dtype, device=device)
        up = torch.zeros(slots, rank, base.out_features, dtype=dtype, device=device)
        self.down = nn.Parameter(down, requires_grad=trainable)
        self.up = nn.Parameter(up, requires_grad=trainable)
        self.scale: torch.Tensor
        self.register_buffer("scale", torch.zeros(slots, dtype=dtype, device=device))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x)
        route = _ROUTE.get()
        if route is None:  # outside routed(): the base layer alone
            return out
        if route.grid is None:  # padded rows, [rows, tokens, in] (or [rows, in])
            shape = x.shape
            delta = self._delta(self.dropout(x).reshape(shape[0], -1, shape[-1]), route.slots)
            return out + delta.reshape(*shape[:-1], -1)
        # Packed tokens, [tokens, in]: each row's factors apply on the padded grid, then back to tokens.
        return out + route.grid.tokens(self._delta(route.grid.place(self.dropout(x)), route.slots))

    def _delta(self, rows: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """``[rows, tokens, in]`` to each row's low-rank delta ``[rows, tokens, out]``."""
        low = torch.bmm(rows, self.down.index_select(0, slots))
        low = low * self.scale.index_select(0, slots)[:, None, None]
        return torch.bmm(low, self.up.index_select(0, slots))

    def load_slot(self, slot: int, down: torch.Tensor, up: torch.Tensor, scale: float) -> None:
        """Copy one adapter's ``down`` [in, r] and ``up`` [r, out] into ``slot``, zero past rank r."""
        rank = down.shape[1]
        with torch.no_grad():
            self.down[slot, :, :rank].copy_(down)
            self.down[slot, :, rank:].zero_()
            self.up[slot, :rank].copy_(up)
            self.up[slot, rank:].zero_()
            self.scale[slot] = scale

    def clear_slot(self, slot: int) -> None:
        """Empty ``slot``: zero delta, for an adapter that does not target this layer."""
        with torch.no_grad():
            self.down[slot].zero_()
            self.up[slot].zero_()
            self.scale[slot] = 0.0

    def resize(self, slots: int) -> None:
        """Hold ``slots`` slots, keeping the first ones' contents; new slots are empty."""
        self.down = nn.Parameter(_resized(self.down, slots, 0.0), requires_grad=self.down.requires_grad)
        self.up = nn.Parameter(_resized(self.up, slots, 0.0), requires_grad=self.up.requires_grad)
        self.scale = _resized(self.scale, slots, 0.0)


class SlotHead(nn.Module):
    """Per-row classifier heads: ``weight[s] @ pooled + bias[s]`` for the row's slot ``s``.

    A slot with fewer labels than the pool is wide answers ``-inf`` for the labels it lacks, so its
    softmax gives them 0 and its loss sends them no gradient.
    """

    def __init__(
        self, slots: int, labels: int, hidden: int, *, dtype: Any, device: Any, trainable: bool = False
    ) -> None:
        super().__init__()
        weight = torch.zeros(slots, labels, hidden, dtype=dtype, device=device)
        bias = torch.zeros(slots, labels, dtype=dtype, device=device)
        self.weight = nn.Parameter(weight, requires_grad=trainable)
        self.bias = nn.Parameter(bias, requires_grad=trainable)
        self.absent: torch.Tensor  # 0 for a slot's labels, -inf past them
        absent = torch.full((slots, labels), float("-inf"), dtype=dtype, device=device)
        self.register_buffer("absent", absent)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        route = _ROUTE.get()
        if route is None:
            raise RuntimeError("SlotHead scores rows of slots: call the model inside routed()")
        slots = route.slots
        weight = self.weight.index_select(0, slots)
        bias = self.bias.index_select(0, slots) + self.absent.index_select(0, slots)
        return torch.baddbmm(bias.unsqueeze(2), weight, pooled.unsqueeze(2)).squeeze(2)

    def load_slot(self, slot: int, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Copy one adapter's head, ``weight`` [labels, hidden] and ``bias`` [labels], into ``slot``."""
        labels = weight.shape[0]
        with torch.no_grad():
            self.weight[slot, :labels].copy_(weight)
            self.weight[slot, labels:].zero_()
            self.bias[slot, :labels].copy_(bias)
            self.bias[slot, labels:].zero_()
            self.absent[slot, :labels] = 0.0
            self.absent[slot, labels:] = float("-inf")

    def resize(self, slots: int) -> None:
        """Hold ``slots`` slots, keeping the first ones' contents; new slots are empty."""
        self.weight = nn.Parameter(_resized(self.weight, slots, 0.0), requires_grad=self.weight.requires_grad)
        self.bias = nn.Parameter(_resized(self.bias, slots, 0.0), requires_grad=self.bias.requires_grad)
        self.absent = _resized(self.absent, slots, float("-inf"))


@dataclass(frozen=True)
class SlotModel:
    """A base sequence classifier with its target layers and its head swapped for slot pools."""

    model: nn.Module
    layers: dict[str, SlotLoraLinear]  # target layer path -> its pools, in the order given
    head: SlotHead

    @classmethod
    def build(
        cls,
        model: nn.Module,
        targets: Sequence[str],
        *,
        slots: int,
        rank: int,
        labels: int,
        trainable: bool = False,
        dropout: float = 0.0,
        dtype: torch.dtype | None = None,
    ) -> SlotModel:
        """Swap ``targets`` (paths of ``nn.Linear`` layers) and the ``classifier`` head, in place.

        The pools take the base layers' dtype unless ``dtype`` is given (training keeps them fp32
        under a bf16 base).
        """
        classifier = model.get_submodule("classifier")
        if not isinstance(classifier, nn.Linear):
            raise TypeError(f"the model's classifier is {type(classifier).__name__}, not nn.Linear")
        layers = {}
        for path in targets:
            base = model.get_submodule(path)
            if not isinstance(base, nn.Linear):
                raise TypeError(f"{path} is {type(base).__name__}, not nn.Linear")
            layers[path] = SlotLoraLinear(
                base, slots, rank, trainable=trainable, dropout=dropout, dtype=dtype
            )
            swap_module(model, path, layers[path])
        head = SlotHead(
            slots,
            labels,
            classifier.in_features,
            dtype=dtype or classifier.weight.dtype,
            device=classifier.weight.device,
            trainable=trainable,
        )
        swap_module(model, "classifier", head)
        return cls(model, layers, head)

    @contextmanager
    def routed(self, slots: torch.Tensor, grid: Grid | None = None) -> Iterator[None]:
        """Within the block, each forward of the model in this thread sends row ``i`` through slot
        ``slots[i]``; other threads' forwards are not affected.

        :param grid: the layers see a batch's packed tokens, laid out so.
        """
        token = _ROUTE.set(Route(slots, grid))
        try:
            yield
        finally:
            _ROUTE.reset(token)

    @property
    def slot_bytes(self) -> int:
        """Bytes one slot takes across every pool."""
        pools = [t for layer in self.layers.values() for t in (layer.down, layer.up, layer.scale)]
        pools += [self.head.weight, self.head.bias, self.head.absent]
        return sum(t[0].numel() * t.element_size() for t in pools)

    def resize(self, slots: int) -> None:
        """Grow (or shrink) every pool to ``slots`` slots, keeping the first ones' contents."""
        for layer in self.layers.values():
            layer.resize(slots)
        self.head.resize(slots)


def _resized(pool: torch.Tensor, slots: int, fill: float) -> torch.Tensor:
    """``pool`` with ``slots`` rows along its first axis: the old rows kept, new ones ``fill``."""
    grown = pool.new_full((slots, *pool.shape[1:]), fill)
    kept = min(slots, pool.shape[0])
    with torch.no_grad():
        grown[:kept].copy_(pool[:kept])
    return grown


def swap_module(model: nn.Module, path: str, replacement: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, replacement)
