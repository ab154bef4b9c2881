"""Connections that run dialect statements: a doltlite file through a worker process, or a server.

Both raise :class:`DoltQueryError` with the backend's message when a statement fails,
:class:`DoltUnreachableError` (retryable) when the repository cannot be reached or does not answer
in time, and another :class:`DoltConnectionError` when the location cannot be a repository at all.

A server connection waits at most ``?timeout=<seconds>`` in the URL, else ``$RETRAIN_DOLT_TIMEOUT``,
else the suite's ``$RETRAIN_CONNECT_TIMEOUT`` (default 15) to connect and get the server's greeting:
a server that is down or accepts without answering fails fast. Each read or write of a query on an
open connection then waits at most ``?query_timeout=`` or ``$RETRAIN_DOLT_QUERY_TIMEOUT`` (default
600): long enough for a diff of a large table, still bounded.
"""

from __future__ import annotations

import os
import pickle
import stat
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from retrain.connect import connect_timeout, redacted_url, timeout_setting
from retrain.dolt.dialects import DoltDialect, DoltliteDialect, DoltServerDialect, Statement
from retrain.dolt.errors import (
    CorruptDatabaseError,
    DoltConnectionError,
    DoltLockTimeoutError,
    DoltQueryError,
    DoltUnreachableError,
    InvalidLocationError,
    NotADoltDatabaseError,
)
from retrain.errors import InputError

# What SQLite (and so doltlite) says when a file's pages are damaged.
_CORRUPT = ("database disk image is malformed", "file is not a database")
PASSWORD_ENV = "RETRAIN_DOLT_PASSWORD"
TIMEOUT_ENV = "RETRAIN_DOLT_TIMEOUT"
QUERY_TIMEOUT_ENV = "RETRAIN_DOLT_QUERY_TIMEOUT"
DEFAULT_QUERY_TIMEOUT_S = 600.0
URL_OPTIONS = ("timeout", "query_timeout")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER = struct.Struct("!I")
_WORKER = Path(__file__).with_name("worker.py")

# doltlite's file: a 168-byte manifest, then an append-only log of records, each chunk record
# followed eventually by a root record (tag 2 + a manifest) that commits it. The engine replays the
# log up to the last whole root record and silently drops the rest, so a file cut short reads as
# an older state; a complete file always ends with a root record (or at the log's start).
_DOLTLITE_MAGIC = b"CTLD"
_MANIFEST_SIZE = 168
_LOG_OFFSET = struct.Struct("<q")  # the manifest's log (WAL) offset, at byte 84
_LOG_OFFSET_AT = 84
_ROOT_TAG = 2
_SETTLE_S = 1.0  # how long a torn tail must stay unchanged before it is not a writer mid-append
_SETTLE_CAP_S = 30.0  # a tail that keeps changing yet never ends whole is not waited on longer

_UNREACHABLE_CODES = (2003, 2005, 2006, 2013)  # PyMySQL: the server is not there, or went silent


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class DoltConnection(Protocol):
    dialect: DoltDialect
    location: str  # for messages: never contains a password

    def execute(self, statement: Statement) -> QueryResult: ...

    def exclusive(self, name: str) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


_FILE_KINDS = {
    stat.S_IFIFO: "named pipe (FIFO)",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def check_doltlite_file(path: Path, *, settle_s: float = _SETTLE_S) -> None:
    """Refuse anything that is not a whole doltlite database before the engine touches it.

    Dolt functions crash the process on a stock SQLite file, opening a FIFO blocks forever, and a
    file cut short silently reads as an older commit, so all three are checked first (one
    ``stat`` and two small reads). A torn tail that keeps changing is a writer mid-commit: it is
    re-checked until it stays unchanged for ``settle_s`` seconds.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DoltConnectionError(f"Dolt repository file {path} does not exist") from None
    except OSError as error:
        raise DoltConnectionError(f"cannot read Dolt repository file {path}: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise NotADoltDatabaseError(f"{path} is a directory, not a doltlite database file")
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "special file")
        raise NotADoltDatabaseError(f"{path} is a {kind}, not a regular file: not a doltlite database")
    with path.open("rb") as f:
        header = f.read(_MANIFEST_SIZE)
        _check_header(path, header)
        _check_whole(path, f, _LOG_OFFSET.unpack_from(header, _LOG_OFFSET_AT)[0], settle_s)


def _check_header(path: Path, header: bytes) -> None:
    if header.startswith(_SQLITE_MAGIC):
        raise NotADoltDatabaseError(f"{path} is a plain SQLite database, not a doltlite (Dolt) repository")
    if not header.startswith(_DOLTLITE_MAGIC):
        raise NotADoltDatabaseError(f"{path} is not a doltlite (Dolt) database")
    if len(header) < _MANIFEST_SIZE:
        raise NotADoltDatabaseError(
            f"{path} is truncated: {len(header)} bytes, shorter than a doltlite header ({_MANIFEST_SIZE})"
        )


def _check_whole(path: Path, f: IO[bytes], log_offset: int, settle_s: float) -> None:
    last_size, settled_at, give_up_at = -1, 0.0, time.monotonic() + _SETTLE_CAP_S
    while True:
        size = os.fstat(f.fileno()).st_size
        problem = _tail_problem(f, size, log_offset)
        if problem is None:
            return
        if size != last_size and time.monotonic() < give_up_at:  # a writer is appending: wait for it
            last_size, settled_at = size, time.monotonic() + settle_s
        elif time.monotonic() >= settled_at:
            raise NotADoltDatabaseError(
                f"{path} is truncated or torn: {problem}; doltlite would silently read an older commit "
                "(restore the file from a whole copy)"
            )
        time.sleep(min(0.05, settle_s))


def _tail_problem(f: IO[bytes], size: int, log_offset: int) -> str | None:
    """Why the file does not end where a whole doltlite file ends, or None."""
    if log_offset < _MANIFEST_SIZE:
        return f"its header places the commit log at byte {log_offset}, inside the header"
    if size < log_offset:
        return f"{size} bytes, but its header places the commit log at byte {log_offset}"
    if size == log_offset:
        return None
    root_at = size - 1 - _MANIFEST_SIZE
    if root_at >= log_offset:
        f.seek(root_at)
        tail = f.read(1 + len(_DOLTLITE_MAGIC))
        if tail == bytes([_ROOT_TAG]) + _DOLTLITE_MAGIC:
            return None
    return f"it ends at byte {size} inside a commit record"


class DoltliteConnection:
    """A doltlite file, served by a private worker process (see :mod:`retrain.dolt.worker`)."""

    dialect: DoltDialect = DoltliteDialect()

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path).resolve()
        self.location = f"doltlite://{self.path}"
        if create and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not (create and self.path.is_file() and self.path.stat().st_size == 0):
            check_doltlite_file(self.path)
        env = {k: v for k, v in os.environ.items() if k != "_DOLTLITE_BOOTSTRAPPED"}
        self._process = subprocess.Popen(
            [sys.executable, str(_WORKER), str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Lock()
        self._exclusive = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop_worker, self._process)

    def execute(self, statement: Statement) -> QueryResult:
        with self._lock:
            stdin, stdout = self._streams()
            payload = pickle.dumps((statement.sql, statement.params))
            try:
                stdin.write(_HEADER.pack(len(payload)) + payload)
                stdin.flush()
                reply = _read_message(stdout)
            except (BrokenPipeError, EOFError) as error:
                raise self._worker_died() from error
        if reply[0] == "error":
            if any(words in reply[1] for words in _CORRUPT):  # the file's fault, not the statement's
                raise CorruptDatabaseError(f"doltlite database {self.path} is corrupt: {reply[1]}")
            raise DoltQueryError(reply[1])
        return QueryResult(columns=reply[1], rows=reply[2])

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """The file's write lock (``BEGIN IMMEDIATE``), whatever ``name``: other writers wait.

        doltlite commits a Dolt write (``dolt_branch``, ``dolt_commit``) at once, releasing the
        lock there, so the block's one write must be its last statement.
        """
        with self._exclusive:  # threads sharing this connection take turns too
            try:
                self.execute(Statement("BEGIN IMMEDIATE"))
            except DoltQueryError as error:
                if "locked" in str(error):
                    raise DoltLockTimeoutError(
                        f"{self.path} stayed locked by another writer while taking lock {name!r}: {error}"
                    ) from None
                raise
            try:
                yield
            except BaseException:
                self._end_transaction("ROLLBACK")
                raise
            self._end_transaction("COMMIT")

    def _end_transaction(self, sql: str) -> None:
        try:
            self.execute(Statement(sql))
        except DoltQueryError as error:
            if "no transaction is active" not in str(error):  # a Dolt write ended it already
                raise

    def close(self) -> None:
        self._finalizer()

    def _streams(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._process.poll() is not None or self._process.stdin is None or self._process.stdout is None:
            raise self._worker_died()
        return self._process.stdin, self._process.stdout

    def _worker_died(self) -> DoltUnreachableError:
        self._process.wait(timeout=10)
        stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        return DoltUnreachableError(
            f"doltlite engine for {self.path} exited (code {self._process.returncode}): {last}"
        )


def _read_message(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _server_timeout(url: str, query: dict[str, list[str]], option: str, env: str, default: float) -> float:
    if option in query:
        text, source = query[option][-1], f"option {option} in {redacted_url(url)}"
    elif os.environ.get(env):
        text, source = os.environ[env], f"${env}"
    else:
        return default
    try:
        return timeout_setting(text, source)
    except InputError as error:
        raise InvalidLocationError(str(error)) from None


class DoltServerConnection:
    """Dolt sql-server over the MySQL protocol (PyMySQL through SQLAlchemy).

    :param url: ``mysql://user[:password]@host[:port]/database[?timeout=<seconds>]``.
    """

    dialect: DoltDialect = DoltServerDialect()

    def __init__(self, url: str) -> None:
        import sqlalchemy

        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(URL_OPTIONS))
        if unknown:
            supported = ", ".join(URL_OPTIONS)
            raise InvalidLocationError(
                f"unknown option(s) {', '.join(unknown)} in {redacted_url(url)} (supported: {supported})"
            )
        try:
            port = parts.port or 3306
        except ValueError as error:  # ':99999', ':abc'
            message = f"bad port in Dolt repository URL {redacted_url(url)}: {error}"
            raise InvalidLocationError(message) from None
        if not parts.hostname:
            raise InvalidLocationError(f"Dolt repository URL {redacted_url(url)} names no host")
        self.timeout = _server_timeout(url, query, "timeout", TIMEOUT_ENV, connect_timeout())
        self.query_timeout = _server_timeout(
            url, query, "query_timeout", QUERY_TIMEOUT_ENV, DEFAULT_QUERY_TIMEOUT_S
        )
        password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_ENV)
        self._url = sqlalchemy.URL.create(
            "mysql+pymysql",
            username=unquote(parts.username) if parts.username else None,
            password=password,
            host=parts.hostname,
            port=port,
            database=parts.path.lstrip("/") or None,
        )
        self.location = self._url.render_as_string(hide_password=True).replace("+pymysql", "")
        self._engine = sqlalchemy.create_engine(
            self._url,
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=True,
            # PyMySQL reads the server's greeting under read_timeout: the connect bound covers it.
            connect_args={
                "connect_timeout": self.timeout,
                "read_timeout": self.timeout,
                "write_timeout": self.timeout,
            },
        )
        sqlalchemy.event.listen(self._engine, "connect", self._allow_query_time)
        self._pinned = threading.local()  # the connection holding a named lock, per thread

    def _allow_query_time(self, dbapi_connection: Any, _record: Any) -> None:
        """Once connected, give queries their own bound. PyMySQL has no public setter for its
        socket timeouts; it reads these two attributes before each read and write."""
        dbapi_connection._read_timeout = dbapi_connection._write_timeout = self.query_timeout

    def execute(self, statement: Statement) -> QueryResult:
        pinned = getattr(self._pinned, "connection", None)
        if pinned is not None:
            return self._run(pinned, statement)
        with self._connected() as connection:
            return self._run(connection, statement)

    @contextmanager
    def _connected(self) -> Iterator[Any]:
        with self._translated_errors(f"answer a connection within {self.timeout:g} s", "timeout"):
            connection = self._engine.connect()
        with connection:
            yield connection

    def _run(self, connection: Any, statement: Statement) -> QueryResult:
        with self._translated_errors(f"answer a query within {self.query_timeout:g} s", "query_timeout"):
            result = connection.exec_driver_sql(statement.sql, statement.params)
            if not result.returns_rows:
                return QueryResult(columns=[])
            return QueryResult(columns=list(result.keys()), rows=[tuple(r) for r in result])

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A server-wide named lock (``GET_LOCK``) held by one session for the block's statements."""
        dialect = DoltServerDialect()
        wait = max(1, int(min(self.timeout, self.query_timeout)) - 2)  # before the socket times out
        with self._connected() as connection:
            if self._run(connection, dialect.get_lock(name, wait)).scalar() != 1:
                raise DoltLockTimeoutError(
                    f"lock {dialect.lock_name(name)!r} on {self.location} stayed held by another "
                    f"session for {wait} s"
                )
            self._pinned.connection = connection
            try:
                yield
            finally:
                self._pinned.connection = None
                self._run(connection, dialect.release_lock(name))

    @contextmanager
    def _translated_errors(self, bound: str, option: str) -> Iterator[None]:
        """Backend errors as the suite's; a timeout names the ``bound`` missed and the option raising it."""
        import sqlalchemy.exc

        try:
            yield
        except sqlalchemy.exc.OperationalError as error:
            code = error.orig.args[0] if error.orig is not None and error.orig.args else None
            reason = _server_message(error)
            if code in _UNREACHABLE_CODES and "timed out" in reason:
                env = TIMEOUT_ENV if option == "timeout" else QUERY_TIMEOUT_ENV
                raise DoltUnreachableError(
                    f"Dolt sql-server at {self.location} did not {bound} "
                    f"(set ${env} or ?{option}=<seconds> in the URL)"
                ) from None
            if code in _UNREACHABLE_CODES:
                raise DoltUnreachableError(
                    f"cannot reach Dolt sql-server at {self.location}: {reason}"
                ) from None
            raise DoltQueryError(reason) from None
        except sqlalchemy.exc.DBAPIError as error:
            raise DoltQueryError(_server_message(error)) from None

    def close(self) -> None:
        self._engine.dispose()


def _server_message(error: Any) -> str:
    orig = getattr(error, "orig", None)
    if orig is not None and len(orig.args) > 1:
        return str(orig.args[1])
    return str(orig or error)


def connect(location: str, *, create: bool = False) -> DoltConnection:
    """Open a repository by location.

    :param location: ``doltlite:///abs/path.db``, a plain file path, or
        ``mysql://user[:password]@host[:port]/database[?timeout=<seconds>]`` (password otherwise
        from ``$RETRAIN_DOLT_PASSWORD``, timeout from ``$RETRAIN_DOLT_TIMEOUT``, default 15 s).
    :param create: allow a missing doltlite file to be created (seeding).
    """
    scheme = urlsplit(location).scheme if "://" in location else ""
    if scheme in ("mysql", "mysql+pymysql"):
        return DoltServerConnection(location)
    if scheme == "doltlite":
        return DoltliteConnection(location[len("doltlite://") :], create=create)
    if scheme:
        raise InvalidLocationError(
            f"unsupported Dolt repository scheme {scheme!r}: use doltlite:///path.db, a file path or mysql://"
        )
    return DoltliteConnection(location, create=create)
