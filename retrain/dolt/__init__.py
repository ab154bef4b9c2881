"""Dolt access: one repository interface over doltlite files and Dolt sql-server."""

from retrain.dolt.errors import (
    DoltConnectionError,
    DoltError,
    DoltLockTimeoutError,
    DoltQueryError,
    DoltUnreachableError,
    InvalidLocationError,
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
    "DoltLockTimeoutError",
    "DoltQueryError",
    "DoltRepository",
    "DoltUnreachableError",
    "InvalidLocationError",
    "NotADoltDatabaseError",
    "UnknownBranchError",
    "UnknownColumnError",
    "UnknownCommitError",
    "UnknownTableError",
    "WatermarkError",
]
