"""Spark sessions: the Hive metastore's first contact (one that is down fails in bounded time, before any
JVM starts), and the user's own Spark configuration (spark-defaults.conf, hive-site.xml, log4j2) winning
over the suite's ``RETRAIN_*`` settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.errors import InputError
from retrain.spark import (
    MetastoreUnreachableError,
    SparkConfFiles,
    SparkSettings,
    check_metastore,
    session_conf,
    spark_session,
)

from .sockets import BOUND, MARGIN, Elapsed, closed_port, silent_port

LOG4J_ENV = (
    "SPARK_HOME",
    "SPARK_SUBMIT_OPTS",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "LOG4J_CONFIGURATION_FILE",
)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' connect timeout, and none of the machine's own Spark or log4j2 configuration."""
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    for name in LOG4J_ENV:
        monkeypatch.delenv(name, raising=False)


def hive_site(**properties: str) -> str:
    """A hive-site.xml setting ``properties`` (``_`` in a name stands for ``.``)."""
    items = "".join(
        f"<property><name>{name.replace('_', '.')}</name><value>{value}</value></property>"
        for name, value in properties.items()
    )
    return f'<?xml version="1.0"?><configuration>{items}</configuration>'


@pytest.fixture
def conf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$SPARK_CONF_DIR``."""
    directory = tmp_path / "conf"
    directory.mkdir()
    monkeypatch.setenv("SPARK_CONF_DIR", str(directory))
    return directory


@contextmanager
def closing_port() -> Iterator[int]:
    """A port whose server reads the request and hangs up, as a framed or SASL metastore does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        thread.join(5)
        listener.close()


def test_closed_metastore_fails_in_bound_before_spark_starts() -> None:
    uri = f"thrift://127.0.0.1:{closed_port()}"
    with Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        spark_session(SparkSettings(metastore_uri=uri))
    assert timer.seconds < BOUND + MARGIN
    assert str(raised.value) == f"cannot reach the Hive metastore at {uri} (Connection refused)"
    assert raised.value.retryable


def test_silent_metastore_fails_in_bound() -> None:
    with silent_port() as port, Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        check_metastore(f"thrift://127.0.0.1:{port}")
    assert BOUND * 0.9 < timer.seconds < BOUND + MARGIN
    assert str(raised.value) == (
        f"cannot reach the Hive metastore at thrift://127.0.0.1:{port} "
        f"(no answer within {BOUND:g}s, $RETRAIN_CONNECT_TIMEOUT)"
    )


def test_several_metastores_share_one_bound_and_one_answer_is_enough() -> None:
    down = f"thrift://127.0.0.1:{closed_port()}"
    with silent_port() as port, Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        check_metastore(f"{down}, thrift://127.0.0.1:{port},{down}")
    assert timer.seconds < BOUND + MARGIN
    assert str(raised.value).startswith(f"cannot reach the Hive metastore at {down} (Connection refused), ")
    assert str(raised.value).endswith(f"{down} (not tried: time is up)")
    with closing_port() as port:
        check_metastore(f"{down},thrift://127.0.0.1:{port}")


@pytest.mark.parametrize("uri", ["127.0.0.1:9083", "thrift://", "thrift://host:port", "http://host:9083"])
def test_a_malformed_metastore_uri_is_refused(uri: str) -> None:
    with pytest.raises(InputError, match=f"invalid Hive metastore URI '{uri}': use thrift://host:port"):
        check_metastore(uri)


def test_without_user_files_the_suite_fills_spark_keys_only(tmp_path: Path) -> None:
    plan = session_conf(
        SparkSettings(warehouse=str(tmp_path / "wh")), SparkConfFiles.load(), under_spark_submit=False
    )
    assert all(key.startswith("spark.") for key in plan.conf)  # spark-submit ignores any other key, warning
    assert plan.conf["spark.sql.warehouse.dir"] == str(tmp_path / "wh")
    assert plan.conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={tmp_path / 'wh-metastore'};create=true"
    )
    assert plan.conf["spark.hadoop.hive.exec.dynamic.partition.mode"] == "nonstrict"
    options = plan.conf["spark.driver.extraJavaOptions"].split()
    assert options[0] == f"-Dderby.system.home={tmp_path}"
    assert options[1].startswith("-Dlog4j2.configurationFile=")
    assert "rootLogger.level = warn" in Path(options[1].split("=", 1)[1]).read_text()
    assert plan.metastore_uri is None
    assert plan.local_python


def test_spark_defaults_and_hive_site_win_over_retrain_settings(conf_dir: Path, tmp_path: Path) -> None:
    (conf_dir / "spark-defaults.conf").write_text(
        "# the user's\n"
        "spark.master                     local[1]\n"
        "spark.sql.shuffle.partitions=7\n"
        "spark.driver.extraJavaOptions: -Dmine=1 -Dlog4j2.level=info\n"
        "spark.hadoop.hive.metastore.uris  thrift://from-defaults:9083\n"
    )
    (conf_dir / "hive-site.xml").write_text(
        hive_site(
            hive_metastore_warehouse_dir="/data/warehouse", hive_metastore_uris="thrift://from-hive-site:1"
        )
    )
    settings = SparkSettings(master="yarn", warehouse="var/w", metastore_uri="thrift://from-env:9083")
    plan = session_conf(settings, SparkConfFiles.load(), under_spark_submit=False)
    for key in ("spark.master", "spark.sql.shuffle.partitions", "spark.sql.warehouse.dir"):
        assert key not in plan.conf
    assert not any("metastore.uris" in key or "jdo" in key for key in plan.conf)
    assert plan.metastore_uri == "thrift://from-defaults:9083"  # spark.hadoop.* first, as in Spark
    assert plan.warehouse == Path("/data/warehouse")
    assert plan.derby_home is None
    assert plan.local_python  # spark-defaults' local[1], not RETRAIN's yarn
    assert plan.conf["spark.driver.extraJavaOptions"].endswith(" -Dmine=1 -Dlog4j2.level=info")  # theirs last
    explicit = session_conf(
        SparkSettings(conf={"spark.sql.shuffle.partitions": "9"}),
        SparkConfFiles.load(),
        under_spark_submit=False,
    )
    assert explicit.conf["spark.sql.shuffle.partitions"] == "9"  # --conf beats the files


@pytest.mark.parametrize(
    "where", ["conf dir", "SPARK_SUBMIT_OPTS", "LOG4J_CONFIGURATION_FILE", "spark-submit"]
)
def test_a_user_log4j2_configuration_keeps_its_log_level(
    where: str, conf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "conf dir":
        (conf_dir / "log4j2.properties").write_text("rootLogger.level = info\n")
    elif where == "SPARK_SUBMIT_OPTS":
        monkeypatch.setenv(where, "-Dlog4j2.configurationFile=/etc/spark/log4j2.xml")
    elif where == "LOG4J_CONFIGURATION_FILE":
        monkeypatch.setenv(where, "/etc/spark/log4j2.xml")
    plan = session_conf(
        SparkSettings(warehouse=str(tmp_path)),
        SparkConfFiles.load(),
        under_spark_submit=where == "spark-submit",
    )
    assert "log4j2" not in plan.conf["spark.driver.extraJavaOptions"]


def test_a_broken_hive_site_is_named(conf_dir: Path) -> None:
    (conf_dir / "hive-site.xml").write_text("<configuration><property>")
    with pytest.raises(InputError, match=f"cannot read {conf_dir / 'hive-site.xml'}: no element found"):
        SparkConfFiles.load()


def test_a_hive_site_metastore_is_the_one_probed(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"thrift://127.0.0.1:{closed_port()}"
    (conf_dir / "hive-site.xml").write_text(hive_site(hive_metastore_uris=uri))
    monkeypatch.setenv("RETRAIN_HIVE_METASTORE", f"thrift://127.0.0.1:{closed_port()}")
    with Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        spark_session(SparkSettings.from_env())
    assert timer.seconds < BOUND + MARGIN
    assert str(raised.value) == f"cannot reach the Hive metastore at {uri} (Connection refused)"


SESSION = """
import json, sys
from pathlib import Path
from retrain.spark import SparkSettings, spark_session

spark = spark_session(SparkSettings(warehouse=sys.argv[1]))
assert spark_session(SparkSettings(warehouse=sys.argv[1])) is spark  # the running one, as it is
spark.sql("CREATE TABLE t (a STRING, ds STRING) USING hive PARTITIONED BY (ds)")
spark.createDataFrame([("x", "d1"), ("y", "d2")], ["a", "ds"]).write.insertInto("t", overwrite=True)
print(json.dumps({
    "rows": spark.table("t").count(),
    "warehouse": spark.conf.get("spark.sql.warehouse.dir"),
    "shuffle": spark.conf.get("spark.sql.shuffle.partitions"),
}))
"""


def test_a_session_honours_hive_site_and_spark_defaults_without_warnings(
    conf_dir: Path, tmp_path: Path
) -> None:
    """One real session (its own process: the conf dir is read when the JVM starts)."""
    warehouse = tmp_path / "hive-site-warehouse"
    (conf_dir / "hive-site.xml").write_text(hive_site(hive_metastore_warehouse_dir=str(warehouse)))
    (conf_dir / "spark-defaults.conf").write_text("spark.sql.shuffle.partitions 3\n")
    result = subprocess.run(
        [sys.executable, "-c", SESSION, str(tmp_path / "retrain-warehouse")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "rows": 2,  # two partitions written dynamically: the nonstrict mode took effect
        "warehouse": f"file:{warehouse}",
        "shuffle": "3",
    }
    assert sorted(p.name for p in warehouse.iterdir()) == ["t"]
    assert (tmp_path / "hive-site-warehouse-metastore" / "service.properties").is_file()  # Derby, beside it
    assert not (tmp_path / "retrain-warehouse").exists()
    noise = [line for line in result.stderr.splitlines() if " WARN " in line or "Warning" in line]
    # No "Ignoring non-Spark config property", hostname, native-hadoop, Hive or "existing session" warnings.
    assert noise == []
