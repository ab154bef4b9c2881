"""Rows into batches of token ids: each text tokenized once, rows of similar length together.

A chunk of rows is tokenized in one call (the tokenizers library encodes it in Rust, outside the
GIL), ordered by token count and cut into batches. A batch keeps its rows' tokens one row after
another, without padding (:mod:`retrain.engine.packed` runs the model over them), plus each token's
spot in a padded ``[rows, width]`` grid for attention, which mixes tokens within a row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch comes with the first batch, not with this module
    from retrain.engine.lora import Grid

MAX_LENGTH = 64  # tokens, as in training and AdapterClassifier.encode


@dataclass(frozen=True)
class Batch:
    """Rows ``rows`` (indices into their request) as packed token ids; tensors are torch int64 but
    ``key_mask`` (bool), on the host until :meth:`to` moves them."""

    rows: np.ndarray
    lengths: np.ndarray  # [rows] tokens per row, special tokens included
    token_ids: Any  # [tokens]: row after row
    positions: Any  # [tokens]: each token's position within its row
    spots: Any  # [tokens]: each token's place in the [rows, width] grid, row * width + position
    starts: Any  # [rows]: where each row's first token ([CLS]) sits in token_ids
    key_mask: Any  # [rows, width] bool: which places of the grid hold a token

    @property
    def width(self) -> int:
        """The longest row's token count: the grid's width."""
        return int(self.key_mask.shape[1])

    def grid(self) -> Grid:
        """Where the tokens sit on the padded ``[rows, width]`` grid (on the tensors' device)."""
        from retrain.engine.lora import Grid

        return Grid(self.spots, len(self.rows), self.width)

    def row_token_ids(self) -> list[np.ndarray]:
        """Each row's token ids (on the host)."""
        return np.split(self.token_ids.cpu().numpy(), np.cumsum(self.lengths)[:-1])

    def take(self, picked: Sequence[int]) -> Batch:
        """The rows at positions ``picked`` of this batch, as a batch of their own."""
        ids = self.row_token_ids()
        return pack_rows(self.rows[list(picked)], [ids[i] for i in picked], pin=self.token_ids.is_pinned())

    def to(self, device: str) -> Batch:
        """The tensors on ``device``; copied beside the host's work when they are pinned."""
        fields = ("token_ids", "positions", "spots", "starts", "key_mask")
        moved = {name: getattr(self, name).to(device, non_blocking=True) for name in fields}
        return dataclasses.replace(self, **moved)


def pack_rows(rows: np.ndarray, ids: Sequence[Sequence[int]] | Sequence[np.ndarray], *, pin: bool) -> Batch:
    """Rows ``rows`` whose token ids are ``ids`` as one batch.

    :param pin: page-lock the tensors, so their copy to a GPU runs beside the host's work.
    """
    import torch

    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max())
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    row_of_token = np.repeat(np.arange(len(ids)), lengths)
    positions = np.arange(int(lengths.sum())) - starts[row_of_token]
    tensors = [
        torch.from_numpy(array)
        for array in (
            np.concatenate([np.asarray(row, dtype=np.int64) for row in ids]),
            positions,
            row_of_token * width + positions,
            starts,
            np.arange(width)[None, :] < lengths[:, None],
        )
    ]
    if pin:
        tensors = [tensor.pin_memory() for tensor in tensors]
    return Batch(rows, lengths, *tensors)


def tokenized_batches(
    tokenizer: Any, texts: Sequence[str], *, first_row: int, batch_size: int, pin: bool
) -> list[Batch]:
    """``texts`` (the request's rows from ``first_row`` on) in batches of ``batch_size`` rows by length.

    :param pin: page-lock the tensors, so their copy to a GPU runs beside the host's work.
    """
    if not texts:  # an empty request: the tokenizer refuses an empty list
        return []
    ids = tokenizer(
        list(texts),
        truncation=True,
        max_length=MAX_LENGTH,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    order = np.argsort([len(row) for row in ids], kind="stable")
    return [
        pack_rows(rows + first_row, [ids[row] for row in rows], pin=pin)
        for rows in (order[start : start + batch_size] for start in range(0, len(order), batch_size))
    ]
