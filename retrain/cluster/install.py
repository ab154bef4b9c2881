"""Where the Spark and Hive installation comes from: pyspark's own package (scripts and jars)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from retrain.errors import InputError


def spark_home() -> Path:
    """pyspark's directory: ``bin/spark-class``, ``bin/spark-sql`` and ``jars/`` (Hive 2.3 included)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java() -> str:
    """The ``java`` the Spark scripts would run: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found or not Path(found).is_file():
        raise InputError("no java found (set JAVA_HOME or put Java 17+ on PATH): Spark and Hive need it")
    return found
