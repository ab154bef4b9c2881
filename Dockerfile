# syntax=docker/dockerfile:1
# Targets:
#   airflow  - Airflow 3.3 with the suite (retrain + the retrain_airflow provider and its plugin), dags/;
#              trains (local backend) and scores (in-task Spark) too
#   trainer  - the `retrain` CLI for Argo training pods: no Airflow; PyPI's Linux torch wheels carry CUDA
#   scorer   - the trainer plus Java and PySpark: the Spark driver of argo_templates/hive-scoring.yaml
#   server   - the KServe model server (`retrain serve`, .[train,serve] pinned by constraints-serve.txt), no release
#   serving  - the server with one release's adapters baked in: `docker run retrain-serving:<MD5>` serves it
# Build: docker build --target trainer -t retrain-trainer:$(git rev-parse --short HEAD) .

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml setup.cfg constraints.txt constraints-serve.txt README.md ./
COPY retrain ./retrain
COPY operators ./operators
COPY plugins ./plugins

FROM ${AIRFLOW_IMAGE} AS airflow
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --from=source --chown=airflow:root /src /opt/retrain
RUN pip install --no-cache-dir -c /opt/retrain/constraints.txt "/opt/retrain[airflow,train,spark]"
COPY --chown=airflow:root dags /opt/airflow/dags

FROM ${PYTHON_IMAGE} AS trainer
RUN useradd --create-home --uid 1000 retrain
COPY --from=source /src /opt/retrain
RUN pip install --no-cache-dir -c /opt/retrain/constraints.txt "/opt/retrain[train]" \
    && rm -rf /opt/retrain
USER retrain
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ENTRYPOINT ["retrain"]

FROM trainer AS scorer
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY --from=source /src /opt/retrain
RUN pip install --no-cache-dir -c /opt/retrain/constraints.txt "/opt/retrain[train,spark]" \
    && rm -rf /opt/retrain
USER retrain

# server: the model server alone. Its own pins (constraints-serve.txt: KServe's dependencies differ from
# Airflow's), installed once and shared by every release's image, which only adds the release on top.
FROM ${PYTHON_IMAGE} AS server
RUN useradd --create-home --uid 1000 retrain
COPY --from=source /src /opt/retrain
RUN pip install --no-cache-dir -c /opt/retrain/constraints-serve.txt "/opt/retrain[train,serve]" \
    && rm -rf /opt/retrain
# Numeric, so Kubernetes can check runAsNonRoot (kserve_templates/inferenceservice.yaml sets it).
USER 1000
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
EXPOSE 8080 8081
ENTRYPOINT ["retrain"]

# serving: exactly one release's adapters and its manifest, tagged and labelled with the release id
# (the manifest's MD5); `retrain serve` answers the Open Inference Protocol on 8080 (REST) and 8081 (gRPC).
# Context: `retrain release context --release MD5 --out build/release`, then
# docker build --target serving --build-arg RELEASE_ID=MD5 --build-context release=build/release \
#     -t retrain-serving:MD5 .
# On Kubernetes: kserve_templates/inferenceservice.yaml (`retrain release inference-service --release MD5`).
FROM server AS serving
ARG RELEASE_ID
LABEL org.opencontainers.image.version="${RELEASE_ID}" io.retrain.release-id="${RELEASE_ID}"
COPY --from=release --chown=retrain:retrain . /opt/release
ENV RETRAIN_RELEASE_DIR=/opt/release RETRAIN_RELEASE_ID="${RELEASE_ID}"
RUN test "$(cat /opt/release/RELEASE_ID)" = "${RELEASE_ID}"
EXPOSE 8080 8081
# Slim images have no curl: Python's urllib asks the server whether the release is loaded.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=4)"]
ENTRYPOINT ["retrain"]
CMD ["serve", "--host", "0.0.0.0"]
