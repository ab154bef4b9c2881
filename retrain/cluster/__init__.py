"""Real local engines: a Hive metastore service and a Spark standalone cluster, from pyspark's jars."""

from retrain.cluster.local import LocalCluster, local_cluster
from retrain.cluster.process import ServiceError

__all__ = ["LocalCluster", "ServiceError", "local_cluster"]
