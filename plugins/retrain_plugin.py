"""Airflow plugin of the retrain suite: the "Releases" view in the Airflow UI.

Installed with the provider (see ``__init__``). The app itself lives in the provider package
(``retrain_airflow.releases_app``) so it is typed and tested on its own; the operators' extra links
(MLflow run, Argo workflow, Dolt commit diff, Data Docs) are registered by the provider info.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from retrain_airflow.releases_app import create_app


class RetrainPlugin(AirflowPlugin):
    name = "retrain"
    # AirflowPlugin's interface is class attributes.
    fastapi_apps = [  # noqa: RUF012
        {"app": create_app(), "url_prefix": "/releases", "name": "Retrain releases"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Releases",
            "href": "releases/",  # relative: works behind a reverse proxy's path prefix too
            "url_route": "releases",  # shown inside the Airflow UI at /plugin/releases
            "category": "browse",
            "destination": "nav",
        }
    ]
