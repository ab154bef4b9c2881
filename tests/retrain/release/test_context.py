"""Release contexts (a release's adapters on local disk) from a real MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.cli import main
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.release.build import promote_all
from retrain.release.context import write_context
from retrain.release.manifest import AdapterFilesError
from retrain.release.store import ReleaseStore

from .conftest import WEIGHTS, Publish, weights_of

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease

FAST = TrainingParams(epochs=1, min_examples=10)


def test_a_release_changing_one_adapter_downloads_only_that_one(
    repo: DoltRepository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    trained = {
        customer: train_and_register(
            repo, table="examples", commit="main", customer=customer, params=FAST, mlflow_uri=uri
        ).version
        for customer in ("acme_air", "globex_bank")
    }
    first = promote_all(store, trained, floor=None).event.release_id
    cache = tmp_path / "scoring"
    write_context(store, first, cache / first, reuse_from=cache)

    repo.execute(Statement("UPDATE examples SET text = text || '!' WHERE customer_id = 'globex_bank'"))
    retrained = train_and_register(
        repo,
        table="examples",
        commit=repo.commit("edit"),
        customer="globex_bank",
        params=FAST,
        mlflow_uri=uri,
    )
    built = promote_all(store, {"globex_bank": retrained.version}, tolerance=1.0, floor=None)
    second = built.event.release_id
    assert second != first
    with caplog.at_level("INFO", logger="retrain.release.context"):
        write_context(store, second, cache / second, reuse_from=cache)
    assert f"release {second}: 1 adapters downloaded, 1 reused" in caplog.text
    kept, new = (cache / r / "adapters" for r in (first, second))
    weights = "artifacts/adapter/adapter_model.safetensors"
    assert (kept / "acme_air" / weights).stat().st_ino == (new / "acme_air" / weights).stat().st_ino  # linked
    assert (kept / "globex_bank" / weights).read_bytes() != (new / "globex_bank" / weights).read_bytes()


def context_cli(
    capsys: pytest.CaptureFixture[str], uri: str, release_id: str, out: str, *extra: str
) -> tuple[int, str]:
    code = main(["release", "context", "--release", release_id, "--out", out, "--mlflow-uri", uri, *extra])
    return code, capsys.readouterr().err


def test_context_refuses_a_foreign_out_and_leaves_it_byte_identical(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "notes.txt").write_text("keep me")
    (home / "sub" / "data.bin").write_bytes(bytes(range(256)))
    before = snapshot(home)
    (tmp_path / "mlflow.db").touch()  # release context reads a store, never creates one
    for extra in ((), ("--force",)):
        code, err = context_cli(capsys, f"sqlite:///{tmp_path / 'mlflow.db'}", "0" * 32, str(home), *extra)
        assert code == 1
        assert err == (
            f"retrain: error: refusing to replace {home}: it is not empty and has no .retrain-output marker, "
            "so retrain did not make it; give a new or empty directory\n"
        )
    assert snapshot(home) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "mlflow.db"]  # no staging beside it


def test_context_names_a_file_the_current_directory_and_a_file_as_parent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("a file")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.db").touch()  # release context reads a store, never creates one
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cases = {
        str(a_file): f"output directory {a_file} is a file",
        ".": f"output directory {tmp_path} is the current directory or contains it: give a new directory",
        "file.txt/out": f"cannot create {a_file / 'out'}: {a_file} is a file, not a directory",
    }
    for out, message in cases.items():
        code, err = context_cli(capsys, uri, "0" * 32, out, "--force")
        assert (code, err) == (1, f"retrain: error: {message}\n"), out
    assert a_file.read_text() == "a file"


def test_context_replaces_its_own_out_only_with_force(
    capsys: pytest.CaptureFixture[str], trained_release: TrainedRelease, tmp_path: Path
) -> None:
    uri, release_id = trained_release.store.tracking_uri, trained_release.release_id
    out = tmp_path / "parent" / "context"  # missing parents are created
    assert context_cli(capsys, uri, release_id, str(out)) == (0, "")
    (out / "stale.txt").write_text("left by hand in the old context")
    before = snapshot(out)
    code, err = context_cli(capsys, uri, release_id, str(out))
    assert (code, err) == (
        1,
        f"retrain: error: {out} already holds a release context: pass --force to replace it\n",
    )
    assert snapshot(out) == before
    assert context_cli(capsys, uri, release_id, str(out), "--force") == (0, "")
    assert not (out / "stale.txt").exists()
    assert (out / "RELEASE_ID").read_text() == release_id + "\n"
    released = trained_release.store.manifest(release_id).adapters
    assert sorted(p.name for p in (out / "adapters").iterdir()) == sorted(a.customer for a in released)
    assert sorted(p.name for p in out.parent.iterdir()) == ["context"]  # neither staging nor the old one


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_truncated_adapter_fails_the_context_naming_customer_version_and_file(
    release_store: ReleaseStore, publish: Publish, tmp_path: Path
) -> None:
    publish("acme_air")
    publish("globex_bank")
    release = release_store.register(release_store.production_manifest()).release_id
    weights = weights_of(release_store, "globex_bank", "1")
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    out = tmp_path / "context"
    with pytest.raises(AdapterFilesError) as raised:
        write_context(release_store, release, out)
    assert str(raised.value) == (
        f"adapter of customer globex_bank (adapter-globex_bank v1): {WEIGHTS} does not match the SHA-256 "
        "in the release manifest (truncated or altered)"
    )
    assert not out.exists()  # nothing half-written
    weights.write_bytes(intact)
    write_context(release_store, release, out)
    assert (out / "adapters" / "globex_bank" / WEIGHTS).read_bytes() == intact
