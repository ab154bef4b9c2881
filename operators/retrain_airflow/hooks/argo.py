"""ArgoHook: an :class:`retrain.fanout.argo_client.ArgoClient` from an Airflow connection of type ``argo``."""

from __future__ import annotations

import requests
from airflow.sdk import BaseHook, Connection

from retrain.connect import CONNECT_TIMEOUT_ENV, connect_timeout, root_cause, total_timeout
from retrain.errors import InputError
from retrain.fanout.argo_client import ArgoClient

DEFAULT_NAMESPACE = "ml-training"


def server_url(connection: Connection) -> str:
    """The Argo Server's base URL: host (with or without a scheme), the schema as scheme, the port."""
    host = connection.host or ""
    if not host:
        raise InputError(f"Argo connection {connection.conn_id!r} names no host (the Argo Server)")
    base = host if "://" in host else f"{connection.schema or 'https'}://{host}"
    return f"{base}:{connection.port}" if connection.port else base


def argo_client(connection: Connection) -> ArgoClient:
    """Host (with scheme and port) is the Argo Server; the password is the bearer token."""
    extra = connection.extra_dejson
    return ArgoClient(
        server_url(connection),
        token=connection.password,
        namespace=extra.get("namespace", DEFAULT_NAMESPACE),
        verify=extra.get("verify", True),
    )


class ArgoHook(BaseHook):
    """Talk to an Argo Server.

    :param argo_conn_id: connection of type ``argo``: host and port of the Argo Server, schema
        ``https`` or ``http``, password = bearer token, extra ``{"namespace": ..., "verify": true}``.
        Its form in Airflow's UI is declared in :func:`retrain_airflow.get_provider_info`.
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

    def test_connection(self) -> tuple[bool, str]:
        """One GET of the workflow template submissions use: the server, the token and the namespace.

        Airflow's ``(ok, message)``; never raises. Bounded by ``$RETRAIN_CONNECT_TIMEOUT`` and not
        retried: a test should answer now. The message names the server, never the token.
        """
        try:
            connection = self.get_connection(self.argo_conn_id)
            base = server_url(connection)
        except Exception as error:  # a missing or incomplete connection: the UI shows why
            return False, str(error)
        from retrain.fanout.argo import TEMPLATE_NAME  # imports Hera and MLflow: not on the triggerer's path

        extra = connection.extra_dejson
        namespace = extra.get("namespace", DEFAULT_NAMESPACE)
        path = f"/api/v1/workflow-templates/{namespace}/{TEMPLATE_NAME}"
        headers = {"Authorization": f"Bearer {connection.password}"} if connection.password else {}
        try:
            timeout = connect_timeout()
            response = requests.get(
                base + path, headers=headers, verify=extra.get("verify", True), timeout=total_timeout(timeout)
            )
        except requests.Timeout:
            return False, f"Argo Server {base}: no answer within {timeout:g}s (${CONNECT_TIMEOUT_ENV})"
        except Exception as error:  # refused, DNS, TLS, or a bad $RETRAIN_CONNECT_TIMEOUT
            return False, f"cannot reach Argo Server at {base}: {root_cause(error)}"
        return _verdict(response, base, f"namespace {namespace}", TEMPLATE_NAME)


def _verdict(response: requests.Response, base: str, namespace: str, template: str) -> tuple[bool, str]:
    """What the answer to the GET of ``template`` in ``namespace`` says about the connection."""
    code = response.status_code
    if code == 200:
        return True, f"Argo Server {base}: {namespace} has workflow template {template}"
    if code == 401:
        return False, f"Argo Server {base} rejected the token (401)"
    if code == 403:
        return False, f"Argo Server {base}: the token may not read workflow templates in {namespace} (403)"
    if code == 404:
        return False, (
            f"Argo Server {base}: {namespace} has no workflow template {template} (404); "
            f"apply argo_templates/{template}.yaml"
        )
    return False, f"Argo Server {base}: GET workflow template answered HTTP {code} {response.reason}"
