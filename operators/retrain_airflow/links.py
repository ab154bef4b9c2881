"""Operator extra links.

Airflow 3 calls ``get_link`` on the worker when the task finishes and stores the result in XCom
(under ``_link_<class name>``) for the UI. Each link here returns the URL its operator pushed to
XCom under :attr:`XComUrlLink.source_key` while running.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom


class XComUrlLink(BaseOperatorLink):
    """A link whose target the task stored in XCom under :attr:`source_key` (empty if it stored none)."""

    source_key: ClassVar[str]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return str(XCom.get_value(ti_key=ti_key, key=self.source_key) or "")


class DataDocsLink(XComUrlLink):
    """The Great Expectations Data Docs page of the validated commit."""

    name = "Data Docs"
    source_key = "data_docs_url"


class ArgoWorkflowLink(XComUrlLink):
    """The training workflow in the Argo UI."""

    name = "Argo workflow"
    source_key = "argo_workflow_url"


class MLflowRunLink(XComUrlLink):
    """The pipeline's MLflow parent run (each adapter is a child run under it)."""

    name = "MLflow run"
    source_key = "mlflow_run_url"


class DoltCommitDiffLink(XComUrlLink):
    """The processed commit range's diff in the Dolt repository's web UI (DoltHub, DoltLab)."""

    name = "Dolt commit diff"
    source_key = "dolt_commit_diff_url"
