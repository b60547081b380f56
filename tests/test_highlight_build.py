"""The prebuilt front-end extension is the build of its current source, and the package installs all of it.

The build is committed (installing needs no Node), so nothing else would notice a source changed
without `make labextension`; and a wheel missing a file of it would load nothing in JupyterLab.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from setuptools.config.setupcfg import read_configuration

REPO = Path(__file__).resolve().parents[1]
HIGHLIGHT = REPO / "lakemagic" / "highlight"
# What stamp.js hashes, in its order.
SOURCES = ["package.json", "package-lock.json", "tsconfig.json", "src/index.ts", "src/keywords.ts"]
INSTALLED = "share/jupyter/labextensions/lakemagic"


def test_the_committed_build_was_made_from_the_current_source():
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HIGHLIGHT / name).read_bytes())
    stamp = (HIGHLIGHT / "labextension.sha256").read_text().strip()
    assert stamp == digest.hexdigest(), ("lakemagic/highlight/ changed since its build: run `make labextension` "
                                         "and commit lakemagic/highlight/labextension/")


def test_the_extension_colours_the_keywords_of_this_duckdb():
    """src/keywords.ts is what keywords.py writes from the installed DuckDB: an upgrade's new keywords are noticed."""
    spec = importlib.util.spec_from_file_location("keywords", HIGHLIGHT / "keywords.py")
    keywords = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keywords)
    assert (HIGHLIGHT / "src" / "keywords.ts").read_text() == keywords.keywords_module(), (
        "DuckDB's keywords changed: run `make labextension` and commit lakemagic/highlight/")


def test_the_package_installs_the_whole_extension_where_jupyterlab_looks(monkeypatch):
    """setup.cfg's data_files, as setuptools expands them, hold the extension's metadata and every file it loads."""
    monkeypatch.chdir(REPO)  # setuptools expands the globs from the current folder
    installed = {f"{folder}/{Path(path).name}": REPO / path
                 for folder, paths in read_configuration("setup.cfg")["options"]["data_files"] for path in paths}
    metadata = json.loads(installed[f"{INSTALLED}/package.json"].read_text())
    assert metadata["name"] == "lakemagic" and json.loads(installed[f"{INSTALLED}/install.json"].read_text())
    built = sorted(path.relative_to(HIGHLIGHT / "labextension").as_posix()
                   for path in (HIGHLIGHT / "labextension").rglob("*") if path.is_file())
    assert sorted(name.removeprefix(f"{INSTALLED}/") for name in installed) == built
    assert f"{INSTALLED}/{metadata['jupyterlab']['_build']['load']}" in installed  # the entry JupyterLab loads
