"""DoltHook: opens a :class:`retrain.dolt.DoltRepository` from an Airflow connection of type ``dolt``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from airflow.sdk import BaseHook, Connection

from retrain.connect import redacted_url
from retrain.dolt import DoltRepository
from retrain.dolt.connections import URL_OPTIONS
from retrain.dolt.errors import DoltConnectionError
from retrain.errors import InputError

if TYPE_CHECKING:
    from airflow.providers.openlineage.sqlparser import DatabaseInfo


def repository_location(connection: Connection) -> str:
    """``doltlite:///path`` when the connection's extra names an embedded ``path``, else a mysql:// URL.

    The URL carries the password only in memory; :attr:`DoltRepository.location` is redacted. An
    extra ``timeout`` (seconds) bounds connecting to the server (default ``$RETRAIN_DOLT_TIMEOUT``,
    else ``$RETRAIN_CONNECT_TIMEOUT``, else 15), ``query_timeout`` each query's reads and writes
    (default ``$RETRAIN_DOLT_QUERY_TIMEOUT``, else 600).
    """
    path = connection.extra_dejson.get("path")
    if path:
        return f"doltlite://{Path(path).resolve()}"
    if not connection.host:
        raise InputError(
            f"Dolt connection {connection.conn_id!r} needs either extra {{'path': ...}} (embedded doltlite) "
            "or host/port/schema (dolt sql-server)"
        )
    credentials = quote(connection.login or "root", safe="")
    if connection.password:
        credentials += ":" + quote(connection.password, safe="")
    url = f"mysql://{credentials}@{connection.host}:{connection.port or 3306}/{connection.schema or ''}"
    options = {name: connection.extra_dejson[name] for name in URL_OPTIONS if name in connection.extra_dejson}
    return f"{url}?{urlencode(options)}" if options else url


class DoltHook(BaseHook):
    """Interact with a Dolt repository: an embedded doltlite file or a ``dolt sql-server``.

    :param dolt_conn_id: connection of type ``dolt``: extra ``{"path": "/abs/training.db"}`` for
        doltlite, or host, port, schema (database), login and password for sql-server. Its form
        in Airflow's UI is declared in :func:`retrain_airflow.get_provider_info`.
    """

    conn_name_attr = "dolt_conn_id"
    default_conn_name = "dolt_default"
    conn_type = "dolt"
    hook_name = "Dolt"

    def __init__(self, dolt_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.dolt_conn_id = dolt_conn_id

    def get_repository(self) -> DoltRepository:
        return DoltRepository.open(repository_location(self.get_connection(self.dolt_conn_id)))

    def commit_diff_url(self, old: str | None, new: str) -> str | None:
        """The diff between two commits in the repository's web UI (DoltHub, DoltLab), when the
        connection's extra names it as ``web_url`` (``https://www.dolthub.com/repositories/org/repo``)."""
        web_url = self.get_connection(self.dolt_conn_id).extra_dejson.get("web_url")
        if not web_url:
            return None
        base = str(web_url).rstrip("/")
        return f"{base}/compare/main/{old}...{new}" if old else f"{base}/commits/main/{new}"

    def get_openlineage_database_info(self, connection: Connection) -> DatabaseInfo:
        """Where OpenLineage finds this repository's tables: namespace ``dolt://host:port`` and
        names ``<database>.<table>`` for a sql-server (MySQL's convention); ``doltlite`` and
        ``<file>.<table>`` for an embedded file. No credentials."""
        from airflow.providers.openlineage.sqlparser import DatabaseInfo

        path = connection.extra_dejson.get("path")
        if path:
            return DatabaseInfo(scheme="doltlite", database=str(Path(path).resolve()))
        authority = f"{connection.host}:{connection.port or 3306}"
        return DatabaseInfo(scheme="dolt", authority=authority, database=connection.schema)

    async def aget_repository_location(self) -> str:
        return repository_location(await self.aget_connection(self.dolt_conn_id))

    def test_connection(self) -> tuple[bool, str]:
        """Open the repository and read the head of ``main``, as every task does first.

        Airflow's ``(ok, message)``; never raises, so the UI shows one line. The message names the
        repository, with any password hidden.
        """
        try:
            location = repository_location(self.get_connection(self.dolt_conn_id))
        except Exception as error:  # a missing or incomplete connection: the UI shows why
            return False, str(error)
        shown = redacted_url(location)
        try:
            with DoltRepository.open(location) as repo:
                return True, f"Dolt repository {shown}: main is at commit {repo.head()}"
        except DoltConnectionError as error:  # these messages already name the file or server
            return False, str(error)
        except Exception as error:  # e.g. no branch main, or the server rejected a query
            return False, f"Dolt repository {shown}: {error}"
