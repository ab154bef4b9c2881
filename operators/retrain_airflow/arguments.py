"""Operator arguments that may arrive as rendered templates."""

from __future__ import annotations

from retrain.errors import InputError


def as_flag(value: bool | str) -> bool:
    """A boolean operator argument that may arrive as a rendered template ("True", "false")."""
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false"):
            raise InputError(f"expected true or false, got {value!r}")
        return value.strip().lower() == "true"
    return bool(value)


def as_pack_size(value: int | str | None) -> int | None:
    """The pack size argument: a whole number of at least 1, or None for the suite's choice; a
    rendered template may bring it as text ("32", "None")."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise InputError(f"pack_size must be a whole number of at least 1 or empty, got {value!r}") from None
    if isinstance(value, bool) or size < 1 or str(size) != str(value).strip():
        raise InputError(f"pack_size must be a whole number of at least 1 or empty, got {value!r}")
    return size
