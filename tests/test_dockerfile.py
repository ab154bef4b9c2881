"""The Dockerfile's structure: no Docker engine runs here, so its stages and sources are checked as text."""

from __future__ import annotations

import re
from pathlib import Path

from retrain.scoring.argo import ArgoScoringSpec

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
    assert {"airflow", "trainer", "scorer", "serving"} <= set(stages())


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
    for body in stages().values():
        for line in body:
            if "pip install" in line:
                assert "-c /opt/retrain/constraints.txt" in line


def test_serving_target_is_built_from_one_release_context() -> None:
    serving = stages()["serving"]
    assert "ARG RELEASE_ID" in serving
    assert any(line.startswith("LABEL") and "${RELEASE_ID}" in line for line in serving)
    assert any(line.startswith("COPY --from=release") for line in serving)
    assert any('test "$(cat /opt/release/RELEASE_ID)" = "${RELEASE_ID}"' in line for line in serving)


def test_scorer_adds_java_and_pyspark_for_the_argo_spark_driver() -> None:
    scorer = " ".join(stages()["scorer"])
    assert "openjdk-17-jre-headless" in scorer
    assert "[train,spark]" in scorer
    assert "airflow" not in scorer
    assert ArgoScoringSpec().image.split("/")[-1].startswith("scorer:")
