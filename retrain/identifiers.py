"""Validation of names that reach SQL text, MLflow filter strings, paths and HTML.

SQL values are always bound as parameters; only identifiers, which SQL cannot bind, pass through
here. Customer ids and release ids are checked where they enter (CLI, operators, app routes, tags
read back from MLflow), so that a crafted one never reaches a filter string, a path or a page.
"""

from __future__ import annotations

import re

from retrain.errors import InputError

_SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
SQL_IDENTIFIER_RULE = "letters, digits and '_' (not starting with a digit)"
# Git-style ref names, restricted to a safe alphabet: no "..", no "//", no trailing "/" or ".lock".
_BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
# Customer ids name MLflow models, directories and Argo parameters: no quotes, slashes or spaces.
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
CUSTOMER_ID_RULE = "1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
_RELEASE_ID = re.compile(r"[0-9a-f]{32}")
RELEASE_ID_RULE = "32 lowercase hex characters, the MD5 of a release manifest"


def _json_schema_pattern(rule: re.Pattern[str]) -> str:
    """``rule`` as a JSON Schema pattern (DAG params): anchored, since JSON Schema searches, and with
    no final newline, which Python's ``$`` (jsonschema's) would let through."""
    return f"^{rule.pattern}$(?!\\n)"


SQL_IDENTIFIER_PATTERN = _json_schema_pattern(_SQL_IDENTIFIER)
CUSTOMER_ID_PATTERN = _json_schema_pattern(_CUSTOMER_ID)
RELEASE_ID_PATTERN = _json_schema_pattern(_RELEASE_ID)


class InvalidIdentifierError(InputError):
    """A table, column or branch name that is not allowed to reach SQL."""


def sql_identifier(name: str, kind: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise naming the ``kind`` (table, column...)."""
    if not isinstance(name, str) or not _SQL_IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(f"invalid {kind} name {name!r}: use {SQL_IDENTIFIER_RULE}")
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


class InvalidCustomerIdError(InvalidIdentifierError):
    """A customer id outside :data:`CUSTOMER_ID_RULE`."""

    def __init__(self, customer: object) -> None:
        super().__init__(f"invalid customer id {customer!r}: use {CUSTOMER_ID_RULE}")
        self.customer = customer


def customer_id(value: str) -> str:
    """Return ``value`` if it is a valid customer id, else raise naming the rule."""
    if not isinstance(value, str) or not _CUSTOMER_ID.fullmatch(value):
        raise InvalidCustomerIdError(value)
    return value


def is_customer_id(value: object) -> bool:
    return isinstance(value, str) and _CUSTOMER_ID.fullmatch(value) is not None


def release_id(value: str) -> str:
    """Return ``value`` if it is a release id, else raise naming the rule."""
    if not is_release_id(value):
        raise InvalidIdentifierError(f"invalid release id {value!r}: use {RELEASE_ID_RULE}")
    return value


def is_release_id(value: object) -> bool:
    return isinstance(value, str) and _RELEASE_ID.fullmatch(value) is not None
