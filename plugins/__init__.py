"""The suite's AirflowPlugin, installed with the provider as ``retrain_airflow.plugins``.

``pip install retrain-suite[airflow]`` registers it once, through the ``airflow.plugins`` entry
point, which Airflow loads whatever ``[core] lazy_discover_providers`` says. The provider info does
not list it as well: with eager provider discovery Airflow would load that second copy, skip it by
name and report "Plugin 'retrain' already registered" among the plugin import errors (a banner in
the UI). Do not copy this folder into ``[core] plugins_folder`` either, for the same reason.
"""
