"""Fixtures every test module may use: the real local servers (servers.py) and a fresh IPython shell."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

pytest_plugins = ["servers"]


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
    InteractiveShell.clear_instance()
