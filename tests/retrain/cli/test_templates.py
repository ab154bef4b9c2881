"""`retrain templates`: what a wheel install writes is what this repository commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from .invoke import run

ROOT = Path(__file__).resolve().parents[3]


def test_templates_writes_the_committed_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "templates", "--out", str(tmp_path))
    assert code == 0
    written = sorted(Path(line).relative_to(tmp_path) for line in out.splitlines())
    committed = sorted(
        p.relative_to(ROOT)
        for folder in ("argo_templates", "kserve_templates")
        for p in (ROOT / folder).glob("*.yaml")
    )
    assert written == committed
    for path in written:
        assert (tmp_path / path).read_text() == (ROOT / path).read_text(), f"run `make templates`: {path}"


def test_a_file_in_the_way_is_one_line_naming_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    code, out, err = run(capsys, "templates", "--out", str(blocker))
    assert (code, out) == (1, "")
    where = f"{blocker}: Not a directory: {blocker}/argo_templates"
    assert err == f"retrain: error: cannot write templates under {where}\n"
    assert blocker.read_text() == "keep me"
