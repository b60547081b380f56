"""The front-end extension's build is that of its current source, and the package installs all of it.

`make` builds lakemagic/highlight/ with npm (nothing built is committed); pytest run on its own after an
edit of the source would test an old build, and a wheel missing a file of it would load nothing in JupyterLab.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from setuptools.config.setupcfg import read_configuration

REPO = Path(__file__).resolve().parents[1]
HIGHLIGHT = REPO / "lakemagic" / "highlight"
BUILT = HIGHLIGHT / "labextension"
# What the Makefile builds the extension from (its HIGHLIGHT_SOURCES).
SOURCES = ["package.json", "package-lock.json", "tsconfig.json", "install.json", "src/*.ts"]
INSTALLED = "share/jupyter/labextensions/lakemagic"


def test_the_build_is_newer_than_its_source():
    assert (BUILT / "package.json").exists(), "lakemagic/highlight/ is not built: run `make .venv/.installed`"
    built = (BUILT / "package.json").stat().st_mtime
    changed = [path.relative_to(HIGHLIGHT).as_posix()
               for pattern in SOURCES for path in HIGHLIGHT.glob(pattern) if path.stat().st_mtime > built]
    assert changed == [], f"{changed} changed since the extension's build: run `make .venv/.installed`"


def test_the_extension_colours_the_keywords_of_this_duckdb():
    """src/keywords.ts is what keywords.py writes from the installed DuckDB: an upgrade's new keywords are noticed."""
    spec = importlib.util.spec_from_file_location("keywords", HIGHLIGHT / "keywords.py")
    keywords = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keywords)
    assert (HIGHLIGHT / "src" / "keywords.ts").read_text() == keywords.keywords_module(), (
        "DuckDB's keywords changed: run `make labextension` and commit lakemagic/highlight/src/keywords.ts")


def test_the_package_installs_the_whole_extension_where_jupyterlab_looks(monkeypatch):
    """setup.cfg's data_files, as setuptools expands them, hold the extension's metadata and every file it loads."""
    monkeypatch.chdir(REPO)  # setuptools expands the globs from the current folder
    installed = {f"{folder}/{Path(path).name}": REPO / path
                 for folder, paths in read_configuration("setup.cfg")["options"]["data_files"] for path in paths}
    metadata = json.loads(installed[f"{INSTALLED}/package.json"].read_text())
    assert metadata["name"] == "lakemagic" and json.loads(installed[f"{INSTALLED}/install.json"].read_text())
    built = sorted(path.relative_to(BUILT).as_posix() for path in BUILT.rglob("*") if path.is_file())
    assert sorted(name.removeprefix(f"{INSTALLED}/") for name in installed) == built
    assert f"{INSTALLED}/{metadata['jupyterlab']['_build']['load']}" in installed  # the entry JupyterLab loads
