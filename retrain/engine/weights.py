"""One adapter's files as the engine reads them: PEFT's ``adapter_config.json`` and
``adapter_model.safetensors`` plus the suite's ``labels.json``, copied straight into a slot of the
engine's pools (no PEFT model, no per-adapter tensors kept: an adapter costs its slot's bytes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.adapters.model import LABELS_FILE
from retrain.engine.errors import AdapterFileError

if TYPE_CHECKING:
    from retrain.engine.lora import SlotModel

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

Fail = Callable[[str, str], AdapterFileError]


@dataclass(frozen=True)
class AdapterLayout:
    """What an adapter file holds, read from its header alone: what the engine's pools must fit."""

    layers: dict[str, tuple[int, int]]  # target layer path -> (in_features, out_features)
    rank: int
    labels: int
    hidden: int  # the head's input width

    @classmethod
    def read(cls, adapter_dir: Path, customer: str) -> AdapterLayout:
        from safetensors import SafetensorError, safe_open

        fail = _failure(adapter_dir, customer)
        try:
            with safe_open(str(adapter_dir / WEIGHTS_FILE), framework="pt") as weights:
                keys = _Keys.of(list(weights.keys()), fail)
                shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in keys.all()}
        except (OSError, SafetensorError) as error:
            raise fail(WEIGHTS_FILE, f"is unreadable ({error})") from None
        return keys.layout(shapes, fail)


def load_into(pools: SlotModel, slot: int, adapter_dir: Path, customer: str) -> list[str]:
    """Check one adapter's files, copy it into ``slot`` of every pool and return its labels.

    A target layer the adapter does not use gets an empty slot; every failure names the customer
    and the file at fault.
    """
    from safetensors import SafetensorError, safe_open

    fail = _failure(adapter_dir, customer)
    config = _read_json(adapter_dir / CONFIG_FILE, fail(CONFIG_FILE, "is missing or not JSON"))
    labels = _read_json(adapter_dir / LABELS_FILE, fail(LABELS_FILE, "is missing or not JSON"))
    if config.get("peft_type") != "LORA":
        raise fail(CONFIG_FILE, f"is not a LoRA adapter (peft_type {config.get('peft_type')!r})")
    for option, plain in _UNSUPPORTED.items():
        if config.get(option, plain) not in (plain, None, {}, False):
            raise fail(CONFIG_FILE, f"uses {option}={config[option]!r}, which the engine does not support")
    if not isinstance(labels, list):
        raise fail(LABELS_FILE, "is not a list of labels")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    try:
        with safe_open(str(adapter_dir / WEIGHTS_FILE), framework="pt") as weights:
            keys = _Keys.of(list(weights.keys()), fail)
            shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in keys.all()}
            layout = keys.layout(shapes, fail)
            _check_fit(layout, pools, rank, len(labels), fail)
            modules = dict(zip(keys.modules, zip(keys.down, keys.up, strict=True), strict=True))
            for path, layer in pools.layers.items():
                if path in modules:
                    down, up = modules[path]
                    layer.load_slot(slot, weights.get_tensor(down).T, weights.get_tensor(up).T, alpha / rank)
                else:
                    layer.clear_slot(slot)
            pools.head.load_slot(
                slot, weights.get_tensor(keys.head_weight), weights.get_tensor(keys.head_bias)
            )
    except (OSError, SafetensorError) as error:
        raise fail(WEIGHTS_FILE, f"is unreadable ({error})") from None
    return [str(label) for label in labels]


def _check_fit(layout: AdapterLayout, pools: SlotModel, rank: int, labels: int, fail: Fail) -> None:
    if layout.rank != rank:
        raise fail(WEIGHTS_FILE, f"has LoRA factors of rank {layout.rank}, not the configured r={rank}")
    if layout.labels != labels:
        raise fail(WEIGHTS_FILE, f"has a head for {layout.labels} labels, but labels.json lists {labels}")
    for path, (fan_in, fan_out) in layout.layers.items():
        layer = pools.layers.get(path)
        if layer is None or (layer.base.in_features, layer.base.out_features) != (fan_in, fan_out):
            raise fail(
                WEIGHTS_FILE,
                f"targets {path} as a {fan_in} -> {fan_out} linear layer, which the base model does not have",
            )
    pool_rank, (pool_labels, hidden) = _pool_rank(pools), tuple(pools.head.weight.shape[1:])
    if layout.rank > pool_rank or layout.labels > pool_labels or layout.hidden != hidden:
        raise fail(
            WEIGHTS_FILE,
            f"has rank {layout.rank} and {layout.labels} labels over width {layout.hidden}; the engine's "
            f"pools, sized from the release at start, hold rank {pool_rank} and {pool_labels} labels "
            f"over width {hidden}",
        )


def _pool_rank(pools: SlotModel) -> int:
    return int(next(iter(pools.layers.values())).down.shape[2]) if pools.layers else 0


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
    def of(cls, keys: list[str], fail: Fail) -> _Keys:
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

    def layout(self, shapes: dict[str, tuple[int, ...]], fail: Fail) -> AdapterLayout:
        """Each layer's shape, one rank for all (lora_A [r, in], lora_B [out, r]) and the head's size."""
        layers, ranks = {}, set()
        for module, down, up in zip(self.modules, self.down, self.up, strict=True):
            a, b = shapes[down], shapes[up]
            if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
                raise fail(WEIGHTS_FILE, f"has LoRA factors of shapes {a} and {b} for {module}")
            layers[module] = (a[1], b[0])
            ranks.add(a[0])
        if len(ranks) > 1:
            raise fail(WEIGHTS_FILE, f"has LoRA factors of several ranks {sorted(ranks)}")
        weight, bias = shapes[self.head_weight], shapes[self.head_bias]
        if len(weight) != 2 or bias != weight[:1]:
            raise fail(WEIGHTS_FILE, f"has a head of shapes {weight} and {bias}")
        return AdapterLayout(layers, ranks.pop(), weight[0], weight[1])


def _failure(adapter_dir: Path, customer: str) -> Fail:
    def fail(file: str, problem: str) -> AdapterFileError:
        return AdapterFileError(f"customer {customer!r}: adapter file {adapter_dir / file} {problem}")

    return fail


def _read_json(path: Path, error: AdapterFileError) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise error from None
