"""ArgoHook: an :class:`retrain.fanout.argo_client.ArgoClient` from an Airflow connection of type ``argo``."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook, Connection

from retrain.fanout.argo_client import ArgoClient


def argo_client(connection: Connection) -> ArgoClient:
    """Host (with scheme and port) is the Argo Server; the password is the bearer token."""
    extra = connection.extra_dejson
    scheme = connection.schema or "https"
    host = connection.host or ""
    base = host if "://" in host else f"{scheme}://{host}"
    if connection.port:
        base = f"{base}:{connection.port}"
    return ArgoClient(
        base,
        token=connection.password,
        namespace=extra.get("namespace", "ml-training"),
        verify=extra.get("verify", True),
    )


class ArgoHook(BaseHook):
    """Talk to an Argo Server.

    :param argo_conn_id: connection of type ``argo``: host and port of the Argo Server, schema
        ``https`` or ``http``, password = bearer token, extra ``{"namespace": ..., "verify": true}``.
    """

    conn_name_attr = "argo_conn_id"
    default_conn_name = "argo_default"
    conn_type = "argo"
    hook_name = "Argo Workflows"

    def __init__(self, argo_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.argo_conn_id = argo_conn_id

    def get_client(self) -> ArgoClient:
        return argo_client(self.get_connection(self.argo_conn_id))

    async def aget_client(self) -> ArgoClient:
        return argo_client(await self.aget_connection(self.argo_conn_id))

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login"],
            "relabeling": {"password": "Bearer token", "schema": "Scheme (https or http)"},
            "placeholders": {
                "host": "argo-server.argo.svc",
                "port": "2746",
                "extra": '{"namespace": "ml-training"}',
            },
        }
