"""One adapter's bytes as the engine holds them: LoRA factors per target module plus the classifier head.

Read straight from the files PEFT writes (``adapter_config.json``, ``adapter_model.safetensors``)
and the suite's ``labels.json``, without building a PEFT model: an adapter costs its own ~300 kB,
not a copy of the base model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.adapters.model import LABELS_FILE
from retrain.engine.errors import AdapterFileError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<factor>[AB])\.weight")
_HEAD_KEY = re.compile(r"(?P<module>classifier|score)(?:\.modules_to_save\.default)?\.(?P<part>weight|bias)")
# PEFT options whose math the engine does not reproduce: refusing is better than a silent difference.
_UNSUPPORTED = {
    "use_dora": False,
    "fan_in_fan_out": False,
    "use_rslora": False,
    "bias": "none",
    "rank_pattern": {},
    "alpha_pattern": {},
    "layers_to_transform": None,
}


@dataclass(frozen=True)
class LoraFactors:
    """``delta(x) = x @ down_t @ up_t``: PEFT's ``lora_B(lora_A(x)) * lora_alpha / r``, pre-transposed
    for batched matmuls, with the scaling folded into ``up_t``."""

    down_t: Any  # torch.Tensor [in_features, r]  (lora_A transposed)
    up_t: Any  # torch.Tensor [r, out_features]  (lora_B x scaling, transposed)

    @property
    def rank(self) -> int:
        return int(self.down_t.shape[1])


@dataclass(frozen=True)
class AdapterWeights:
    customer: str
    version: str
    labels: list[str]
    lora: dict[
        str, LoraFactors
    ]  # module path in the base model, e.g. bert.encoder.layer.0.attention.self.query
    head_weight: Any  # torch.Tensor [num_labels, hidden]
    head_bias: Any  # torch.Tensor [num_labels]

    @property
    def nbytes(self) -> int:
        tensors = [self.head_weight, self.head_bias]
        tensors += [t for f in self.lora.values() for t in (f.down_t, f.up_t)]
        return sum(int(t.numel() * t.element_size()) for t in tensors)

    @classmethod
    def load(
        cls, adapter_dir: Path, *, customer: str, version: str, device: str, dtype: Any
    ) -> AdapterWeights:
        """Read and check one adapter; every failure names the customer and the file."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        def fail(file: str, problem: str) -> AdapterFileError:
            return AdapterFileError(f"customer {customer!r}: adapter file {adapter_dir / file} {problem}")

        config = _read_json(adapter_dir / CONFIG_FILE, fail(CONFIG_FILE, "is missing or not JSON"))
        labels = _read_json(adapter_dir / LABELS_FILE, fail(LABELS_FILE, "is missing or not JSON"))
        if config.get("peft_type") != "LORA":
            raise fail(CONFIG_FILE, f"is not a LoRA adapter (peft_type {config.get('peft_type')!r})")
        for option, plain in _UNSUPPORTED.items():
            if config.get(option, plain) not in (plain, None, {}, False):
                raise fail(
                    CONFIG_FILE, f"uses {option}={config[option]!r}, which the engine does not support"
                )
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
        try:
            tensors = load_file(str(adapter_dir / WEIGHTS_FILE))
        except (OSError, SafetensorError) as error:
            raise fail(WEIGHTS_FILE, f"is unreadable ({error})") from None
        factors: dict[str, dict[str, Any]] = {}
        head: dict[str, Any] = {}
        for key, tensor in tensors.items():
            name = key.removeprefix(_PREFIX)
            if match := _LORA_KEY.fullmatch(name):
                factors.setdefault(match["module"], {})[match["factor"]] = tensor
            elif match := _HEAD_KEY.fullmatch(name):
                head[match["part"]] = tensor
            else:
                raise fail(WEIGHTS_FILE, f"holds an unexpected tensor {key!r}")
        if set(head) != {"weight", "bias"} or not isinstance(labels, list):
            raise fail(WEIGHTS_FILE, "lacks the classifier head (classifier.weight and classifier.bias)")
        if head["weight"].shape[0] != len(labels) or head["bias"].shape != (len(labels),):
            raise fail(
                WEIGHTS_FILE, f"has a head of shape {tuple(head['weight'].shape)} for {len(labels)} labels"
            )
        lora = {}
        for module, pair in sorted(factors.items()):
            if set(pair) != {"A", "B"} or pair["A"].shape[0] != rank or pair["B"].shape[1] != rank:
                raise fail(WEIGHTS_FILE, f"has incomplete or mis-shaped LoRA factors for {module} (r={rank})")
            lora[module] = LoraFactors(
                down_t=pair["A"].T.to(device=device, dtype=dtype).contiguous(),
                up_t=(pair["B"] * (alpha / rank)).T.to(device=device, dtype=dtype).contiguous(),
            )
        if not lora:
            raise fail(WEIGHTS_FILE, "holds no LoRA factors")
        return cls(
            customer=customer,
            version=version,
            labels=[str(label) for label in labels],
            lora=lora,
            head_weight=head["weight"].to(device=device, dtype=dtype),
            head_bias=head["bias"].to(device=device, dtype=dtype),
        )


def _read_json(path: Path, error: AdapterFileError) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise error from None
