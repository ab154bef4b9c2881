"""Base models of known shapes with random weights, for timings without a weights download.

Timing does not depend on the weights' values: a GPU machine that cannot fetch BERT-base still
times it exactly. The tokenizer is the packaged model's (its small files only), so texts tokenize
as they do in production.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# hidden size, layers, attention heads, intermediate size
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "minilm": (384, 6, 12, 1536),
    "bert-base": (768, 12, 12, 3072),
    "bert-large": (1024, 24, 16, 4096),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def base_model_folder(shape: str, workdir: Path) -> str:
    """The packaged base model for ``packaged``, else a random-weight model of ``shape`` under ``workdir``."""
    from retrain.adapters.model import resolve_base_model

    packaged = resolve_base_model()
    if shape == "packaged":
        return str(packaged)
    from transformers import BertConfig, BertForSequenceClassification

    hidden, layers, heads, intermediate = SHAPES[shape]
    folder = workdir / f"base-{shape}"
    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    for name in TOKENIZER_FILES:
        if (packaged / name).is_file():
            shutil.copy(packaged / name, folder / name)
    return str(folder)
