"""Validation of names that are spliced into SQL text (tables, columns, branches).

Values are always bound as parameters; only identifiers, which SQL cannot bind, pass through here.
"""

from __future__ import annotations

import re

from retrain.errors import InputError

_SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Git-style ref names, restricted to a safe alphabet: no "..", no "//", no trailing "/" or ".lock".
_BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


class InvalidIdentifierError(InputError):
    """A table, column or branch name that is not allowed to reach SQL."""


def sql_identifier(name: str, kind: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise naming the ``kind`` (table, column...)."""
    if not isinstance(name, str) or not _SQL_IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(
            f"invalid {kind} name {name!r}: use letters, digits and '_' (not starting with a digit)"
        )
    return name


def branch_name(name: str) -> str:
    """Return ``name`` if it is a valid Dolt branch name, else raise."""
    if (
        not isinstance(name, str)
        or not _BRANCH_NAME.fullmatch(name)
        or ".." in name
        or "//" in name
        or name.endswith(("/", ".lock", "."))
    ):
        raise InvalidIdentifierError(
            f"invalid branch name {name!r}: use letters, digits, '.', '_', '-' and '/' separators"
        )
    return name
