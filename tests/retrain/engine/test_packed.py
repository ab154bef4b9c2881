"""The packed forward: a batch's tokens row after row, the model's own numbers without its padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrain.adapters.model import default_base_model, load_base
from retrain.engine import EngineError
from retrain.engine.batches import pack_rows, tokenized_batches
from retrain.engine.lora import SlotModel
from retrain.engine.packed import check_packable, packed_forward

TEXTS = [
    "refund please",
    "my card was charged twice for the same order and nobody answers the phone",
    "hi",
    "the parcel arrived broken, the box was wet and the glass inside had cracked",
    "where is my order",
]


def test_a_batch_lays_its_rows_out_packed_and_on_a_grid() -> None:
    batch = pack_rows(np.array([7, 9]), [[101, 5, 6, 102], [101, 102]], pin=False)
    assert batch.token_ids.tolist() == [101, 5, 6, 102, 101, 102]
    assert batch.positions.tolist() == [0, 1, 2, 3, 0, 1]
    assert batch.spots.tolist() == [0, 1, 2, 3, 4, 5]  # row 1 starts at 1 * width
    assert batch.starts.tolist() == [0, 4]
    assert batch.width == 4
    assert batch.key_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert [ids.tolist() for ids in batch.row_token_ids()] == [[101, 5, 6, 102], [101, 102]]
    alone = batch.take([1])
    assert alone.rows.tolist() == [9]
    assert (alone.token_ids.tolist(), alone.width, alone.spots.tolist()) == ([101, 102], 2, [0, 1])


# Slot layers in the first layer's attention and in the pooler, which sees one vector per row.
TARGETS = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.value"]
TARGETS += ["bert.pooler.dense"]


def test_the_packed_forward_gives_the_padded_forwards_logits_and_hidden_states() -> None:
    tokenizer, model, _ = load_base(default_base_model(), num_labels=2)
    pools = SlotModel.build(model.eval(), TARGETS, slots=3, rank=2, labels=3)
    torch.manual_seed(0)
    for slot in range(3):
        for layer in pools.layers.values():
            down = torch.randn(layer.base.in_features, 2) / 10
            layer.load_slot(slot, down, torch.randn(2, layer.base.out_features) / 10, scale=1.0 + slot)
        pools.head.load_slot(
            slot, torch.randn(3 - slot % 2, pools.head.weight.shape[2]), torch.randn(3 - slot % 2)
        )
    (batch,) = tokenized_batches(tokenizer, TEXTS, first_row=0, batch_size=8, pin=False)
    assert len(set(batch.lengths.tolist())) > 2  # rows of different lengths: padding to skip
    slots = torch.tensor([2, 0, 1, 1, 0])
    padded = tokenizer([TEXTS[row] for row in batch.rows], padding=True, return_tensors="pt")
    with torch.inference_mode():
        with pools.routed(slots):
            expected = model(**padded, output_hidden_states=True)
        logits, hidden = packed_forward(pools, batch, slots)
    assert torch.allclose(logits, expected.logits, atol=1e-5)
    last = expected.hidden_states[-1][padded["attention_mask"].bool()]  # real tokens, row after row
    assert torch.allclose(hidden, last, atol=1e-4)


def test_a_model_that_is_not_bert_is_refused_naming_it() -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=50, dim=8, n_layers=1, n_heads=2, hidden_dim=16)
    with pytest.raises(
        EngineError, match=r"base model tiny-distil: DistilBertForSequenceClassification is not"
    ):
        check_packable(DistilBertForSequenceClassification(config), "tiny-distil")
