"""Spark sessions with Hive support: embedded Derby metastore by default, a thrift metastore in production."""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout
from retrain.errors import InputError, ServiceUnreachableError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

METASTORE_PORT = 9083
# A Thrift binary-protocol call of ThriftHiveMetastore.get_all_databases (read-only, no arguments):
# strict version + CALL, method name, sequence id 0, empty argument struct. Framed or SASL servers
# refuse its first bytes and close the connection, which counts as an answer too.
_PROBE_METHOD = b"get_all_databases"
_METASTORE_PROBE = (
    struct.pack(f">Ii{len(_PROBE_METHOD)}si", 0x80010001, len(_PROBE_METHOD), _PROBE_METHOD, 0) + b"\0"
)


class MetastoreUnreachableError(ServiceUnreachableError):
    """No Hive metastore listed in ``hive.metastore.uris`` answered within the connect timeout."""


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark runs and which Hive metastore it uses.

    :param master: None leaves it to ``spark-submit --master`` (``local[*]`` when run without it);
        ``yarn`` or ``k8s://...`` in production.
    :param warehouse: the Hive warehouse directory (embedded default) or URI.
    :param metastore_uri: a ``thrift://host:9083`` Hive metastore; None uses embedded Derby kept
        beside the warehouse, so the demo's tables survive between sessions.
    :param conf: extra Spark settings (executor memory, cores...).
    """

    master: str | None = None
    warehouse: str = "var/warehouse"
    metastore_uri: str | None = None
    app_name: str = "retrain"
    conf: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, warehouse: str | None = None) -> SparkSettings:
        """Settings from ``RETRAIN_SPARK_MASTER``, ``RETRAIN_WAREHOUSE`` and ``RETRAIN_HIVE_METASTORE``."""
        return cls(
            master=os.environ.get("RETRAIN_SPARK_MASTER") or None,
            warehouse=warehouse or os.environ.get("RETRAIN_WAREHOUSE", cls.warehouse),
            metastore_uri=os.environ.get("RETRAIN_HIVE_METASTORE") or None,
        )


def spark_session(settings: SparkSettings) -> SparkSession:
    """Get or create the process's Spark session for ``settings``."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(settings.app_name)
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("hive.exec.dynamic.partition.mode", "nonstrict")
    )
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if not under_spark_submit:
        # Sized for one machine; under spark-submit its --conf settings decide.
        builder = builder.config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
    if settings.master:
        builder = builder.master(settings.master)
    if not under_spark_submit and (settings.master or "local").startswith("local"):
        # Local Python workers must run this interpreter (its venv), not whatever python3 is on PATH;
        # PySpark reads it from the environment when the context starts. Under spark-submit its
        # environment decides.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if settings.metastore_uri:
        check_metastore(settings.metastore_uri)
        builder = builder.config("hive.metastore.uris", settings.metastore_uri)
        builder = builder.config("spark.sql.warehouse.dir", settings.warehouse)
    else:
        warehouse = Path(settings.warehouse).resolve()
        warehouse.mkdir(parents=True, exist_ok=True)
        metastore = warehouse.parent / f"{warehouse.name}-metastore"
        builder = (
            builder.config("spark.sql.warehouse.dir", str(warehouse))
            .config(
                "javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={metastore};create=true",
            )
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse.parent}")
        )
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    session = builder.enableHiveSupport().getOrCreate()
    active = str(session.conf.get("spark.sql.warehouse.dir"))
    if (
        not settings.metastore_uri
        and Path(active.removeprefix("file:")).resolve() != Path(settings.warehouse).resolve()
    ):
        # A session's warehouse cannot change once it started: say so instead of writing elsewhere quietly.
        log.warning("Spark session already running with warehouse %s, not %s", active, settings.warehouse)
    session.sparkContext.setLogLevel("ERROR")
    return session


def check_metastore(uris: str) -> None:
    """Fail within the connect timeout when no metastore of ``uris`` answers (comma-separated ``thrift://``).

    Spark's Hive client would otherwise retry a metastore that is down, or hang on one that accepts
    connections without answering, for minutes. One read-only Thrift call per URI, in turn, until one
    answers; all of them share the one time bound.
    """
    seconds = connect_timeout()
    deadline = time.monotonic() + seconds
    problems: list[str] = []
    for uri in (u.strip() for u in uris.split(",") if u.strip()):
        host, port = _metastore_address(uri)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            problems.append(f"{uri} (not tried: time is up)")
            break
        try:
            with socket.create_connection((host, port), timeout=remaining) as connection:
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                connection.sendall(_METASTORE_PROBE)
                connection.recv(1)  # a reply, or the server closing: either way it is there
            return
        except TimeoutError:
            problems.append(f"{uri} (no answer within {seconds:g}s, ${CONNECT_TIMEOUT_ENV})")
        except ConnectionResetError:
            return  # it refused the probe's bytes: a server is listening and answering
        except OSError as error:
            problems.append(f"{uri} ({error.strerror or error})")
    raise MetastoreUnreachableError(f"cannot reach the Hive metastore at {', '.join(problems) or repr(uris)}")


def _metastore_address(uri: str) -> tuple[str, int]:
    """``thrift://host[:port]``'s host and port (9083 by default)."""
    try:
        parts = urlsplit(uri)
        if parts.scheme == "thrift" and parts.hostname:
            return parts.hostname, parts.port or METASTORE_PORT
    except ValueError:  # a port that is not a number
        pass
    raise InputError(f"invalid Hive metastore URI {uri!r}: use thrift://host:port")
