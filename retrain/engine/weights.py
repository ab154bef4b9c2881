"""One adapter's bytes as the engine holds them: LoRA factors per target module plus the classifier head.

Read straight from the files PEFT writes (``adapter_config.json``, ``adapter_model.safetensors``)
and the suite's ``labels.json``, without building a PEFT model: an adapter costs its own ~300 kB,
not a copy of the base model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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
class AdapterWeights:
    """One customer's adapter, stacked so that a batch gathers it in one copy per tensor.

    ``delta_m(x) = x @ down_t[m] @ up_t[m]`` for target layer ``modules[m]``: PEFT's
    ``lora_B(lora_A(x)) * lora_alpha / r``, pre-transposed, with the scaling folded into ``up_t``.
    """

    customer: str
    version: str
    labels: list[str]
    modules: tuple[
        str, ...
    ]  # target layers in the base model, e.g. bert.encoder.layer.0.attention.self.query
    down_t: Any  # torch.Tensor [modules, in_features, r]  (lora_A transposed)
    up_t: Any  # torch.Tensor [modules, r, out_features]  (lora_B x scaling, transposed)
    head_weight: Any  # torch.Tensor [num_labels, hidden]
    head_bias: Any  # torch.Tensor [num_labels]

    @property
    def rank(self) -> int:
        return int(self.down_t.shape[2])

    @property
    def nbytes(self) -> int:
        tensors = (self.down_t, self.up_t, self.head_weight, self.head_bias)
        return sum(int(t.numel() * t.element_size()) for t in tensors)

    @classmethod
    def load(
        cls, adapter_dir: Path, *, customer: str, version: str, device: str, dtype: Any
    ) -> AdapterWeights:
        """Read and check one adapter; every failure names the customer and the file."""
        import torch
        from safetensors import SafetensorError, safe_open

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
        if not isinstance(labels, list):
            raise fail(LABELS_FILE, "is not a list of labels")
        try:
            # The final tensors are allocated first and filled one small tensor at a time: no
            # full-size temporaries, so loading thousands of adapters leaves no holes in the heap.
            with safe_open(str(adapter_dir / WEIGHTS_FILE), framework="pt") as weights:
                keys = _Keys.of(list(weights.keys()), fail)
                shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in keys.all()}
                keys.check(shapes, rank, len(labels), fail)
                in_features, out_features = shapes[keys.down[0]][1], shapes[keys.up[0]][0]
                down_t = torch.empty((len(keys.modules), in_features, rank), dtype=dtype, device=device)
                up_t = torch.empty((len(keys.modules), rank, out_features), dtype=dtype, device=device)
                for i, (down, up) in enumerate(zip(keys.down, keys.up, strict=True)):
                    down_t[i].copy_(weights.get_tensor(down).T)
                    up_t[i].copy_(weights.get_tensor(up).T)
                # Copies: a tensor straight from get_tensor may keep the whole file mapped in memory.
                head_weight = weights.get_tensor(keys.head_weight).to(device=device, dtype=dtype, copy=True)
                head_bias = weights.get_tensor(keys.head_bias).to(device=device, dtype=dtype, copy=True)
        except (OSError, SafetensorError) as error:
            raise fail(WEIGHTS_FILE, f"is unreadable ({error})") from None
        up_t.mul_(alpha / rank)
        return cls(
            customer=customer,
            version=version,
            labels=[str(label) for label in labels],
            modules=keys.modules,
            down_t=down_t,
            up_t=up_t,
            head_weight=head_weight,
            head_bias=head_bias,
        )


@dataclass(frozen=True)
class _Keys:
    """The tensor names of a PEFT adapter file, sorted by target layer."""

    modules: tuple[str, ...]
    down: tuple[str, ...]  # lora_A of each module
    up: tuple[str, ...]  # lora_B of each module
    head_weight: str
    head_bias: str

    def all(self) -> list[str]:
        return [*self.down, *self.up, self.head_weight, self.head_bias]

    @classmethod
    def of(cls, keys: list[str], fail: Callable[[str, str], AdapterFileError]) -> _Keys:
        factors: dict[str, dict[str, str]] = {}
        head: dict[str, str] = {}
        for key in keys:
            name = key.removeprefix(_PREFIX)
            if match := _LORA_KEY.fullmatch(name):
                factors.setdefault(match["module"], {})[match["factor"]] = key
            elif match := _HEAD_KEY.fullmatch(name):
                head[match["part"]] = key
            else:
                raise fail(WEIGHTS_FILE, f"holds an unexpected tensor {key!r}")
        if set(head) != {"weight", "bias"}:
            raise fail(WEIGHTS_FILE, "lacks the classifier head (classifier.weight and classifier.bias)")
        if not factors:
            raise fail(WEIGHTS_FILE, "holds no LoRA factors")
        incomplete = sorted(m for m, pair in factors.items() if set(pair) != {"A", "B"})
        if incomplete:
            raise fail(WEIGHTS_FILE, f"lacks lora_A or lora_B for {', '.join(incomplete)}")
        modules = tuple(sorted(factors))
        return cls(
            modules,
            tuple(factors[m]["A"] for m in modules),
            tuple(factors[m]["B"] for m in modules),
            head["weight"],
            head["bias"],
        )

    def check(
        self,
        shapes: dict[str, tuple[int, ...]],
        rank: int,
        labels: int,
        fail: Callable[[str, str], AdapterFileError],
    ) -> None:
        pairs = {(shapes[d], shapes[u]) for d, u in zip(self.down, self.up, strict=True)}
        if len(pairs) > 1:
            raise fail(
                WEIGHTS_FILE, f"targets layers of different shapes {sorted(pairs)}; the engine stacks one"
            )
        ((down, up),) = pairs
        if len(down) != 2 or len(up) != 2 or down[0] != rank or up[1] != rank:
            raise fail(WEIGHTS_FILE, f"has LoRA factors of shapes {down} and {up}, not of rank r={rank}")
        if shapes[self.head_weight][0] != labels or shapes[self.head_bias] != (labels,):
            raise fail(WEIGHTS_FILE, f"has a head of shape {shapes[self.head_weight]} for {labels} labels")


def _read_json(path: Path, error: AdapterFileError) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise error from None
