"""The packed forward: a batch's tokens row after row, the model's own numbers without its padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrain.adapters.model import default_base_model, load_base
from retrain.engine import EngineError
from retrain.engine.batches import packed, tokenized_batches
from retrain.engine.lora import SlotLoraLinear, SlotModel
from retrain.engine.packed import check_packable, packed_forward

TEXTS = [
    "refund please",
    "my card was charged twice for the same order and nobody answers the phone",
    "hi",
    "the parcel arrived broken, the box was wet and the glass inside had cracked",
    "where is my order",
]


def test_a_batch_lays_its_rows_out_packed_and_on_a_grid() -> None:
    batch = packed(np.array([7, 9]), [[101, 5, 6, 102], [101, 102]], pin=False)
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


def test_the_packed_forward_gives_the_models_own_logits_and_hidden_states() -> None:
    tokenizer, model, _ = load_base(default_base_model(), num_labels=3)
    model = model.eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier.weight)  # a head that tells rows apart
    (batch,) = tokenized_batches(tokenizer, TEXTS, first_row=0, batch_size=8, pin=False)
    assert len(set(batch.lengths.tolist())) > 2  # rows of different lengths: padding to skip
    padded = tokenizer([TEXTS[row] for row in batch.rows], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**padded, output_hidden_states=True)
        logits, hidden = packed_forward(model, batch)
    assert torch.allclose(logits, expected.logits, atol=1e-5)
    last = expected.hidden_states[-1][padded["attention_mask"].bool()]  # real tokens, row after row
    assert torch.allclose(hidden, last, atol=1e-4)


def test_a_slot_layer_gives_packed_tokens_their_rows_delta() -> None:
    torch.manual_seed(1)
    layer = SlotLoraLinear(torch.nn.Linear(6, 5), slots=3, rank=2)
    for slot in range(3):
        layer.load_slot(slot, torch.randn(6, 2), torch.randn(2, 5), scale=0.5 + slot)
    slots = torch.tensor([2, 0])
    grid = torch.randn(2, 3, 6)  # row 0 has 3 tokens, row 1 has 2
    batch = packed(np.array([0, 1]), [[1, 2, 3], [4, 5]], pin=False)
    tokens = grid.view(6, 6).index_select(0, batch.spots)
    model = SlotModel(torch.nn.Module(), {"layer": layer}, head=None)  # type: ignore[arg-type]
    with torch.no_grad():
        with model.routed(slots):
            expected = layer(grid).view(6, 5).index_select(0, batch.spots)
        with model.routed(slots, spots=batch.spots, width=batch.width):
            assert torch.allclose(layer(tokens), expected, atol=1e-6)


def test_a_model_that_is_not_bert_is_refused_naming_it() -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=50, dim=8, n_layers=1, n_heads=2, hidden_dim=16)
    with pytest.raises(
        EngineError, match=r"base model tiny-distil: DistilBertForSequenceClassification is not"
    ):
        check_packable(DistilBertForSequenceClassification(config), "tiny-distil")
