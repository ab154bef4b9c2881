# syntax=docker/dockerfile:1
# Targets:
#   airflow  - Airflow 3.3 with the suite (retrain + retrain_airflow provider), dags/ and plugins/;
#              trains (local backend) and scores (in-task Spark) too
#   trainer  - the `retrain` CLI for Argo training pods: no Airflow; PyPI's Linux torch wheels carry CUDA
#   scorer   - the trainer plus Java and PySpark: the Spark driver of argo_templates/hive-scoring.yaml
#   serving  - one release's adapters (see below)
# Build: docker build --target trainer -t retrain-trainer:$(git rev-parse --short HEAD) .

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml setup.cfg constraints.txt README.md ./
COPY retrain ./retrain
COPY operators ./operators

FROM ${AIRFLOW_IMAGE} AS airflow
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --from=source --chown=airflow:root /src /opt/retrain
RUN pip install --no-cache-dir -c /opt/retrain/constraints.txt "/opt/retrain[airflow,train,spark]"
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root expectations /opt/airflow/expectations

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

# serving: exactly one release's adapters and its manifest, tagged and labelled with the release id
# (the manifest's MD5). Context: `retrain release context --release MD5 --out build/release`, then
# docker build --target serving --build-arg RELEASE_ID=MD5 --build-context release=build/release \
#     -t retrain-serving:MD5 .
FROM trainer AS serving
ARG RELEASE_ID
LABEL org.opencontainers.image.version="${RELEASE_ID}" io.retrain.release-id="${RELEASE_ID}"
COPY --from=release --chown=retrain:retrain . /opt/release
ENV RETRAIN_RELEASE_DIR=/opt/release RETRAIN_RELEASE_ID="${RELEASE_ID}"
RUN test "$(cat /opt/release/RELEASE_ID)" = "${RELEASE_ID}"
