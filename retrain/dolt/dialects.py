"""The SQL that differs between doltlite (embedded) and Dolt sql-server (MySQL protocol).

Every method returns a :class:`Statement`: SQL text plus bound parameters. Identifiers in the text
were validated by :mod:`retrain.identifiers`; everything else is a parameter. Keeping the builders
pure makes the server dialect testable without a server.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from retrain.identifiers import branch_name, sql_identifier

SqlValue = str | int | float | bool | None
WhereClause = Mapping[str, SqlValue | Sequence[SqlValue]]


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[SqlValue, ...] = ()


class DoltDialect(ABC):
    """SQL builders for one Dolt backend."""

    name: ClassVar[str]
    commit_hash_pattern: ClassVar[re.Pattern[str]]
    commit_hash_format: ClassVar[str]
    placeholder: ClassVar[str]
    max_parameters: ClassVar[int]

    def is_commit_hash(self, value: str) -> bool:
        return bool(self.commit_hash_pattern.fullmatch(value))

    def branches(self) -> Statement:
        return Statement("SELECT name, hash FROM dolt_branches")

    def log(self, revisions: str) -> Statement:
        """Commits reachable from ``revisions`` (``rev`` or ``from..to``), newest first."""
        return Statement(
            f"SELECT commit_hash, committer, email, date, message FROM dolt_log({self.placeholder})",  # noqa: S608
            (revisions,),
        )

    def diff_summary(self, from_commit: str, to_commit: str, table: str) -> Statement:
        p = self.placeholder
        return Statement(
            f"SELECT diff_type, data_change, schema_change FROM dolt_diff_summary({p}, {p}, {p})",  # noqa: S608
            (from_commit, to_commit, sql_identifier(table, "table")),
        )

    def columns_at(self, table: str, revision: str) -> Statement:
        """A statement whose result has the table's columns at ``revision`` and no rows."""
        return self.select_at(table, revision, columns=None, where=None, limit=0)

    def select_at(
        self,
        table: str,
        revision: str,
        columns: Sequence[str] | None,
        where: WhereClause | None,
        limit: int | None = None,
        order_by: str | None = None,
        after: SqlValue = None,
    ) -> Statement:
        """``SELECT columns FROM table AS OF revision WHERE ...``; with ``order_by``, rows sorted by
        that column and, given ``after``, only those past it (keyset pagination)."""
        column_sql = ", ".join(self.quote(sql_identifier(c, "column")) for c in columns) if columns else "*"
        source, params = self._table_at(sql_identifier(table, "table"), revision)
        conditions: list[str] = []
        for column, value in (where or {}).items():
            quoted = self.quote(sql_identifier(column, "column"))
            if isinstance(value, str | int | float | bool) or value is None:
                values: Sequence[SqlValue] = [value]
            else:
                values = list(value)
            if not values:
                conditions.append("1 = 0")  # an empty IN-list matches nothing
                continue
            conditions.append(f"{quoted} IN ({', '.join([self.placeholder] * len(values))})")
            params += tuple(values)
        if order_by is not None and after is not None:
            conditions.append(f"{self.quote(sql_identifier(order_by, 'column'))} > {self.placeholder}")
            params += (after,)
        sql = f"SELECT {column_sql} FROM {source}"  # noqa: S608 - identifiers validated above
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if order_by is not None:
            sql += f" ORDER BY {self.quote(sql_identifier(order_by, 'column'))}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return Statement(sql, params)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[SqlValue]]) -> Statement:
        """One multi-row INSERT; keep ``len(rows) * len(columns)`` within :attr:`max_parameters`."""
        column_sql = ", ".join(self.quote(sql_identifier(c, "column")) for c in columns)
        row_sql = "(" + ", ".join([self.placeholder] * len(columns)) + ")"
        params = tuple(value for row in rows for value in row)
        return Statement(
            f"INSERT INTO {self.quote(sql_identifier(table, 'table'))} ({column_sql}) "  # noqa: S608
            f"VALUES {', '.join([row_sql] * len(rows))}",
            params,
        )

    @abstractmethod
    def changed_keys(self, table: str, key_column: str, from_commit: str, to_commit: str) -> Statement:
        """Distinct ``(from_key, to_key)`` pairs of the rows added, modified or removed between two
        commits: a row moved from one key to another changes both (one side is NULL for an added or
        removed row)."""

    @abstractmethod
    def commit(self, message: str, allow_empty: bool) -> Statement:
        """Stage everything and commit; returns the new hash (0 or nothing for a skipped empty commit)."""

    @abstractmethod
    def force_branch(self, branch: str, commit: str) -> Statement:
        """Create ``branch`` at ``commit``, or move it there."""

    @abstractmethod
    def merge_base(self, a: str, b: str) -> Statement: ...

    @abstractmethod
    def quote(self, identifier: str) -> str: ...

    @abstractmethod
    def _table_at(self, table: str, revision: str) -> tuple[str, tuple[SqlValue, ...]]:
        """The FROM source reading ``table`` as of ``revision``, and its parameters."""


class DoltliteDialect(DoltDialect):
    """doltlite: SQLite with Dolt functions (``dolt_commit(...)``, ``dolt_at_<t>(rev)``...)."""

    name = "doltlite"
    commit_hash_pattern = re.compile(r"[0-9a-f]{40}")
    commit_hash_format = "40 lowercase hex characters"
    placeholder = "?"
    max_parameters = 32766

    def quote(self, identifier: str) -> str:
        return f'"{identifier}"'

    def _table_at(self, table: str, revision: str) -> tuple[str, tuple[SqlValue, ...]]:
        return f"dolt_at_{table}(?)", (revision,)

    def changed_keys(self, table: str, key_column: str, from_commit: str, to_commit: str) -> Statement:
        t, k = sql_identifier(table, "table"), sql_identifier(key_column, "column")
        return Statement(
            f"SELECT DISTINCT from_{k}, to_{k} FROM dolt_diff_{t}(?, ?)",  # noqa: S608
            (from_commit, to_commit),
        )

    def commit(self, message: str, allow_empty: bool) -> Statement:
        if allow_empty:
            return Statement("SELECT dolt_commit('--skip-empty', '-Am', ?)", (message,))
        return Statement("SELECT dolt_commit('-Am', ?)", (message,))

    def force_branch(self, branch: str, commit: str) -> Statement:
        return Statement("SELECT dolt_branch('-f', ?, ?)", (branch_name(branch), commit))

    def merge_base(self, a: str, b: str) -> Statement:
        return Statement("SELECT dolt_merge_base(?, ?)", (a, b))


class DoltServerDialect(DoltDialect):
    """Dolt sql-server over the MySQL protocol (PyMySQL's ``%s`` placeholders)."""

    name = "dolt-sql-server"
    commit_hash_pattern = re.compile(r"[0-9a-v]{32}")
    commit_hash_format = "32 base32 characters (0-9, a-v)"
    placeholder = "%s"
    max_parameters = 65535

    def quote(self, identifier: str) -> str:
        return f"`{identifier}`"

    def _table_at(self, table: str, revision: str) -> tuple[str, tuple[SqlValue, ...]]:
        # AS OF takes an expression; binding it keeps the revision out of the SQL text.
        return f"{self.quote(table)} AS OF %s", (revision,)

    def changed_keys(self, table: str, key_column: str, from_commit: str, to_commit: str) -> Statement:
        # The dolt_diff_<t> system table only matches adjacent commits; DOLT_DIFF() takes any two.
        k = sql_identifier(key_column, "column")
        return Statement(
            f"SELECT DISTINCT from_{k}, to_{k} FROM DOLT_DIFF(%s, %s, %s)",  # noqa: S608
            (from_commit, to_commit, sql_identifier(table, "table")),
        )

    def commit(self, message: str, allow_empty: bool) -> Statement:
        if allow_empty:
            return Statement("CALL DOLT_COMMIT('--skip-empty', '-Am', %s)", (message,))
        return Statement("CALL DOLT_COMMIT('-Am', %s)", (message,))

    def force_branch(self, branch: str, commit: str) -> Statement:
        return Statement("CALL DOLT_BRANCH('-f', %s, %s)", (branch_name(branch), commit))

    def merge_base(self, a: str, b: str) -> Statement:
        return Statement("SELECT DOLT_MERGE_BASE(%s, %s)", (a, b))

    def get_lock(self, name: str, wait_s: int) -> Statement:
        """Take the server-wide named lock (1: taken, 0: still held elsewhere after ``wait_s``)."""
        return Statement("SELECT GET_LOCK(%s, %s)", (self.lock_name(name), wait_s))

    def release_lock(self, name: str) -> Statement:
        return Statement("SELECT RELEASE_LOCK(%s)", (self.lock_name(name),))

    @staticmethod
    def lock_name(name: str) -> str:
        """``name`` within MySQL's 64-character limit on lock names (long ones end in a digest)."""
        if len(name) <= 64:
            return name
        return f"{name[:40]}#{hashlib.sha256(name.encode()).hexdigest()[:23]}"
