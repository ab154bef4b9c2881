"""A local cluster for ``make up`` and the slow tests: Hive metastore + Spark master and workers.

The suite's code is the same as against a production cluster; only the settings it reads
(:meth:`LocalCluster.env`) point at these loopback services.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from retrain.cluster import process
from retrain.cluster.hive_metastore import MetastoreConfig, start_metastore, wait_for_metastore
from retrain.cluster.spark_standalone import (
    StandaloneConfig,
    start_master,
    start_worker,
    wait_for_master,
    wait_for_workers,
)

log = logging.getLogger(__name__)
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class LocalCluster:
    """Where the running services are."""

    master_url: str
    master_ui_url: str
    metastore_uri: str
    warehouse: Path
    log_dir: Path
    worker_dirs: tuple[Path, ...]  # executors' stdout/stderr land in <dir>/<app id>/<executor id>/
    started_in: float  # seconds from the first process to every health check passing

    def env(self) -> dict[str, str]:
        """The settings the suite reads (:meth:`retrain.spark.SparkSettings.from_env`)."""
        return {
            "RETRAIN_SPARK_MASTER": self.master_url,
            "RETRAIN_HIVE_METASTORE": self.metastore_uri,
            "RETRAIN_WAREHOUSE": str(self.warehouse),
            "SPARK_LOCAL_IP": "127.0.0.1",  # drivers on loopback too, like the daemons
            # Executors on these workers run this venv's Python (pyarrow, torch), not python3 on PATH.
            "PYSPARK_PYTHON": sys.executable,
        }


def cluster_configs(
    home: Path, warehouse: Path, workers: int, worker_memory: str
) -> tuple[MetastoreConfig, StandaloneConfig]:
    """The services' settings, on free ports; every file under ``home`` except the warehouse."""
    home, warehouse = home.resolve(), warehouse.resolve()
    metastore = MetastoreConfig(
        port=process.free_port(),
        database=warehouse.parent / f"{warehouse.name}-metastore",  # where embedded Derby keeps it
        warehouse=warehouse,
        log_dir=home / "logs",
    )
    spark = StandaloneConfig(
        master_port=process.free_port(),
        master_ui_port=process.free_port(),
        worker_ui_ports=tuple(process.free_port() for _ in range(workers)),
        directory=home,
        worker_memory=worker_memory,
    )
    return metastore, spark


@contextmanager
def local_cluster(
    home: Path,
    *,
    warehouse: Path | None = None,
    workers: int = 2,
    worker_memory: str = "2g",
    timeout: float = START_TIMEOUT,
) -> Iterator[LocalCluster]:
    """Start the metastore, the master and ``workers`` workers; stop them all on exit.

    Startup fails within ``timeout`` seconds with a :class:`~retrain.cluster.process.ServiceError`
    naming the service that did not come up and quoting its log; whatever had started is stopped.

    :param warehouse: the Hive warehouse (default ``<home>/warehouse``); its Derby metastore
        database is ``<warehouse>-metastore``, as with Spark's embedded metastore.
    """
    metastore_config, spark_config = cluster_configs(
        home, warehouse or home / "warehouse", workers, worker_memory
    )
    spark_config.directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    started = time.monotonic()
    deadline = started + timeout
    with ExitStack() as running:
        # Each stop is registered as soon as its process exists: a failed start leaves no JVM behind.
        metastore = start_metastore(metastore_config, env)
        running.callback(process.stop, metastore)
        master = start_master(spark_config, env)
        running.callback(process.stop, master)
        wait_for_master(master, spark_config, deadline)
        worker_services = []
        for index in range(workers):
            worker = start_worker(spark_config, index, env)
            running.callback(process.stop, worker)
            worker_services.append(worker)
        wait_for_metastore(metastore, deadline)
        wait_for_workers(master, worker_services, spark_config, deadline)
        cluster = LocalCluster(
            master_url=spark_config.master_url,
            master_ui_url=spark_config.master_ui_url,
            metastore_uri=metastore_config.uri,
            warehouse=metastore_config.warehouse,
            log_dir=metastore_config.log_dir,
            worker_dirs=tuple(spark_config.worker_dir(i) for i in range(workers)),
            started_in=time.monotonic() - started,
        )
        log.info(
            "local cluster up in %.0fs: %s, %s", cluster.started_in, cluster.master_url, cluster.metastore_uri
        )
        yield cluster
