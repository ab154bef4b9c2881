"""OpenLineage for the operators: what each task read and wrote, as datasets the ecosystem reads
(Marquez, DataHub, OpenMetadata, Astro).

An operator that reads or writes data sets ``self.lineage`` while it runs (plain records of this
module) and :class:`EmitsLineage` hands it to the OpenLineage provider when the task completes;
nothing is built or sent unless ``[openlineage] transport`` (or ``OPENLINEAGE_URL``) is configured.
The kinds of dataset, each with a stable namespace and name:

============= ============================================ =======================================
kind          namespace                                    name (facets)
============= ============================================ =======================================
Dolt table    ``dolt://host:port`` (sql-server),           ``<database>.<table>`` (``version``: the
              ``doltlite`` (an embedded file)              commit; ``retrainDoltCommit``: commit and
                                                           the range's start)
model version ``mlflow+<tracking URI>``                    ``adapter-<customer>`` (``version``;
                                                           ``retrainTraining``: training key and
                                                           code version)
release       ``mlflow+<tracking URI>``                    ``retrain-releases`` (``version``: the
                                                           release id, the manifest's MD5)
Hive table    ``hive://host:port`` (metastore service),    ``<database>.<table>`` (``subset``: the
              ``hive+file:///<warehouse>`` (embedded)      partition read or written)
folder        ``file``                                     its absolute path
============= ============================================ =======================================

A new kind of dataset is one more record class here; one more table of a kind already here (a new
Hive table, say) is one more record in its operator's ``lineage``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from retrain.release.store import RELEASES_EXPERIMENT

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import DatasetFacet


class LineageDataset(ABC):
    """A dataset a task read or wrote; its OpenLineage form is built only when lineage is sent."""

    @abstractmethod
    def location(self) -> tuple[str, str]:
        """Its OpenLineage namespace and name."""

    def facets(self) -> dict[str, DatasetFacet]:
        return {}

    def partition(self) -> Mapping[str, str]:
        """The partition read or written (column -> value); empty for the whole dataset."""
        return {}

    def as_input(self) -> InputDataset:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import base_subset_dataset as subset

        namespace, name = self.location()
        read: dict[str, Any] = {}
        if condition := _partition_condition(self.partition()):
            read["subset"] = subset.InputSubsetInputDatasetFacet(inputCondition=condition)
        return InputDataset(namespace, name, facets=self.facets(), inputFacets=read)

    def as_output(self) -> OutputDataset:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import base_subset_dataset as subset

        namespace, name = self.location()
        written: dict[str, Any] = {}
        if condition := _partition_condition(self.partition()):
            written["subset"] = subset.OutputSubsetOutputDatasetFacet(outputCondition=condition)
        return OutputDataset(namespace, name, facets=self.facets(), outputFacets=written)


@dataclass(frozen=True)
class DoltTable(LineageDataset):
    """``table`` of the repository behind connection ``dolt_conn_id``, as of ``commit``;
    ``previous_commit`` is where the range of commits the task covered starts (None: everything)."""

    dolt_conn_id: str
    table: str
    commit: str
    previous_commit: str | None = None

    def location(self) -> tuple[str, str]:
        from retrain_airflow.hooks.dolt import DoltHook

        hook = DoltHook(self.dolt_conn_id)
        info = hook.get_openlineage_database_info(hook.get_connection(self.dolt_conn_id))
        namespace = f"{info.scheme}://{info.authority}" if info.authority else info.scheme
        return namespace, f"{info.database}.{self.table}"

    def facets(self) -> dict[str, DatasetFacet]:
        from openlineage.client.facet_v2 import dataset_version_dataset as version

        from retrain_airflow.lineage_facets import RetrainDoltCommitDatasetFacet

        return {
            "version": version.DatasetVersionDatasetFacet(datasetVersion=self.commit),
            "retrainDoltCommit": RetrainDoltCommitDatasetFacet(
                commit=self.commit, previousCommit=self.previous_commit
            ),
        }


@dataclass(frozen=True)
class ModelVersion(LineageDataset):
    """Version ``version`` of registered model ``model_name`` (``adapter-<customer>``); a version
    the task trained carries its ``training_key`` and ``code_version``."""

    tracking_uri: str
    model_name: str
    version: str
    training_key: str = ""
    code_version: str = ""

    def location(self) -> tuple[str, str]:
        return mlflow_namespace(self.tracking_uri), self.model_name

    def facets(self) -> dict[str, DatasetFacet]:
        from openlineage.client.facet_v2 import dataset_version_dataset as version

        from retrain_airflow.lineage_facets import RetrainTrainingDatasetFacet

        facets: dict[str, DatasetFacet] = {
            "version": version.DatasetVersionDatasetFacet(datasetVersion=self.version)
        }
        if self.training_key:
            facets["retrainTraining"] = RetrainTrainingDatasetFacet(
                trainingKey=self.training_key, codeVersion=self.code_version
            )
        return facets


@dataclass(frozen=True)
class Release(LineageDataset):
    """The release ``release_id`` (its manifest's MD5), as the MLflow store records it."""

    tracking_uri: str
    release_id: str

    def location(self) -> tuple[str, str]:
        return mlflow_namespace(self.tracking_uri), RELEASES_EXPERIMENT

    def facets(self) -> dict[str, DatasetFacet]:
        from openlineage.client.facet_v2 import dataset_version_dataset as version

        return {"version": version.DatasetVersionDatasetFacet(datasetVersion=self.release_id)}


@dataclass(frozen=True)
class HiveTable(LineageDataset):
    """Hive ``table`` (``db.table``, or ``table`` of ``default``), or the ``partitions`` of it
    given. The metastore service at ``metastore_uri`` names it; without one, the embedded metastore
    beside ``warehouse``."""

    table: str
    metastore_uri: str | None
    warehouse: str
    partitions: Mapping[str, str] = field(default_factory=dict)

    def location(self) -> tuple[str, str]:
        if self.metastore_uri:
            namespace = f"hive://{urlsplit(self.metastore_uri).netloc}"
        else:
            namespace = f"hive+{Path(self.warehouse).resolve().as_uri()}"
        return namespace, self.table if "." in self.table else f"default.{self.table}"

    def partition(self) -> Mapping[str, str]:
        return self.partitions


@dataclass(frozen=True)
class Folder(LineageDataset):
    """A folder of files the task wrote (a report)."""

    path: str

    def location(self) -> tuple[str, str]:
        return "file", str(Path(self.path).resolve())


@dataclass(frozen=True)
class Lineage:
    """What a task read and wrote."""

    inputs: tuple[LineageDataset, ...] = ()
    outputs: tuple[LineageDataset, ...] = ()

    def to_openlineage(self) -> OperatorLineage[Any, Any]:
        from airflow.providers.openlineage.extractors import OperatorLineage

        return OperatorLineage(
            inputs=[d.as_input() for d in self.inputs], outputs=[d.as_output() for d in self.outputs]
        )


class EmitsLineage:
    """Mixin of the operators that read or write data: ``execute`` sets ``self.lineage``; the
    OpenLineage provider reads it when the task completes. A task that failed or was skipped before
    setting it reports no datasets."""

    lineage = Lineage()  # each run's own is set by execute

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        return self.lineage.to_openlineage()


def mlflow_namespace(tracking_uri: str) -> str:
    """``mlflow+<tracking URI>``: where the store is, without credentials, query or fragment."""
    parts = urlsplit(tracking_uri)
    if not parts.scheme:  # "databricks", a relative folder
        return f"mlflow+{tracking_uri}"
    host = parts.netloc.rpartition("@")[2]
    return f"mlflow+{parts.scheme}://{host}{parts.path}".rstrip("/")


def _partition_condition(partition: Mapping[str, str]) -> Any:
    """OpenLineage's condition for one partition; None for a whole dataset."""
    if not partition:
        return None
    from openlineage.client.facet_v2 import base_subset_dataset as subset

    identifier = "/".join(f"{column}={value}" for column, value in partition.items())
    return subset.PartitionSubsetCondition(
        partitions=[subset.Partition(dimensions=dict(partition), identifier=identifier)]
    )
