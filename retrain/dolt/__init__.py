"""Dolt access: one repository interface over doltlite files and Dolt sql-server."""

from retrain.dolt.errors import (
    DoltConnectionError,
    DoltError,
    DoltQueryError,
    NotADoltDatabaseError,
    UnknownBranchError,
    UnknownColumnError,
    UnknownCommitError,
    UnknownTableError,
    WatermarkError,
)
from retrain.dolt.repository import ChangedKeys, CommitInfo, DoltRepository

__all__ = [
    "ChangedKeys",
    "CommitInfo",
    "DoltConnectionError",
    "DoltError",
    "DoltQueryError",
    "DoltRepository",
    "NotADoltDatabaseError",
    "UnknownBranchError",
    "UnknownColumnError",
    "UnknownCommitError",
    "UnknownTableError",
    "WatermarkError",
]
