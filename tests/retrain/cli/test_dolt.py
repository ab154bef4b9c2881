"""`retrain dolt ...`: JSON on stdout, one-line errors on stderr, non-zero exit on failure."""

from __future__ import annotations

import json

import pytest

from retrain.demo.seed import SeededRepository

from .invoke import run


def test_head_log_changed(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    repo = str(seeded.path)
    assert run(capsys, "dolt", "head", "--repo", repo) == (0, seeded.commits[-1] + "\n", "")
    code, out, _ = run(capsys, "dolt", "log", "--repo", f"doltlite://{seeded.path.resolve()}")
    assert code == 0
    assert out.splitlines()[0].startswith(seeded.commits[-1])
    code, out, _ = run(
        capsys,
        "dolt",
        "changed",
        "--repo",
        repo,
        "--table",
        "examples",
        "--key",
        "customer_id",
        "--from",
        seeded.commits[0],
        "--to",
        "main",
    )
    assert code == 0
    assert json.loads(out) == {"keys": sorted(seeded.changed_in_last_commit)}


def test_sense_then_advance(capsys: pytest.CaptureFixture[str], seeded: SeededRepository) -> None:
    repo = str(seeded.path)
    sense = (
        "dolt",
        "sense",
        "--repo",
        repo,
        "--consumer",
        "cli",
        "--table",
        "examples",
        "--key",
        "customer_id",
    )
    code, out, _ = run(capsys, *sense)
    assert code == 0
    assert json.loads(out)["all_changed"] is True
    assert json.loads(run(capsys, *sense)[1]) is None
    head = seeded.commits[-1]
    assert run(capsys, "dolt", "advance", "--repo", repo, "--consumer", "cli", "--commit", head)[:2] == (
        0,
        head + "\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dolt", "head", "--branch", "release"), "unknown branch 'release'"),
        (
            (
                "dolt",
                "changed",
                "--table",
                "examples",
                "--key",
                "customer_id",
                "--from",
                "zz",
                "--to",
                "main",
            ),
            "unknown commit 'zz'",
        ),
        (
            (
                "dolt",
                "changed",
                "--table",
                "exmples",
                "--key",
                "customer_id",
                "--from",
                "main",
                "--to",
                "main",
            ),
            "table 'exmples' does not exist",
        ),
        (
            ("dolt", "changed", "--table", "examples", "--key", "tenant", "--from", "main", "--to", "main"),
            "column 'tenant' does not exist",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_1(
    capsys: pytest.CaptureFixture[str], seeded: SeededRepository, args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, args[0], args[1], "--repo", str(seeded.path), *args[2:])
    assert code == 1
    assert out == ""
    assert err.startswith("retrain: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_dolt_file(capsys: pytest.CaptureFixture[str], tmp_path: pytest.TempPathFactory) -> None:
    code, _, err = run(capsys, "dolt", "head", "--repo", "/nonexistent/training.db")
    assert code == 1
    assert "does not exist" in err
