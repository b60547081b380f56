"""The reuse scope (issue 20, finding 3): how the notebook finds it, and what the edge accepts.

Whether another scope's results show (they must not) is tested on both engines
in test_reuse.py; here, the scope file in a HOME of the test's own, %config
and the environment, and garbled scopes.
"""

from __future__ import annotations

import os
import re
import stat

import pytest
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakelambda.errors import ProtocolError
from lakemagic.reuse_scope import ENVIRONMENT, ReuseScopeError, reuse_scope

from test_reuse import BY_PAYMENT, stored_result_files
import events


@pytest.mark.parametrize("scope, problem", [
    ("short", "32 to 256 characters, not 5"),
    ("x" * 257, "32 to 256 characters, not 257"),
    (12345, "a reuse scope is a string"),
    (" " + "a" * 40, "printable ASCII"),
    ("é" * 40, "printable ASCII"),
    ("a" * 40 + "\n", "printable ASCII"),
])
def test_a_garbled_scope_is_refused_at_the_edge_and_in_the_notebook(scope, problem):
    request = dict(events.query_request("SELECT 1", {}, 1), reuse_scope=scope)
    with pytest.raises(ProtocolError, match="is not null or a reuse scope of 32 to 256 characters, printable ASCII"):
        protocol.parse_request(request)  # the edge says what a scope is; the notebook says what is wrong with this one
    if isinstance(scope, str):
        with pytest.raises(ReuseScopeError, match=re.escape(problem)):
            reuse_scope(scope)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME of the test's own, with no scope in the environment (monkeypatch restores both)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    return tmp_path


def test_the_users_own_scope_is_made_once_readable_only_by_them(home):
    path = home / ".lakemagic" / "reuse-scope"
    made = reuse_scope()
    assert re.fullmatch(r"[0-9a-f]{64}", made) and path.read_text().strip() == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert reuse_scope() == made and os.listdir(path.parent) == ["reuse-scope"]  # no draft left behind


def test_a_configured_scope_comes_before_the_environment_and_the_file(home, monkeypatch):
    own, team, configured = reuse_scope(), "team-" + "t" * 40, "configured-" + "c" * 40
    monkeypatch.setenv(ENVIRONMENT, team)
    assert (reuse_scope(), reuse_scope(configured)) == (team, configured) and own not in (team, configured)


@pytest.mark.parametrize("content, mode, complaint", [
    (b"not a secret\n", 0o600, "does not hold a reuse scope (a reuse scope is 32 to 256"),
    (b"\xff" * 64, 0o600, "does not hold a reuse scope (it is not text)"),
    (b"a" * 64, 0o644, "may be read by other users"),
])
def test_a_garbled_or_shared_scope_file_is_a_clear_error(home, content, mode, complaint):
    path = home / ".lakemagic" / "reuse-scope"
    path.parent.mkdir()
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(ReuseScopeError, match=re.escape(complaint)) as refused:
        reuse_scope()
    assert str(path) in str(refused.value)


def test_the_magic_reuses_within_its_configured_scope_only(ipython, local_taxi_lake, tmp_path, stored_results):
    import shutil

    folder = tmp_path / "lake"
    shutil.copytree(local_taxi_lake, folder, ignore=shutil.ignore_patterns("_lakemagic"))
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(folder)!r}")
    for scope, files in (("a" * 40, 1), ("a" * 40, 1), ("b" * 40, 2), ("a" * 40, 2)):
        ipython.run_line_magic("config", f"LakeMagic.reuse_scope = {scope!r}")
        with capture_output():
            ipython.run_cell(f"%%lakesql df <<\n{BY_PAYMENT}").raise_error()
        assert stored_result_files(str(folder)) == files, scope
    ipython.run_line_magic("config", "LakeMagic.reuse_scope = 'too short'")
    with capture_output() as captured:
        ipython.run_cell(f"%%lakesql\n{BY_PAYMENT}")
    assert "ReuseScopeError: LakeMagic.reuse_scope: a reuse scope is 32 to 256 characters" in captured.stdout
