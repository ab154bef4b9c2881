"""The Dockerfile's structure: no Docker engine runs here, so its stages and sources are checked as text."""

from __future__ import annotations

import re
from pathlib import Path

from retrain.scoring.argo import ArgoScoringSpec
from retrain.serving.inference_service import READY_PATH, InferenceServiceSpec, build_inference_service

ROOT = Path(__file__).resolve().parents[1]
LINES = [
    line.strip()
    for line in (ROOT / "Dockerfile").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def stages() -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    current = None
    for line in LINES:
        match = re.fullmatch(r"FROM\s+\S+\s+AS\s+(\w+)", line, flags=re.IGNORECASE)
        if match:
            current = match.group(1)
            result[current] = []
        elif current:
            result[current].append(line)
    return result


def test_targets_exist() -> None:
    assert {"airflow", "trainer", "scorer", "server", "serving"} <= set(stages())


def test_every_copied_path_exists() -> None:
    for line in LINES:
        if line.startswith("COPY") and "--from=" not in line:
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_trainer_has_no_airflow_and_installs_with_constraints() -> None:
    trainer = " ".join(stages()["trainer"])
    assert "[train]" in trainer
    assert "airflow" not in trainer
    for name, body in stages().items():
        # The model server has its own pins: KServe's dependencies do not resolve with Airflow's.
        constraints = "constraints-serve.txt" if name == "server" else "constraints.txt"
        for line in body:
            if "pip install" in line:
                assert f"-c /opt/retrain/{constraints} " in line, f"stage {name}: {line}"


def test_serving_target_is_built_from_one_release_context() -> None:
    serving = stages()["serving"]
    assert "ARG RELEASE_ID" in serving
    assert any(line.startswith("LABEL") and "${RELEASE_ID}" in line for line in serving)
    assert any(line.startswith("COPY --from=release") for line in serving)
    assert any('test "$(cat /opt/release/RELEASE_ID)" = "${RELEASE_ID}"' in line for line in serving)


def test_serving_image_runs_the_model_server_on_its_release() -> None:
    server, serving = " ".join(stages()["server"]), stages()["serving"]
    assert '"/opt/retrain[train,serve]"' in server
    assert "-c /opt/retrain/constraints-serve.txt" in server
    assert "airflow" not in server
    assert any(line.startswith("COPY") and "constraints-serve.txt" in line for line in stages()["source"])
    assert re.search(r"\bFROM server AS serving\b", "\n".join(LINES))
    assert "ENV RETRAIN_RELEASE_DIR=/opt/release" in " ".join(serving)
    assert serving[-2:] == ['ENTRYPOINT ["retrain"]', 'CMD ["serve", "--host", "0.0.0.0"]']
    spec = InferenceServiceSpec()
    assert f"EXPOSE {spec.http_port} {spec.grpc_port}" in serving
    healthcheck = " ".join(serving).split("HEALTHCHECK ", 1)[1]
    assert f"http://127.0.0.1:{spec.http_port}{READY_PATH}" in healthcheck
    assert "urllib.request" in healthcheck  # slim images have no curl
    assert "curl" not in healthcheck
    # The InferenceService runs the image as this user with runAsNonRoot, which needs a numeric USER.
    container = build_inference_service(spec)["spec"]["predictor"]["containers"][0]
    assert f"USER {container['securityContext']['runAsUser']}" in stages()["server"]


def test_scorer_adds_java_and_pyspark_for_the_argo_spark_driver() -> None:
    scorer = " ".join(stages()["scorer"])
    assert "openjdk-17-jre-headless" in scorer
    assert "[train,spark]" in scorer
    assert "airflow" not in scorer
    assert ArgoScoringSpec().image.split("/")[-1].startswith("scorer:")
