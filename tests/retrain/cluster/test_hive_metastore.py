"""The metastore service's command line: Derby database, warehouse and logging where Spark expects them."""

from __future__ import annotations

from pathlib import Path

from retrain.cluster.hive_metastore import LOG4J_SELECTOR, MetastoreConfig
from retrain.cluster.install import spark_home


def test_the_command_runs_hive_2_3_from_pyspark_jars_on_its_own_derby_database(tmp_path: Path) -> None:
    config = MetastoreConfig(
        port=19083,
        database=tmp_path / "warehouse-metastore",
        warehouse=tmp_path / "warehouse",
        log_dir=tmp_path / "logs",
    )
    command = config.command()
    assert command[-3:] == ["org.apache.hadoop.hive.metastore.HiveMetaStore", "-p", "19083"]
    assert command[command.index("-cp") + 1] == f"{spark_home() / 'jars'}/*"
    assert list(spark_home().glob("jars/hive-metastore-2.3.*.jar"))
    settings = dict(arg[2:].split("=", 1) for arg in command if arg.startswith("-D"))
    assert settings["javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={tmp_path / 'warehouse-metastore'};create=true"
    )
    assert settings["hive.metastore.warehouse.dir"] == str(tmp_path / "warehouse")
    assert settings["datanucleus.schema.autoCreateAll"] == "true"
    assert settings["hive.metastore.schema.verification"] == "false"
    assert settings["log4j2.contextSelector"] == LOG4J_SELECTOR
    assert settings["hive.root.logger"] == "console"  # into the service's log, not /tmp/<user>/hive.log
    assert settings["derby.system.home"] == str(tmp_path / "logs")
    assert config.uri == "thrift://127.0.0.1:19083"
    assert config.log == tmp_path / "logs" / "hive-metastore.log"
