"""Fixtures every test module may use: the real local servers (servers.py), a fresh IPython shell, the package."""

from __future__ import annotations

import atexit
import os
import secrets

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from lakedeploy.package import build_package
from lakedeploy.wheels import InstalledPackages, Target

pytest_plugins = ["servers"]

# Modules that take tens of seconds each (real servers started, packages built, month-sized data,
# fan-outs retried on purpose): `pytest -m "not slow"` is the quick loop, the whole suite is CI's.
SLOW_MODULES = {"test_bench", "test_big_results", "test_deploy", "test_fanout_failures", "test_fanout_run",
                "test_package", "test_waiting"}


def pytest_collection_modifyitems(items):
    """Mark each test by what it needs, from the fixtures it uses: `browser` (chromium and a Jupyter
    server), `notebooks` (papermill runs a notebook), `aws` (the local S3 and Lambda servers); the
    first two and SLOW_MODULES are also `slow`."""
    for item in items:
        module = item.module.__name__
        needs = {"browser": "browser" in item.fixturenames,
                 "notebooks": module == "test_notebooks" or "papermill" in item.name,
                 "aws": "moto_endpoint" in item.fixturenames}
        for marker, needed in needs.items():
            if needed:
                item.add_marker(marker)
        if needs["browser"] or needs["notebooks"] or module in SLOW_MODULES:
            item.add_marker("slow")


@pytest.fixture(scope="session", autouse=True)
def reuse_scope_of_the_tests():
    """One reuse scope for the session, so no test makes the user's own in the real ~/.lakemagic
    (tests of that file point HOME at a folder of their own); restored afterwards."""
    saved = os.environ.get("LAKEMAGIC_REUSE_SCOPE")
    os.environ["LAKEMAGIC_REUSE_SCOPE"] = secrets.token_hex(32)
    yield os.environ["LAKEMAGIC_REUSE_SCOPE"]
    if saved is None:
        os.environ.pop("LAKEMAGIC_REUSE_SCOPE", None)
    else:
        os.environ["LAKEMAGIC_REUSE_SCOPE"] = saved


@pytest.fixture
def ipython():
    """A new IPython shell with lakemagic loaded, so saved views and %config never carry over between tests."""
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "lakemagic")
    yield shell
    shell.history_manager.end_session()
    # Each shell registers its exit work (a namespace reset and a full garbage collection) with atexit, which
    # also keeps the shell and its namespace alive: hundreds of them cost a minute at the suite's exit.
    atexit.unregister(shell.atexit_operations)
    InteractiveShell.clear_instance()


@pytest.fixture(scope="session")
def local_package(tmp_path_factory) -> str:
    """The deployment package for this machine's Python, from the installed wheels: built once per session."""
    cache = tmp_path_factory.getbasetemp() / "lakemagic-cache"
    return build_package(Target.local(), InstalledPackages(), cache_dir=cache).path


@pytest.fixture
def stored_results(monkeypatch):
    """Handlers made in this test store every result, however small, as big results are (none inline)."""
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
