"""``make demo`` end to end: a fresh process seeds, diffs and senses on embedded defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_retrains_only_the_healthy_edited_customer_and_releases(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrain.demo.run",
            "--workdir",
            str(tmp_path),
            "--customers",
            "3",
            "--examples",
            "80",  # 30 leaves initech_saas a holdout of 7 rows, where its adapter never says urgent
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    # Our lines only: library warnings are fixed or filtered (retrain.quiet), Spark's log level is set
    # before its session starts (retrain.spark).
    noise = [line for line in (out + result.stderr).splitlines() if "Warning" in line or " WARN " in line]
    assert noise == []
    assert "{'keys': ['globex_bank']}" in out  # the second seed commit changed customer #2 of 3
    assert "sensing again before the run finishes: None" in out
    assert "changed ['acme_air', 'initech_saas']" in out
    assert (
        "FAILED expect_column_values_to_be_in_set on column label: 1 unexpected row(s); e.g. 'Urgent!'" in out
    )
    assert "quarantined (not retrained): {'acme_air': ['expect_column_values_to_be_in_set on label']}" in out
    assert "retrain only: ['acme_air', 'globex_bank', 'initech_saas']" in out  # the first run trains everyone
    assert "retrain only: ['initech_saas']" in out
    assert "adapter-initech_saas v2" in out
    assert "~ initech_saas: v1 -> v2" in out  # the second release differs by exactly that adapter
    assert "+0 ~1 -0" in out
    assert "scored 60 rows of requests ds=2026-11-01" in out  # 3 customers x 20 rows, all released
    assert "watermark              retrain/demo/done = " in out
    # The planted shift's day is scored and measured (3 customers' 16-row holdouts are too few to alarm).
    assert "drift of scores ds=2026-11-04 release=" in out
    assert "drift                  ds=2026-11-04: flagged " in out
    assert (tmp_path / "training.db").read_bytes()[:4] == b"CTLD"
    assert (tmp_path / "warehouse" / "requests").is_dir()
    assert (
        tmp_path / "data_docs" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    ).is_file()


def test_demo_refuses_a_workdir_it_did_not_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrain.demo.run import main

    (tmp_path / "mlflow").mkdir()
    (tmp_path / "mlflow" / "mine.db").write_bytes(b"a user's own store")
    (tmp_path / "training.db").write_bytes(b"a user's own repo")
    monkeypatch.setattr(sys, "argv", ["run", "--workdir", str(tmp_path)])
    with pytest.raises(SystemExit) as raised:
        main()
    assert str(raised.value.code).startswith(
        f"make demo: refusing to write into {tmp_path}: it is not empty and has no .retrain-output marker"
    )
    assert (tmp_path / "mlflow" / "mine.db").read_bytes() == b"a user's own store"
    assert (tmp_path / "training.db").read_bytes() == b"a user's own repo"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine.db", "mlflow", "training.db"]
