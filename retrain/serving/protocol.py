"""The served model's contract: names and datatypes clients rely on (no KServe import here)."""

from __future__ import annotations

import re

from retrain.errors import InputError

DEFAULT_MODEL_NAME = "retrain"
RELEASE_HEADER = "x-retrain-release-id"  # every REST answer names the release (the manifest's MD5)
INPUTS = ("text", "customer_id")  # both BYTES, shape [N]
OUTPUTS = (("score", "FP64"), ("label", "BYTES"), ("adapter_version", "BYTES"))
INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)/infer")  # REST inference, once versions are mapped
# Texts are truncated to 64 tokens; a text is cut to its first characters before it is tokenized,
# so one huge text cannot hold the engine (and every request batched behind it) for seconds.
# 64 tokens of ordinary text take a few hundred characters: the cut never reaches them.
MAX_TEXT_CHARS = 10_000
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MODEL_NAME_RULE = "1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"


def model_name(value: str) -> str:
    """``value`` if it can be the V2 name in ``/v2/models/<name>``, else :class:`InputError` with the rule."""
    if not isinstance(value, str) or not _MODEL_NAME.fullmatch(value):
        raise InputError(f"invalid model name {value!r}: use {MODEL_NAME_RULE}")
    return value


def is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate: JSON allows ``"\\ud800"``, UTF-8 cannot encode it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
