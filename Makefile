# The two set-up commands are `make demo` and `make test`; both build .venv from constraints.txt first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VAR := var
export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME ?= $(CURDIR)/$(VAR)/airflow

# `make up` runs Airflow and MLflow on loopback over the demo data until Ctrl-C.
.PHONY: venv demo up browser test test-fast test-slow lint bench argo-templates constraints clean

venv: $(STAMP)

$(STAMP): constraints.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
	$(BIN)/pip install --quiet -c constraints.txt -e ".[airflow,train,spark,dev]"
	touch $(STAMP)

demo: venv
	$(BIN)/python -m retrain.demo.run --workdir $(VAR)/demo

up: venv
	$(BIN)/python -m retrain.demo.up --home $(VAR)/up

test: venv lint test-fast test-slow

test-fast: venv
	$(BIN)/pytest -m "not slow"

test-slow: venv browser
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

bench: venv
	$(BIN)/python bench/dolt_diff.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/release.py
	$(BIN)/python bench/scoring.py

# WorkflowTemplates are generated from the Hera code (retrain/argo_templates.py); a test fails when they differ.
argo-templates: venv
	$(BIN)/python -m retrain.argo_templates argo_templates

# Re-pin after changing setup.cfg's ranges: resolves into a scratch venv and freezes it.
constraints:
	rm -rf /tmp/retrain-constraints && $(PYTHON) -m venv /tmp/retrain-constraints
	/tmp/retrain-constraints/bin/pip install --quiet ".[airflow,train,spark,dev]" "torch==2.13.0"
	{ echo "# Pinned versions for the suite's virtual environment (make venv). Regenerate with: make constraints"; \
	  echo "torch==2.13.0"; \
	  /tmp/retrain-constraints/bin/pip freeze --exclude-editable | grep -v -i -E "^(torch|pip|setuptools|wheel|retrain-suite)( @|==)"; } > constraints.txt

clean:
	rm -rf $(VAR) .pytest_cache .mypy_cache .ruff_cache
