"""A child process that owns one doltlite connection: ``python worker.py /path/repo.db``.

``import doltlite`` swaps SQLite for the whole interpreter, which would break Airflow's and MLflow's
own SQLite databases and re-exec processes that imported ``sqlite3`` already. So the engine lives
only here, in a process that imports doltlite before anything else, and speaks a tiny protocol on
its standard streams: length-prefixed pickles of ``(sql, params)`` in, ``("ok", columns, rows)`` or
``("error", message)`` out. Run as a script (not ``-m``) so no package ``__init__`` runs first.
"""
# ruff: noqa: I001  (import order is load-bearing here: doltlite must precede sqlite3)

import doltlite  # noqa: F401  (installs the engine; must come before sqlite3)

import os
import pickle
import sqlite3
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct("!I")


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main() -> None:
    requests, responses = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # stray prints must never corrupt the protocol stream
    connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60, check_same_thread=False)
    while True:
        header = _read_exact(requests, HEADER.size)
        if header is None:
            break
        body = _read_exact(requests, HEADER.unpack(header)[0])
        if body is None:
            break
        sql, params = pickle.loads(body)
        reply: tuple[Any, ...]
        try:
            cursor = connection.execute(sql, params)
            rows = cursor.fetchall()
            columns = [d[0] for d in cursor.description] if cursor.description else []
            reply = ("ok", columns, rows)
        except sqlite3.Error as error:
            reply = ("error", str(error))
        payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        responses.write(HEADER.pack(len(payload)) + payload)
        responses.flush()
    connection.close()


if __name__ == "__main__":
    main()
