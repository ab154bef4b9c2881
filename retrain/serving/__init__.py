"""Serving one release: the KServe model server (`retrain serve`) and its InferenceService manifest."""
