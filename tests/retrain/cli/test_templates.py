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
    where = f"{blocker}/argo_templates: {blocker} is a file, not a directory"
    assert err == f"retrain: error: cannot create {where}\n"
    assert blocker.read_text() == "keep me"


def test_never_writes_through_links_or_into_a_foreign_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, theirs = tmp_path / "o", tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "secret.yaml").write_text("keep me")
    assert run(capsys, "templates", "--out", str(out))[0] == 0  # its own output: written again below
    kserve = out / "kserve_templates" / "inferenceservice.yaml"
    kserve.unlink()
    kserve.symlink_to(theirs / "secret.yaml")
    code, _, err = run(capsys, "templates", "--out", str(out))
    assert (code, err) == (
        1,
        f"retrain: error: refusing to replace {kserve}: it is a symbolic link, not a regular file\n",
    )
    kserve.unlink()
    argo = out / "argo_templates"
    for path in argo.iterdir():
        path.unlink()
    argo.rmdir()
    argo.symlink_to(theirs, target_is_directory=True)
    code, _, err = run(capsys, "templates", "--out", str(out))
    assert (code, err) == (
        1,
        f"retrain: error: output directory {argo} is a symbolic link: give the directory it points to\n",
    )
    argo.unlink()
    argo.mkdir()
    (argo / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "templates", "--out", str(out))
    assert code == 1
    assert err.startswith(f"retrain: error: refusing to write into {argo}: it holds notes.txt, which retrain")
    assert sorted(p.name for p in theirs.iterdir()) == ["secret.yaml"]
    assert (theirs / "secret.yaml").read_text() == "keep me"
    (argo / "notes.txt").unlink()
    assert run(capsys, "templates", "--out", str(out))[0] == 0
