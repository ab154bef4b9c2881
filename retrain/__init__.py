"""Retrain per-customer NLP adapters when their Dolt training data changes.

The core library: no Airflow imports, so Argo pods and Spark executors run it as is.
"""

__version__ = "0.1.0"
