"""Spark sessions with Hive support: embedded Derby metastore by default, a thrift metastore in production."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from xml.etree import ElementTree

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

# A properties line's key ends at the first whitespace, '=' or ':' (java.util.Properties, unescaped).
_PROPERTY = re.compile(r"([^\s=:]+)(?:\s*[=:]\s*|\s+|$)(.*)")
_JAVA_OPTIONS = ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS")  # where -D settings come from
_LOG4J2_FILES = ("log4j2.properties", "log4j2.xml", "log4j2.yaml", "log4j2.yml", "log4j2.json")
# Spark's log level when the user has no log4j2 configuration: warnings and errors on stderr, less known
# noise with nothing to act on: the loopback hostname and native-hadoop notices, and the embedded Hive
# client's notices about its own internal settings, Derby schema and partition statistics (Spark's
# log4j2 template quiets parts of Hive the same way).
_LOG4J2_CONFIG = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.hostname.name = org.apache.spark.util.Utils
logger.hostname.filter.loopback.type = RegexFilter
logger.hostname.filter.loopback.regex = (?s).*(resolves to a loopback address|Set SPARK_LOCAL_IP).*
logger.hostname.filter.loopback.onMatch = DENY
logger.hostname.filter.loopback.onMismatch = NEUTRAL
logger.nativehadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativehadoop.level = error
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = error
logger.hivelog.name = hive.log
logger.hivelog.level = error
"""


class MetastoreUnreachableError(ServiceUnreachableError):
    """No Hive metastore listed in ``hive.metastore.uris`` answered within the connect timeout."""


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark runs and which Hive metastore it uses, where the user's Spark files do not say.

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
    """Get or create the process's Spark session for ``settings``.

    What the user's ``spark-defaults.conf`` and ``hive-site.xml`` set (:class:`SparkConfFiles`) is left
    to them: ``settings`` only fill what they leave unset, and ``settings.conf`` is applied last. A
    session already running is returned as it is: its settings cannot change once it started.
    """
    from pyspark.sql import SparkSession

    files = SparkConfFiles.load()
    plan = session_conf(settings, files, under_spark_submit="PYSPARK_GATEWAY_PORT" in os.environ)
    if plan.metastore_uri:
        check_metastore(plan.metastore_uri)
    session = SparkSession.getActiveSession() or _start(plan, settings.app_name)
    active = str(session.conf.get("spark.sql.warehouse.dir"))
    if plan.derby_home and Path(active.removeprefix("file:")).resolve() != plan.warehouse.resolve():
        # Say so instead of writing elsewhere quietly.
        log.warning("Spark session already running with warehouse %s, not %s", active, plan.warehouse)
    return session


def _start(plan: SessionPlan, app_name: str) -> SparkSession:
    """A new session as ``plan`` says."""
    from pyspark.sql import SparkSession

    if plan.derby_home:
        plan.derby_home.mkdir(parents=True, exist_ok=True)
    if plan.local_python:
        # Local Python workers must run this interpreter (its venv), not whatever python3 is on PATH;
        # PySpark reads it from the environment when the context starts.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in plan.conf.items():
        builder = builder.config(key, value)
    return builder.enableHiveSupport().getOrCreate()


@dataclass(frozen=True)
class SparkConfFiles:
    """The user's own Spark configuration, from ``$SPARK_CONF_DIR`` (else ``$SPARK_HOME/conf``).

    spark-submit reads ``spark-defaults.conf`` there, and the Hive client ``hive-site.xml`` (the
    directory is on the JVM's class path); log4j2 finds its ``log4j2.properties`` there too.
    """

    defaults: dict[str, str] = field(default_factory=dict)
    hive_site: dict[str, str] = field(default_factory=dict)
    log4j_configured: bool = False

    @classmethod
    def load(cls) -> SparkConfFiles:
        """The files of the conf directory, and whether log4j2 has a configuration of the user's."""
        directory = spark_conf_dir()
        defaults = _read_properties(directory / "spark-defaults.conf") if directory else {}
        hive_site = _read_hadoop_xml(directory / "hive-site.xml") if directory else {}
        java_options = " ".join(os.environ.get(name, "") for name in _JAVA_OPTIONS)
        java_options += " " + defaults.get("spark.driver.extraJavaOptions", "")
        log4j = (
            "log4j2.configurationFile" in java_options
            or "log4j.configurationFile" in java_options  # log4j2 still reads the 1.x-era name
            or bool(os.environ.get("LOG4J_CONFIGURATION_FILE"))
            or bool(directory and any((directory / name).is_file() for name in _LOG4J2_FILES))
        )
        return cls(defaults, hive_site, log4j)

    def hive(self, name: str, conf: dict[str, str]) -> str | None:
        """A Hive setting as the session would see it: ``spark.hadoop.<name>`` first, then hive-site.xml."""
        key = f"spark.hadoop.{name}"
        return conf.get(key) or self.defaults.get(key) or self.hive_site.get(name) or None


@dataclass(frozen=True)
class SessionPlan:
    """The builder settings :func:`spark_session` adds, and what it checks or prepares before starting."""

    conf: dict[str, str]
    warehouse: Path
    metastore_uri: str | None
    derby_home: Path | None
    local_python: bool


def session_conf(settings: SparkSettings, files: SparkConfFiles, *, under_spark_submit: bool) -> SessionPlan:
    """The suite's settings for a session, each added only where the user's files leave it unset."""
    given = {**files.defaults, **settings.conf}
    conf: dict[str, str] = {}

    def fill(key: str, value: str) -> None:
        if key not in given and not (key.startswith("spark.hadoop.") and key[13:] in files.hive_site):
            conf[key] = value

    fill("spark.sql.sources.partitionOverwriteMode", "dynamic")
    fill("spark.hadoop.hive.exec.dynamic.partition.mode", "nonstrict")
    if not under_spark_submit:
        # Sized for one machine; under spark-submit its --conf settings decide.
        fill("spark.ui.enabled", "false")
        fill("spark.sql.shuffle.partitions", "4")
        fill("spark.ui.showConsoleProgress", "false")  # progress bars would cut into the suite's own lines
    if settings.master:
        fill("spark.master", settings.master)
    master = given.get("spark.master") or settings.master or "local"
    warehouse = (
        given.get("spark.sql.warehouse.dir") or files.hive_site.get("hive.metastore.warehouse.dir") or None
    )
    if warehouse is None:
        warehouse = settings.warehouse
        if not settings.metastore_uri:
            warehouse = str(Path(warehouse).resolve())
        conf["spark.sql.warehouse.dir"] = warehouse
    metastore_uri = files.hive("hive.metastore.uris", given)
    if metastore_uri is None and settings.metastore_uri:
        metastore_uri = conf["spark.hadoop.hive.metastore.uris"] = settings.metastore_uri
    java_options: list[str] = []
    derby_home = None
    if metastore_uri is None and files.hive("javax.jdo.option.ConnectionURL", given) is None:
        # Embedded Derby kept beside the warehouse, so the demo's tables survive between sessions.
        local = Path(warehouse.removeprefix("file:")).resolve()
        derby_home = local.parent
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={derby_home / (local.name + '-metastore')};create=true"
        )
        java_options.append(f"-Dderby.system.home={derby_home}")
    if not under_spark_submit and not files.log4j_configured:
        java_options.append(f"-Dlog4j2.configurationFile={_suite_log4j2()}")
    if java_options:
        # Kept with the user's own options, which come last and so win where both set a property.
        own = given.get("spark.driver.extraJavaOptions")
        conf["spark.driver.extraJavaOptions"] = " ".join([*java_options, *([own] if own else [])])
    conf.update(settings.conf)
    return SessionPlan(
        conf=conf,
        warehouse=Path(warehouse.removeprefix("file:")),
        metastore_uri=metastore_uri,
        derby_home=derby_home,
        local_python=not under_spark_submit and master.startswith("local"),
    )


def spark_conf_dir() -> Path | None:
    """Where spark-submit looks for its configuration: ``$SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``."""
    if directory := os.environ.get("SPARK_CONF_DIR"):
        return Path(directory)
    home = os.environ.get("SPARK_HOME")
    return Path(home) / "conf" if home else None


def _read_properties(path: Path) -> dict[str, str]:
    """A Java properties file such as ``spark-defaults.conf`` (``key value`` or ``key=value`` lines)."""
    if not path.is_file():
        return {}
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and (match := _PROPERTY.match(line)):
            entries[match[1]] = match[2].strip()
    return entries


def _read_hadoop_xml(path: Path) -> dict[str, str]:
    """A Hadoop configuration file such as ``hive-site.xml``: its ``<property>`` names and values."""
    if not path.is_file():
        return {}
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise InputError(f"cannot read {path}: {error}") from None
    return {
        (item.findtext("name") or "").strip(): (item.findtext("value") or "").strip()
        for item in root.iter("property")
        if item.findtext("name")
    }


def _suite_log4j2() -> Path:
    """The suite's log4j2 configuration, written once per content to the temporary directory."""
    path = Path(tempfile.gettempdir()) / (
        f"retrain-log4j2-{hashlib.sha256(_LOG4J2_CONFIG.encode()).hexdigest()[:12]}.properties"
    )
    if not path.is_file():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(_LOG4J2_CONFIG)
        partial.replace(path)
    return path


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
