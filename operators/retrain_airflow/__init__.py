"""Airflow provider for the retrain suite: thin hooks, sensors, triggers and operators over ``retrain``.

What Airflow reads of it before importing anything else is in :mod:`retrain_airflow.get_provider_info`.
"""
