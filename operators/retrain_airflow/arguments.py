"""Operator arguments that may arrive as rendered templates."""

from __future__ import annotations


def as_flag(value: bool | str) -> bool:
    """A boolean operator argument that may arrive as a rendered template ("True", "false")."""
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.strip().lower() == "true"
    return bool(value)
