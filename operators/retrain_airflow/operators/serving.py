"""ServingCheckOperator: a deployed model server must answer a release's golden scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from retrain.release.store import ReleaseStore
from retrain.serving.check import check_endpoint
from retrain.serving.protocol import DEFAULT_MODEL_NAME
from retrain_airflow.lineage import EmitsLineage, Lineage, Release
from retrain_airflow.operators.failures import fails_fast


class ServingCheckOperator(EmitsLineage, BaseOperator):
    """Send every adapter's stored reference sample to ``endpoint`` and fail on any difference.

    Run it after a release is rolled out (or on a schedule): the in-process golden-score check
    proves the release's files, this one proves the server clients reach actually serves them.
    The task fails when the server serves another release (its ``model_version`` is not
    ``release_id``), when a score differs beyond ``tolerance`` (naming customer, model version and
    rows), or when the endpoint does not answer within ``timeout`` (naming the URL). Thin over
    :func:`retrain.serving.check.check_endpoint`; returns rows checked and the largest difference
    per customer.

    :param endpoint: the server's base URL, e.g. ``http://retrain-serving-predictor.ml-serving``
        (templated).
    :param release_id: the release (manifest MD5) the server must serve (templated).
    :param model_name: V2 model name in ``/v2/models/<name>/infer``.
    :param tolerance: largest allowed difference between a served and a stored score.
    :param timeout: seconds each request may take (default ``$RETRAIN_CONNECT_TIMEOUT``, else 15).
    :param mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the embedded store).
    """

    template_fields: Sequence[str] = ("endpoint", "release_id")

    def __init__(
        self,
        *,
        endpoint: str,
        release_id: str,
        model_name: str = DEFAULT_MODEL_NAME,
        tolerance: float = 1e-4,
        timeout: float | None = None,
        mlflow_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint, self.release_id, self.model_name = endpoint, release_id, model_name
        self.tolerance, self.timeout, self.mlflow_uri = tolerance, timeout, mlflow_uri

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        store = ReleaseStore.open(self.mlflow_uri)
        self.lineage = Lineage(inputs=(Release(store.tracking_uri, self.release_id),))
        checked = check_endpoint(
            store,
            self.release_id,
            self.endpoint,
            model_name=self.model_name,
            tolerance=self.tolerance,
            timeout=self.timeout,
        )
        for line in checked.lines():
            self.log.info("%s", line)
        return checked.to_dict()
