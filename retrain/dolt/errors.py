"""Errors raised by the Dolt layer. Each message names the thing that was wrong."""

from __future__ import annotations

from collections.abc import Iterable

from retrain.errors import ConflictError, InputError, NotFoundError, RetrainError, ServiceUnreachableError


class DoltError(RetrainError):
    """Base class for every error of :mod:`retrain.dolt`."""


class DoltConnectionError(DoltError):
    """The repository could not be opened or reached (missing file, not a Dolt database, server down)."""


class NotADoltDatabaseError(DoltConnectionError):
    """The file exists but is not a usable doltlite database: a stock SQLite file, a FIFO or device,
    a truncated or torn file."""


class CorruptDatabaseError(NotADoltDatabaseError):
    """The doltlite engine found the file damaged while reading it; the message names the file."""


class InvalidLocationError(DoltConnectionError, InputError):
    """The repository location itself is malformed: an unknown scheme, a bad port or option."""


class DoltUnreachableError(DoltConnectionError, ServiceUnreachableError):
    """The sql-server refused the connection or did not answer in time, or the doltlite engine
    process died; trying again later can succeed."""


class DoltLockTimeoutError(DoltError, ConflictError):
    """Another holder kept the lock of :meth:`~retrain.dolt.repository.DoltRepository.exclusive`
    past the wait."""


class DoltQueryError(DoltError):
    """The backend rejected a statement; carries the backend's own message."""


class UnknownBranchError(DoltError, NotFoundError):
    def __init__(self, branch: str, known: Iterable[str] = ()) -> None:
        names = sorted(known)
        hint = f" (branches: {', '.join(names)})" if names else ""
        super().__init__(f"unknown branch {branch!r}{hint}")
        self.branch = branch


class UnknownCommitError(DoltError, NotFoundError):
    def __init__(self, commit: str, reason: str = "not found in the repository") -> None:
        super().__init__(f"unknown commit {commit!r}: {reason}")
        self.commit = commit


class UnknownTableError(DoltError, NotFoundError):
    def __init__(self, table: str, commit: str) -> None:
        super().__init__(f"table {table!r} does not exist at commit {commit}")
        self.table = table
        self.commit = commit


class UnknownColumnError(DoltError, NotFoundError):
    def __init__(self, column: str, table: str, commit: str, known: Iterable[str]) -> None:
        super().__init__(
            f"column {column!r} does not exist in table {table!r} at commit {commit} "
            f"(columns: {', '.join(known)})"
        )
        self.column = column
        self.table = table


class WatermarkError(DoltError, ConflictError):
    """A watermark move that would lose or replay work (for example moving it backwards)."""
