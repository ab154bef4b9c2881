"""Connections that run dialect statements: a doltlite file through a worker process, or a server.

Both raise :class:`DoltQueryError` with the backend's message when a statement fails and
:class:`DoltConnectionError` when the repository cannot be reached at all.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit

from retrain.dolt.dialects import DoltDialect, DoltliteDialect, DoltServerDialect, Statement
from retrain.dolt.errors import DoltConnectionError, DoltQueryError, NotADoltDatabaseError

PASSWORD_ENV = "RETRAIN_DOLT_PASSWORD"
_DOLTLITE_MAGIC = b"CTLD"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER = struct.Struct("!I")
_WORKER = Path(__file__).with_name("worker.py")


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

    def close(self) -> None: ...


def check_doltlite_file(path: Path) -> None:
    """Refuse anything that is not a doltlite database before the engine touches it.

    Dolt functions crash the process on a stock SQLite file, so the header is checked first.
    """
    if not path.exists():
        raise DoltConnectionError(f"Dolt repository file {path} does not exist")
    if path.is_dir():
        raise NotADoltDatabaseError(f"{path} is a directory, not a doltlite database file")
    with path.open("rb") as f:
        magic = f.read(16)
    if magic.startswith(_DOLTLITE_MAGIC):
        return
    if magic == _SQLITE_MAGIC:
        raise NotADoltDatabaseError(f"{path} is a plain SQLite database, not a doltlite (Dolt) repository")
    raise NotADoltDatabaseError(f"{path} is not a doltlite (Dolt) database")


class DoltliteConnection:
    """A doltlite file, served by a private worker process (see :mod:`retrain.dolt.worker`)."""

    dialect: DoltDialect = DoltliteDialect()

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path).resolve()
        self.location = f"doltlite://{self.path}"
        if create and (not self.path.exists() or self.path.stat().st_size == 0):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
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
            raise DoltQueryError(reply[1])
        return QueryResult(columns=reply[1], rows=reply[2])

    def close(self) -> None:
        self._finalizer()

    def _streams(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._process.poll() is not None or self._process.stdin is None or self._process.stdout is None:
            raise self._worker_died()
        return self._process.stdin, self._process.stdout

    def _worker_died(self) -> DoltConnectionError:
        self._process.wait(timeout=10)
        stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        return DoltConnectionError(
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


class DoltServerConnection:
    """Dolt sql-server over the MySQL protocol (PyMySQL through SQLAlchemy)."""

    dialect: DoltDialect = DoltServerDialect()

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        import sqlalchemy

        parts = urlsplit(url)
        password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_ENV)
        self._url = sqlalchemy.URL.create(
            "mysql+pymysql",
            username=unquote(parts.username) if parts.username else None,
            password=password,
            host=parts.hostname,
            port=parts.port or 3306,
            database=parts.path.lstrip("/") or None,
        )
        self.location = self._url.render_as_string(hide_password=True).replace("+pymysql", "")
        self._engine = sqlalchemy.create_engine(
            self._url,
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=True,
            connect_args={"connect_timeout": connect_timeout},
        )

    def execute(self, statement: Statement) -> QueryResult:
        import sqlalchemy.exc

        try:
            with self._engine.connect() as connection:
                result = connection.exec_driver_sql(statement.sql, statement.params)
                if not result.returns_rows:
                    return QueryResult(columns=[])
                return QueryResult(columns=list(result.keys()), rows=[tuple(r) for r in result])
        except sqlalchemy.exc.OperationalError as error:
            # Error codes 2003/2005/2006/2013: the server is not there (as opposed to a bad query).
            code = error.orig.args[0] if error.orig is not None and error.orig.args else None
            if code in (2003, 2005, 2006, 2013):
                raise DoltConnectionError(f"cannot reach Dolt sql-server at {self.location}") from None
            raise DoltQueryError(_server_message(error)) from None
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
        ``mysql://user[:password]@host[:port]/database`` (password otherwise from ``$RETRAIN_DOLT_PASSWORD``).
    :param create: allow a missing doltlite file to be created (seeding).
    """
    scheme = urlsplit(location).scheme if "://" in location else ""
    if scheme in ("mysql", "mysql+pymysql"):
        return DoltServerConnection(location)
    if scheme == "doltlite":
        return DoltliteConnection(location[len("doltlite://") :], create=create)
    if scheme:
        raise DoltConnectionError(
            f"unsupported Dolt repository scheme {scheme!r}: use doltlite:///path.db, a file path or mysql://"
        )
    return DoltliteConnection(location, create=create)
