# The two set-up commands are `make demo` and `make test`; both build .venv from constraints.txt first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The model server's own venv: KServe and Airflow cannot share one (psutil<6 against >=6.1).
SERVE_VENV := .venv-serve
SERVE_BIN := $(SERVE_VENV)/bin
SERVE_STAMP := $(SERVE_VENV)/.installed-stamp
VAR := var
export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME ?= $(CURDIR)/$(VAR)/airflow

# `make up` runs Airflow and MLflow on loopback over the demo data until Ctrl-C.
.PHONY: venv venv-serve demo up browser test test-fast test-serving test-slow lint bench scale argo-templates kserve-templates constraints constraints-serve clean

venv: $(STAMP)

$(STAMP): constraints.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
	$(BIN)/pip install --quiet -c constraints.txt -e ".[airflow,train,spark,dev]"
	touch $(STAMP)

venv-serve: $(SERVE_STAMP)

$(SERVE_STAMP): constraints-serve.txt setup.cfg pyproject.toml
	test -x $(SERVE_BIN)/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_BIN)/pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
	$(SERVE_BIN)/pip install --quiet -c constraints-serve.txt -e ".[train,serve,serve-test]"
	touch $(SERVE_STAMP)

demo: venv
	$(BIN)/python -m retrain.demo.run --workdir $(VAR)/demo

up: venv
	$(BIN)/python -m retrain.demo.up --home $(VAR)/up

test: venv lint test-fast test-serving test-slow

test-fast: venv
	$(BIN)/pytest -m "not slow and not serving"

# The KServe model server, started for real from .venv-serve. Only tests/retrain/serving is collected:
# .venv-serve has no Airflow, Spark or Playwright for the other test modules to import.
test-serving: venv-serve
	$(SERVE_BIN)/pytest -m serving tests/retrain/serving

# Some slow tests start the model server from .venv-serve (checks against a live endpoint, skew).
test-slow: venv venv-serve browser
	$(BIN)/pytest -m slow

# Debian's Chromium for the UI test (Playwright drives it; it never downloads a browser). Needs root;
# without it the browser test is skipped and says why.
browser:
	@test -x /usr/bin/chromium || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || \
	  echo "could not install Debian's chromium: the browser test will be skipped"

lint: venv
	$(BIN)/ruff check retrain operators plugins dags tests bench
	$(BIN)/ruff format --check retrain operators plugins dags tests bench
	$(BIN)/mypy

bench: venv venv-serve
	$(BIN)/python bench/dolt_diff.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/release.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/serving.py

# 1,000 customers (and 100 beside them) through every stage, with figures and a plot, then one
# retrain_scheduled run over 1,000 under make up's services (about an hour on 2 cores).
scale: venv
	$(BIN)/python bench/scale.py --plot $(VAR)/bench/scale.png
	$(BIN)/python bench/airflow_scale.py

# WorkflowTemplates are generated from the Hera code (retrain/argo_templates.py); a test fails when they differ.
argo-templates: venv
	$(BIN)/python -m retrain.argo_templates argo_templates

# The KServe InferenceService template, release id left as ${RELEASE_ID} (retrain/serving/inference_service.py);
# a test fails when it differs. One release's manifest: `retrain release inference-service --release MD5`.
kserve-templates: venv
	$(BIN)/python -m retrain.serving.inference_service kserve_templates

# Re-pin after changing setup.cfg's ranges: resolves into a scratch venv and freezes it.
constraints:
	rm -rf /tmp/retrain-constraints && $(PYTHON) -m venv /tmp/retrain-constraints
	/tmp/retrain-constraints/bin/pip install --quiet ".[airflow,train,spark,dev]" "torch==2.13.0"
	{ echo "# Pinned versions for the suite's virtual environment (make venv). Regenerate with: make constraints"; \
	  echo "torch==2.13.0"; \
	  /tmp/retrain-constraints/bin/pip freeze --exclude-editable | grep -v -i -E "^(torch|pip|setuptools|wheel|retrain-suite)( @|==)"; } > constraints.txt

# The same for the model server's venv (make venv-serve): .[train,serve] and the serving tests' tools.
constraints-serve:
	rm -rf /tmp/retrain-constraints-serve && $(PYTHON) -m venv /tmp/retrain-constraints-serve
	/tmp/retrain-constraints-serve/bin/pip install --quiet ".[train,serve,serve-test]" "torch==2.13.0"
	{ echo "# Pinned versions for the model server's virtual environment (make venv-serve). Regenerate with: make constraints-serve"; \
	  echo "torch==2.13.0"; \
	  /tmp/retrain-constraints-serve/bin/pip freeze --exclude-editable | grep -v -i -E "^(torch|pip|setuptools|wheel|retrain-suite)( @|==)"; } > constraints-serve.txt

clean:
	rm -rf $(VAR) .pytest_cache .mypy_cache .ruff_cache
