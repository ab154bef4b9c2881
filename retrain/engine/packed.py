"""A BERT classifier's forward over a batch's real tokens only: no work on padding but in attention.

Rows of a batch differ in length. The model's own forward runs every layer over rows x longest row
tokens; here the tokens of all rows sit one after another (``[tokens, hidden]``), so the linear
layers, which are most of the work, see no padding. Only attention, which mixes the tokens of a
row, lays them out on a padded ``[rows, width]`` grid with a key mask, as variable-length attention
does in TEI. The model's own modules and weights run, in the same order, so the numbers are the
model's own. The slot layers (:mod:`retrain.engine.lora`) read the same grid from their route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from retrain.engine.errors import EngineError

if TYPE_CHECKING:
    from retrain.engine.batches import Batch


def check_packable(model: Any, name: str) -> None:
    """Raise :class:`EngineError` unless ``model`` is a BERT sequence classifier (what this forward runs)."""
    from transformers import BertModel

    if not isinstance(model.base_model, BertModel) or not isinstance(
        getattr(model, "classifier", None), torch.nn.Linear
    ):
        raise EngineError(
            f"base model {name}: {type(model).__name__} is not a BERT encoder with a linear `classifier` "
            "head; the engine serves BERT-style sequence classifiers"
        )


def packed_forward(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's logits ``[rows, labels]`` and the last hidden states of its tokens ``[tokens, hidden]``.

    ``batch``'s tensors on the model's device; call inside the model's ``routed(..., spots=...)``.
    """
    bert = model.base_model
    hidden = bert.embeddings(
        input_ids=batch.token_ids[None],
        position_ids=batch.positions[None],
        token_type_ids=torch.zeros_like(batch.token_ids)[None],
    )[0]
    key_mask = batch.key_mask[:, None, None, :]  # [rows, 1, 1, width]: a row's queries see its tokens
    for layer in bert.encoder.layer:
        hidden = _layer(layer, hidden, batch, key_mask)
    pooled = bert.pooler(hidden.index_select(0, batch.starts)[:, None])  # each row's [CLS]
    return model.classifier(model.dropout(pooled)), hidden


def _layer(layer: Any, hidden: torch.Tensor, batch: Batch, key_mask: torch.Tensor) -> torch.Tensor:
    attention = layer.attention.self
    rows, width = batch.key_mask.shape

    def on_grid(tokens: torch.Tensor) -> torch.Tensor:  # [tokens, heads * size] -> [rows, heads, width, size]
        grid = tokens.new_zeros(rows * width, tokens.shape[-1]).index_copy_(0, batch.spots, tokens)
        return grid.view(rows, width, attention.num_attention_heads, -1).transpose(1, 2)

    query, key, value = (
        on_grid(projection(hidden)) for projection in (attention.query, attention.key, attention.value)
    )
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, scale=attention.scaling)
    context = context.transpose(1, 2).reshape(rows * width, -1).index_select(0, batch.spots)
    hidden = layer.attention.output(context, hidden)
    return layer.output(layer.intermediate(hidden), hidden)  # type: ignore[no-any-return]
