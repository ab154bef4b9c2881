"""The served model's contract: names and datatypes clients rely on (no KServe import here)."""

from __future__ import annotations

DEFAULT_MODEL_NAME = "retrain"
RELEASE_HEADER = "x-retrain-release-id"  # every REST answer names the release (the manifest's MD5)
INPUTS = ("text", "customer_id")  # both BYTES, shape [N]
OUTPUTS = (("score", "FP64"), ("label", "BYTES"), ("adapter_version", "BYTES"))
