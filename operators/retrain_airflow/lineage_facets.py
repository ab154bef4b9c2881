"""The suite's own OpenLineage facets. Imported only when lineage is sent (the OpenLineage client
is not needed to run the operators); their JSON Schemas ship in ``schemas/`` beside this module.
Field names are camelCase, as OpenLineage's own facets have them."""

from __future__ import annotations

import attr
from openlineage.client.facet_v2 import DatasetFacet

# Where the schemas of schemas/*.json are published, the repository's copy of this folder.
SCHEMAS_URL = "https://raw.githubusercontent.com/retrain-suite/retrain/main/operators/retrain_airflow/schemas"


@attr.define
class RetrainDoltCommitDatasetFacet(DatasetFacet):
    """The Dolt commit a task read a table at, and where the range of commits it covered starts
    (``previousCommit``, exclusive; None when it covered the table's whole history)."""

    commit: str
    previousCommit: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMAS_URL}/RetrainDoltCommitDatasetFacet.json#/$defs/RetrainDoltCommitDatasetFacet"


@attr.define
class RetrainTrainingDatasetFacet(DatasetFacet):
    """What made a model version: its training key (customer, commit, code version, parameters and
    base model, hashed: the same key is the same adapter) and the code version that trained it."""

    trainingKey: str
    codeVersion: str

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMAS_URL}/RetrainTrainingDatasetFacet.json#/$defs/RetrainTrainingDatasetFacet"
