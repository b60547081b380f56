# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: demo test benchmark labextension
# The prebuilt front-end extension that colours %%lakesql cells (its build is committed: see the README).
HIGHLIGHT = lakemagic/highlight
LABEXTENSIONS = $(VENV)/share/jupyter/labextensions

demo: $(VENV)/.installed
	$(BIN)/lakemagic demo

test: $(VENV)/.installed
	$(BIN)/pytest

benchmark: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.lambda_path
	$(BIN)/python -m benchmarks.fanout

# An editable install leaves out data_files, so the built extension is linked where JupyterLab looks for it.
# Its modules live in folders of other names (lambda_src/lakelambda, deploy/, notebooks/), which setuptools
# maps with an import finder and announces every time with an "Editable installation" warning block: a note
# about the finder, with nothing to act on. That one warning is filtered out; any other still shows.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' $(BIN)/pip install --quiet -e '.[test]'
	mkdir -p $(LABEXTENSIONS)
	ln -sfn $(CURDIR)/$(HIGHLIGHT)/labextension $(LABEXTENSIONS)/lakemagic
	touch $@

# Rebuilds the extension from $(HIGHLIGHT)/src (its keywords from this DuckDB) with Node and npm; commit what it changes.
labextension: $(VENV)/.installed
	$(BIN)/python $(HIGHLIGHT)/keywords.py
	cd $(HIGHLIGHT) && npm ci --no-audit --no-fund && PATH="$(CURDIR)/$(BIN):$$PATH" npm run build
