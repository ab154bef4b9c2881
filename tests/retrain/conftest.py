from __future__ import annotations

from typing import Any

import pytest

from .argo_schema import load_definitions


@pytest.fixture(scope="session")
def argo_definitions() -> dict[str, Any]:
    """Argo's JSON Schema definitions (the test is skipped, saying why, when the schema is absent)."""
    return load_definitions()
