"""One interface to a Dolt repository, whichever backend serves it.

>>> repo = DoltRepository.open("var/training.db")
>>> head = repo.head("main")
>>> repo.changed_keys("examples", "customer_id", previous, head).keys
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import pandas as pd

from retrain.dolt.connections import DoltConnection, QueryResult, connect
from retrain.dolt.dialects import SqlValue, Statement, WhereClause
from retrain.dolt.errors import (
    DoltQueryError,
    UnknownBranchError,
    UnknownColumnError,
    UnknownCommitError,
    UnknownTableError,
)
from retrain.identifiers import InvalidIdentifierError, branch_name, sql_identifier


@dataclass(frozen=True)
class CommitInfo:
    commit_hash: str
    committer: str
    email: str
    date: str
    message: str

    def log_line(self) -> str:
        """One line for a listing: hash, date, committer, message, with control characters escaped
        (a newline or terminal escape in a message must not forge or recolour lines)."""
        return "  ".join(printable(v) for v in (self.commit_hash, self.date, self.committer, self.message))


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, tab, ESC, ...) escaped as Python would."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True)
class ChangedKeys:
    """Keys whose rows changed between two commits, or "everything" with the reason why."""

    keys: frozenset[str]
    all_changed: bool = False
    reason: str | None = None

    @classmethod
    def everything(cls, reason: str) -> ChangedKeys:
        return cls(keys=frozenset(), all_changed=True, reason=reason)

    def to_json(self) -> dict[str, object]:
        if self.all_changed:
            return {"all": True, "reason": self.reason}
        return {"keys": sorted(self.keys)}

    def describe(self, named: int = 10) -> str:
        """For a log line: the count and the first ``named`` keys, whatever the number of keys."""
        if self.all_changed:
            return f"every key ({self.reason})"
        keys = sorted(self.keys)
        more = f" and {len(keys) - named} more" if len(keys) > named else ""
        return f"{len(keys)} key(s): {', '.join(keys[:named])}{more}"


class DoltRepository:
    """Read and version training tables in Dolt. Commit arguments accept a hash or a branch name."""

    def __init__(self, connection: DoltConnection) -> None:
        self.connection = connection
        self.dialect = connection.dialect

    @classmethod
    def open(cls, location: str, *, create: bool = False) -> DoltRepository:
        """See :func:`retrain.dolt.connections.connect` for the accepted locations."""
        return cls(connect(location, create=create))

    @property
    def location(self) -> str:
        return self.connection.location

    def __repr__(self) -> str:
        return f"DoltRepository({self.location!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def execute(self, statement: Statement) -> QueryResult:
        return self.connection.execute(statement)

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold the lock ``name`` while the block runs, against other processes too: read-check-write
        sequences (a compare-and-set) inside it cannot interleave with another holder's.

        doltlite holds the file's write lock (every name shares it); Dolt sql-server a named lock
        (``GET_LOCK``), server-wide. Waits up to the connection's lock timeout, then raises
        :class:`~retrain.dolt.errors.DoltLockTimeoutError`.
        """
        return self.connection.exclusive(name)

    # -- refs ---------------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        """Branch name -> head commit hash."""
        return {str(name): str(h) for name, h in self.execute(self.dialect.branches()).rows}

    def branch_head(self, branch: str) -> str | None:
        """The branch's head commit, or None when the branch does not exist."""
        return self.branches().get(branch_name(branch))

    def head(self, branch: str = "main") -> str:
        branches = self.branches()
        if branch_name(branch) not in branches:
            raise UnknownBranchError(branch, branches)
        return branches[branch]

    def resolve(self, revision: str) -> str:
        """The commit hash that ``revision`` (a hash or a branch name) names; raises if unknown."""
        if self.dialect.is_commit_hash(revision):
            try:
                self.execute(self.dialect.log(revision))
            except DoltQueryError as error:
                raise UnknownCommitError(revision) from error
            return revision
        try:
            branch_name(revision)
        except InvalidIdentifierError:
            raise UnknownCommitError(
                revision, f"neither a commit hash ({self.dialect.commit_hash_format}) nor a branch name"
            ) from None
        head = self.branches().get(revision)
        if head is None:
            raise UnknownCommitError(
                revision, f"no such branch, and not a commit hash ({self.dialect.commit_hash_format})"
            )
        return head

    def log(self, since: str | None = None, until: str = "main") -> list[CommitInfo]:
        """Commits reachable from ``until`` but not from ``since``, newest first."""
        until_hash = self.resolve(until)
        spec = f"{self.resolve(since)}..{until_hash}" if since else until_hash
        rows = self.execute(self.dialect.log(spec)).rows
        return [CommitInfo(*(str(v) if v is not None else "" for v in row)) for row in rows]

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        a, d = self.resolve(ancestor), self.resolve(descendant)
        return a == d or self.execute(self.dialect.merge_base(a, d)).scalar() == a

    # -- data ---------------------------------------------------------------------------------

    def columns(self, table: str, commit: str) -> list[str]:
        """The table's columns as of ``commit``."""
        commit_hash = self.resolve(commit)
        try:
            return self.execute(self.dialect.columns_at(sql_identifier(table, "table"), commit_hash)).columns
        except DoltQueryError as error:
            if "not found" in str(error) or "no such table" in str(error) or "doesn't exist" in str(error):
                raise UnknownTableError(table, commit_hash) from None
            raise

    def read_table(
        self,
        table: str,
        commit: str,
        *,
        where: WhereClause | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of ``table`` exactly as of ``commit``.

        :param where: column -> value or list of values (``IN``); values are bound, never spliced.
        :param columns: the columns to read (default: all).
        """
        commit_hash = self.resolve(commit)
        known = self.columns(table, commit_hash)
        for column in [*(columns or []), *(where or {})]:
            if column not in known:
                raise UnknownColumnError(column, table, commit_hash, known)
        result = self.execute(self.dialect.select_at(table, commit_hash, columns, where))
        return pd.DataFrame.from_records(result.rows, columns=result.columns)

    def iter_table(
        self,
        table: str,
        commit: str,
        *,
        key_column: str,
        batch_size: int = 100_000,
        where: WhereClause | None = None,
    ) -> Iterator[pd.DataFrame]:
        """``read_table`` in batches of at most ``batch_size`` rows, for tables too large for memory.

        Keyset pagination on ``key_column`` (unique, e.g. the primary key) at one fixed commit, so
        the batches are consistent and none is read twice.
        """
        commit_hash = self.resolve(commit)
        known = self.columns(table, commit_hash)
        for column in [key_column, *(where or {})]:
            if column not in known:
                raise UnknownColumnError(column, table, commit_hash, known)
        after: SqlValue = None
        while True:
            statement = self.dialect.select_at(
                table, commit_hash, None, where, limit=batch_size, order_by=key_column, after=after
            )
            result = self.execute(statement)
            if not result.rows:
                return
            batch = pd.DataFrame.from_records(result.rows, columns=result.columns)
            yield batch
            if len(batch) < batch_size:
                return
            after = batch[key_column].tolist()[-1]  # a plain Python value, ready to bind

    def changed_keys(self, table: str, key_column: str, from_commit: str, to_commit: str) -> ChangedKeys:
        """Distinct ``key_column`` values of rows added, modified or deleted between two commits,
        on either side: a row moved from one key to another reports both keys.

        A schema change, or the table appearing or disappearing, changes every row's meaning:
        that is reported as :meth:`ChangedKeys.everything` with the reason.
        """
        sql_identifier(table, "table")
        sql_identifier(key_column, "column")
        from_hash, to_hash = self.resolve(from_commit), self.resolve(to_commit)
        summary = self.execute(self.dialect.diff_summary(from_hash, to_hash, table)).rows
        if summary:
            diff_type, data_change, schema_change = summary[0]
            span = f"between {from_hash} and {to_hash}"
            if diff_type in ("added", "dropped"):
                return ChangedKeys.everything(f"table {table} was {diff_type} {span}")
            if schema_change:
                return ChangedKeys.everything(f"schema of table {table} changed {span}")
        known = self.columns(table, to_hash)
        if key_column not in known:
            raise UnknownColumnError(key_column, table, to_hash, known)
        if not summary or not data_change:
            return ChangedKeys(keys=frozenset())
        rows = self.execute(self.dialect.changed_keys(table, key_column, from_hash, to_hash)).rows
        # Both sides: a row whose key changed (moved between customers) changes the old key's data too.
        return ChangedKeys(keys=frozenset(str(key) for row in rows for key in row if key is not None))

    # -- writes -------------------------------------------------------------------------------

    def commit(self, message: str, *, allow_empty: bool = False) -> str:
        """Stage all tables and commit; returns the new head (the unchanged head if empty and allowed)."""
        try:
            new_hash = self.execute(self.dialect.commit(message, allow_empty)).scalar()
        except DoltQueryError as error:
            if "nothing to commit" in str(error):
                raise DoltQueryError(
                    f"nothing to commit in {self.location}: the working set is clean"
                ) from None
            raise
        if isinstance(new_hash, str) and self.dialect.is_commit_hash(new_hash):
            return new_hash
        return self.head(self.active_branch())  # an allowed empty commit returns no hash

    def active_branch(self) -> str:
        return str(self.execute(Statement("SELECT active_branch()")).scalar())

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[SqlValue]]) -> int:
        """Insert rows into the working set in as few statements as the backend allows."""
        batch = max(1, self.dialect.max_parameters // max(1, len(columns)))
        for start in range(0, len(rows), batch):
            self.execute(self.dialect.insert(table, columns, rows[start : start + batch]))
        return len(rows)

    def force_branch(self, branch: str, commit: str) -> None:
        """Create ``branch`` pointing at ``commit``, or move it there."""
        self.execute(self.dialect.force_branch(branch, self.resolve(commit)))
