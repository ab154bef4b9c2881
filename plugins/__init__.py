"""The suite's AirflowPlugin, installed with the provider as ``retrain_airflow.plugins``.

``pip install retrain-suite[airflow]`` registers it twice over, as Airflow's own providers do: the
``airflow.plugins`` entry point (loaded by default) and the provider's ``plugins`` list (loaded when
``[core] lazy_discover_providers`` is False; Airflow then skips the second copy by name and lists
it among plugin import errors). Do not also copy this folder into ``[core] plugins_folder``: that
would be a third copy of the same plugin.
"""
