"""A Hive Metastore thrift service from pyspark's own jars (Hive 2.3), on a Derby database.

Spark sessions then share one catalog over ``thrift://`` instead of each opening the Derby files
itself (embedded Derby admits one JVM at a time), so scoring jobs can run side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrain.cluster import process
from retrain.cluster.install import java, spark_home

NAME = "Hive metastore"
# Without it log4j2 picks Hive's async context selector and dies on the missing LMAX disruptor.
LOG4J_SELECTOR = "org.apache.logging.log4j.core.selector.ClassLoaderContextSelector"


@dataclass(frozen=True)
class MetastoreConfig:
    """One metastore service.

    :param database: the Derby database directory. :func:`retrain.spark.spark_session`'s embedded
        metastore keeps it beside the warehouse (``<warehouse>-metastore``), so a warehouse seeded
        without the service is served as is.
    :param warehouse: where managed tables live; Spark must use the same absolute path.
    """

    port: int
    database: Path
    warehouse: Path
    log_dir: Path
    heap: str = "512m"

    @property
    def uri(self) -> str:
        return f"thrift://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.log_dir / "hive-metastore.log"

    def command(self) -> list[str]:
        settings = {
            "log4j2.contextSelector": LOG4J_SELECTOR,
            "hive.root.logger": "console",  # Hive's log4j2 config would write to /tmp/<user>/hive.log
            "derby.system.home": str(self.log_dir),  # derby.log
            "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={self.database};create=true",
            "datanucleus.schema.autoCreateAll": "true",
            "hive.metastore.schema.verification": "false",
            "hive.metastore.warehouse.dir": str(self.warehouse),
        }
        return [
            java(),
            f"-Xmx{self.heap}",
            *(f"-D{key}={value}" for key, value in settings.items()),
            "-cp",
            str(spark_home() / "jars" / "*"),
            "org.apache.hadoop.hive.metastore.HiveMetaStore",
            "-p",
            str(self.port),
        ]


def start_metastore(config: MetastoreConfig, env: dict[str, str]) -> process.Service:
    """Start the service; :func:`wait_for_metastore` tells when it answers."""
    config.warehouse.mkdir(parents=True, exist_ok=True)
    return process.start(
        NAME, config.command(), port=config.port, log=config.log, env=env, cwd=config.log_dir
    )


def wait_for_metastore(service: process.Service, deadline: float) -> None:
    """Wait until the thrift port accepts connections (the schema is created before it listens)."""
    process.wait_until(service, lambda: process.port_open(service.port), "did not open its port", deadline)
