"""Rows into batches of token ids: each text tokenized once, rows of similar length together.

A chunk of rows is tokenized in one call (the tokenizers library encodes it in Rust, outside the
GIL), ordered by token count and cut into padded batches, so little of a batch is padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_LENGTH = 64  # tokens, as in training and AdapterClassifier.encode


@dataclass(frozen=True)
class Batch:
    """Rows ``rows`` (indices into their request) as padded token ids and their attention mask."""

    rows: np.ndarray
    input_ids: Any  # torch.Tensor [rows, tokens], int64
    attention_mask: Any  # torch.Tensor [rows, tokens], int64


def tokenized_batches(
    tokenizer: Any, texts: Sequence[str], *, first_row: int, batch_size: int, pin: bool
) -> list[Batch]:
    """``texts`` (the request's rows from ``first_row`` on) in batches of ``batch_size`` rows by length.

    :param pin: page-lock the tensors, so their copy to a GPU runs beside the host's work.
    """
    import torch

    if not texts:  # an empty request: the tokenizer refuses an empty list
        return []
    ids = tokenizer(
        list(texts),
        truncation=True,
        max_length=MAX_LENGTH,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        tokens = np.full((len(rows), width), tokenizer.pad_token_id, dtype=np.int64)
        for out, row in enumerate(rows):
            tokens[out, : lengths[row]] = ids[row]
        mask = (np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int64)
        input_ids, attention_mask = torch.from_numpy(tokens), torch.from_numpy(mask)
        if pin:
            input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
        batches.append(Batch(rows + first_row, input_ids, attention_mask))
    return batches
