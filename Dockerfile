# syntax=docker/dockerfile:1
# Targets:
#   airflow  - Airflow 3.3 with the suite (retrain + retrain_airflow provider), dags/ and plugins/
#   trainer  - the `retrain` CLI for Argo training pods: no Airflow; PyPI's Linux torch wheels carry CUDA
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
RUN pip install --no-cache-dir -c /opt/retrain/constraints.txt "/opt/retrain[spark]"
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
