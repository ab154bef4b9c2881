"""`retrain demo-data`."""

from __future__ import annotations

import pytest

from retrain.demo.seed import SeededRepository

from .invoke import run


def test_demo_data_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    code, _, err = run(capsys, "demo-data", "--repo", str(seeded.path))
    assert code == 1
    assert "already exists" in err
    assert "--force" in err
