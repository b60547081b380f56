# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: demo test benchmark

demo: $(VENV)/.installed
	$(BIN)/lakemagic demo

test: $(VENV)/.installed
	$(BIN)/pytest

benchmark: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.lambda_path
	$(BIN)/python -m benchmarks.fanout

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
