"""The multi-adapter inference engine: one base model, many customers' LoRA adapters, mixed batches."""

from retrain.engine.engine import AdapterEngine, EngineTimings, Predictions, RowFeatures
from retrain.engine.errors import AdapterFileError, EngineError, EngineInputError, UnknownCustomerError

__all__ = [
    "AdapterEngine",
    "AdapterFileError",
    "EngineError",
    "EngineInputError",
    "EngineTimings",
    "Predictions",
    "RowFeatures",
    "UnknownCustomerError",
]
