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
from retrain.engine.lora import Grid

if TYPE_CHECKING:
    from retrain.engine.batches import Batch
    from retrain.engine.lora import SlotModel


def check_packable(model: Any, name: str) -> None:
    """Raise :class:`EngineError` unless ``model`` is a BERT sequence classifier (what this forward runs)."""
    from transformers import BertModel

    if (
        not isinstance(model.base_model, BertModel)
        or model.config.is_decoder
        or not isinstance(getattr(model, "classifier", None), torch.nn.Linear)
    ):
        raise EngineError(
            f"base model {name}: {type(model).__name__} is not a BERT encoder (BertModel) with a linear "
            "`classifier` head; the engine serves BERT-style sequence classifiers"
        )


def packed_forward(pools: SlotModel, batch: Batch, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's logits ``[rows, labels]`` and the last hidden states of its tokens ``[tokens, hidden]``,
    row ``i`` through slot ``slots[i]``; ``batch``'s tensors on the model's device."""
    model: Any = pools.model  # a BertForSequenceClassification (check_packable)
    bert = model.base_model
    key_mask = batch.key_mask[:, None, None, :]  # [rows, 1, 1, width]: a row's queries see its tokens
    grid = batch.grid()
    with pools.routed(slots, grid):  # the encoder sees packed tokens
        hidden = bert.embeddings(
            input_ids=batch.token_ids[None],
            position_ids=batch.positions[None],
            token_type_ids=torch.zeros_like(batch.token_ids)[None],
        )[0]
        for layer in bert.encoder.layer:
            hidden = _layer(layer, hidden, grid, key_mask)
    with pools.routed(slots):  # the pooler and the head see one vector per row
        pooled = bert.pooler(hidden.index_select(0, batch.starts)[:, None])  # each row's [CLS]
        return model.classifier(model.dropout(pooled)), hidden


def _layer(layer: Any, hidden: torch.Tensor, grid: Grid, key_mask: torch.Tensor) -> torch.Tensor:
    """One BertLayer over packed tokens ``[tokens, hidden]``."""
    attention = layer.attention.self
    # Query, key and value onto the grid in one copy: [rows, width, 3 * heads * size].
    projected = torch.cat([attention.query(hidden), attention.key(hidden), attention.value(hidden)], dim=-1)
    on_grid = grid.place(projected).view(grid.rows, grid.width, 3, attention.num_attention_heads, -1)
    query, key, value = on_grid.permute(2, 0, 3, 1, 4)  # each [rows, heads, width, size]
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, scale=attention.scaling)
    hidden = layer.attention.output(grid.tokens(context.transpose(1, 2)), hidden)
    return layer.output(layer.intermediate(hidden), hidden)  # type: ignore[no-any-return]
