"""`retrain release ...` end to end on a real MLflow store, and the serving build context it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.cli import main
from retrain.dolt import DoltRepository
from retrain.release.manifest import Manifest

FAST = TrainingParams(epochs=1, min_examples=10)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_build_list_show_diff_rollback_pin_context(
    capsys: pytest.CaptureFixture[str], repo: DoltRepository, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    release = ("release",)
    for customer in ("acme_air", "globex_bank"):
        train_and_register(
            repo, table="examples", commit="main", customer=customer, params=FAST, mlflow_uri=uri
        )
    # Adapters of 20 rows: the quality floor (tested in test_promotion.py) would rightly refuse some.
    code, out, _ = run(capsys, *release, "build", "--promote", "--no-floor", "--mlflow-uri", uri)
    assert code == 0
    assert "promoted acme_air v1: no production version yet" in out
    first = out.split("release ")[1].split()[0]
    assert len(first) == 32

    retrain_acme = {"table": "examples", "commit": "main", "customer": "acme_air", "params": FAST}
    train_and_register(repo, **retrain_acme, mlflow_uri=uri, force=True)  # type: ignore[arg-type]
    code, out, _ = run(
        capsys, *release, "build", "--promote", "--no-floor", "--tolerance", "1", "--mlflow-uri", uri
    )
    second = out.split("release ")[1].split()[0]
    assert "~ acme_air: v1 -> v2" in out
    assert second != first

    code, out, _ = run(capsys, *release, "list", "--mlflow-uri", uri)
    assert out.splitlines()[0].split()[2:4] == [second, "register"]
    assert "+0 ~1 -0" in out.splitlines()[0]
    code, out, _ = run(capsys, *release, "show", first, "--json", "--mlflow-uri", uri)
    assert Manifest.from_json(out).release_id == first
    code, out, _ = run(capsys, *release, "diff", first, second, "--mlflow-uri", uri)
    assert out.startswith("~ acme_air: v1 -> v2")

    code, out, _ = run(capsys, *release, "rollback", "--customer", "acme_air", "--mlflow-uri", uri)
    assert f"release {first} (rollback) rollback of acme_air: v2 -> v1" in out
    code, out, _ = run(capsys, *release, "show", "--as-of", "2999-01-01T00:00:00", "--mlflow-uri", uri)
    assert out.startswith(f"release {first}: 2 adapters")
    code, _, err = run(capsys, *release, "show", "--as-of", "2000-01-01", "--mlflow-uri", uri)
    assert code == 1
    assert "no release was in production at 2000-01-01" in err
    code, out, _ = run(
        capsys, *release, "pin", second, "--from", "2026-10-01", "--to", "2026-10-31", "--mlflow-uri", uri
    )
    assert out.strip() == f"release {second} pinned to 2026-10-01..2026-10-31"

    out_dir = tmp_path / "context"
    code, out, _ = run(
        capsys, *release, "context", "--release", second, "--out", str(out_dir), "--mlflow-uri", uri
    )
    assert code == 0
    assert (out_dir / "RELEASE_ID").read_text().strip() == second
    manifest = Manifest.from_json((out_dir / "manifest.json").read_text())
    assert manifest.release_id == second
    assert sorted(p.name for p in (out_dir / "adapters").iterdir()) == ["acme_air", "globex_bank"]
    for customer in ("acme_air", "globex_bank"):
        assert (
            out_dir / "adapters" / customer / "artifacts" / "adapter" / "adapter_model.safetensors"
        ).is_file()
    assert json.loads((out_dir / "manifest.json").read_text())["adapters"][0]["version"] == "2"
    assert not list(tmp_path.glob(".context.*"))  # no staging left beside it

    never = "feed" * 8
    code, _, err = run(capsys, *release, "diff", first, never, "--mlflow-uri", uri)
    assert code == 1
    assert err.strip() == f"retrain: error: unknown release {never!r}"
