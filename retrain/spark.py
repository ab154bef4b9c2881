"""Spark sessions with Hive support: embedded Derby metastore by default, a thrift metastore in production."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


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
