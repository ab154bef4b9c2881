"""A logged adapter's MLmodel file without the training host's paths.

MLflow records in MLmodel where the model's code file and each artifact folder were on the host
that logged it (``model_code_path``, the artifacts' ``uri``), and where the tracking store keeps
this copy (``artifact_path``). Loading reads none of them (the code file by its name, artifacts by
their path inside the model), so they are dropped: a copied model names no folder of this host.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

MLMODEL = "MLmodel"
PYFUNC = "python_function"


def drop_host_paths(client: Any, model_id: str, artifact_location: str) -> None:
    """Rewrite the MLmodel of logged model ``model_id`` (at ``artifact_location``) in its store."""
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="retrain-mlmodel-") as folder:
        path = mlflow.artifacts.download_artifacts(f"{artifact_location}/{MLMODEL}", dst_path=folder)
        model = Model.load(path)
        model.artifact_path = None  # MLflow leaves the key out when it is empty
        pyfunc = model.flavors[PYFUNC]
        pyfunc["model_code_path"] = Path(pyfunc["model_code_path"]).name  # MLflow loads it by name
        for artifact in pyfunc.get("artifacts", {}).values():
            del artifact["uri"]
        model.save(path)
        client.log_model_artifacts(model_id, folder)
