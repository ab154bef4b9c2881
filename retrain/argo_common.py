"""What every WorkflowTemplate of the suite shares: labels, clean-up, and MLflow credentials by reference."""

from __future__ import annotations

from typing import Any

from hera.workflows import SecretEnv
from hera.workflows import models as m


def template_settings(generated_by: str, active_deadline_seconds: int) -> dict[str, Any]:
    """Keyword arguments of ``WorkflowTemplate``: labels, the do-not-edit note, pod GC, deadline, TTL."""
    return {
        "labels": {"app.kubernetes.io/part-of": "retrain"},
        "annotations": {"retrain/generated-by": f"{generated_by} (retrain templates); do not edit"},
        "pod_gc": m.PodGC(strategy="OnPodSuccess"),
        "active_deadline_seconds": active_deadline_seconds,
        "ttl_strategy": m.TTLStrategy(seconds_after_completion=7 * 24 * 3600),
    }


def mlflow_env(secret: str) -> list[SecretEnv]:
    """``MLFLOW_TRACKING_URI`` (and an optional token) from Kubernetes secret ``secret``, never inlined."""
    return [
        SecretEnv(name="MLFLOW_TRACKING_URI", secret_name=secret, secret_key="tracking-uri"),
        SecretEnv(
            name="MLFLOW_TRACKING_TOKEN", secret_name=secret, secret_key="tracking-token", optional=True
        ),
    ]
