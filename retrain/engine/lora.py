"""Many adapters in one forward pass: the base model's layers run once for the whole batch, and each
row adds its own adapter's low-rank delta and classifier head (the S-LoRA / Punica idea, for an
encoder classifier).

The base model is used as Hugging Face builds it; only its LoRA target layers and its classifier
are swapped for the modules below, which read the current batch's per-row factors.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiLoraLinear(nn.Module):
    """A base ``nn.Linear`` plus, per row, ``x @ down_t[row] @ up_t[row]`` (zero for rows without one)."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.factors: tuple[torch.Tensor, torch.Tensor] | None = None  # [B, in, r], [B, r, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x)
        if self.factors is None:
            return out
        down_t, up_t = self.factors
        return out + torch.bmm(torch.bmm(x, down_t), up_t)  # x: [B, tokens, in]


class MultiHead(nn.Module):
    """Per-row classifier heads, padded to the batch's widest label set with -inf logits (softmax 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.heads: tuple[torch.Tensor, torch.Tensor] | None = None  # [B, labels, hidden], [B, labels]

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.heads is None:
            raise RuntimeError("MultiHead called outside a batch")
        weight, bias = self.heads
        return torch.baddbmm(bias.unsqueeze(2), weight, pooled.unsqueeze(2)).squeeze(2)


def swap_module(model: nn.Module, path: str, replacement: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, replacement)
