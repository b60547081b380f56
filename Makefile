# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: demo test benchmark labextension wheel
# The front-end extension that colours %%lakesql cells, built here from its TypeScript with Node and npm
# (nothing built is committed: see the README).
HIGHLIGHT = lakemagic/highlight
HIGHLIGHT_SOURCES = $(addprefix $(HIGHLIGHT)/,package.json package-lock.json tsconfig.json install.json) \
	$(wildcard $(HIGHLIGHT)/src/*.ts)
BUILT = $(HIGHLIGHT)/labextension/package.json
LABEXTENSIONS = $(VENV)/share/jupyter/labextensions
NEEDS_NPM = command -v npm > /dev/null && command -v node > /dev/null || { echo "make: building the front-end \
extension that colours %%lakesql cells needs Node.js 20 and npm: install them (Debian and Ubuntu: \
apt-get install nodejs npm; or https://nodejs.org), then run make again" >&2; exit 1; }

demo: $(VENV)/.installed
	$(BIN)/lakemagic demo

test: $(VENV)/.installed
	$(BIN)/pytest

# `make benchmark CHECK=1` fails on a missed goal (make takes no --check of its own: python -m benchmarks --check).
benchmark: $(VENV)/.installed
	$(BIN)/python -m benchmarks $(if $(CHECK),--check)

# Python and the project: editable, so an edit of lakemagic/ needs no reinstall. Its modules live in folders
# of other names (lambda_src/lakelambda, deploy/, notebooks/), which setuptools maps with an import finder and
# announces every time with an "Editable installation" warning block: a note about the finder, with nothing
# to act on. That one warning is filtered out; any other still shows.
$(VENV)/.python: setup.cfg pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' $(BIN)/pip install --quiet -e '.[test]'
	touch $@

# npm installs exactly what package-lock.json says, again only when that changes. No package's install script
# runs: the build needs none (the lock's one, @fortawesome/fontawesome-free's, prints its licence), and npm 11
# prints a warning block about any it was not told to allow.
$(HIGHLIGHT)/node_modules/.package-lock.json: $(HIGHLIGHT)/package-lock.json
	@$(NEEDS_NPM)
	cd $(HIGHLIGHT) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The build: TypeScript to lib/, then JupyterLab's builder (jupyter-builder, from the venv) to labextension/.
$(BUILT): $(HIGHLIGHT_SOURCES) $(HIGHLIGHT)/node_modules/.package-lock.json | $(VENV)/.python
	@$(NEEDS_NPM)
	@# jupyter-builder leaves a folder of its own in the temp directory: it is given one, removed after.
	cd $(HIGHLIGHT) && scratch=$$(mktemp -d) && { PATH="$(CURDIR)/$(BIN):$$PATH" TMPDIR=$$scratch npm run build; \
		built=$$?; rm -rf $$scratch; exit $$built; }
	touch $@

# The editable install leaves out data_files (or copies them once, by setuptools' version), so the build is
# linked where JupyterLab looks for it, replacing any copy.
$(VENV)/.installed: $(VENV)/.python $(BUILT)
	mkdir -p $(LABEXTENSIONS)
	rm -rf $(LABEXTENSIONS)/lakemagic
	ln -s $(CURDIR)/$(HIGHLIGHT)/labextension $(LABEXTENSIONS)/lakemagic
	touch $@

# Writes $(HIGHLIGHT)/src/keywords.ts from this DuckDB's keywords (commit it) and rebuilds the extension.
labextension: $(VENV)/.python
	$(BIN)/python $(HIGHLIGHT)/keywords.py
	$(MAKE) $(VENV)/.installed

# A wheel with the built extension inside, in dist/: installing it needs no Node.
wheel: $(BUILT)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
