"""The MLflow pyfunc flavour of an adapter: ``mlflow.pyfunc.load_model(uri).predict(frame)``."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from retrain.adapters.model import AdapterClassifier, default_base_model


class AdapterPyfunc(PythonModel):
    """Scores a frame with a ``text`` column: returns ``label`` and one ``p_<label>`` column per class.

    The base model is not inside the logged model (every adapter shares it): it is found through
    the model config's ``base_model``, else ``$RETRAIN_BASE_MODEL``, else the packaged default.
    """

    def load_context(self, context: Any) -> None:
        base = (context.model_config or {}).get("base_model") or default_base_model()
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
