"""Result reuse is private to a scope (issue 20, finding 3): one caller cannot tell what another queried.

Without a scope's secret, a caller guessing another's query (`... WHERE
pickup_location_id = $id`) gets what a fresh run gives: no `reused_from`, a
result of its own, the same S3 requests as a scope that never ran anything.
Both engines, the Lambda path through `lakemagic serve` and moto S3 (the
fixtures of test_reuse.py); the scope file in a HOME of the test's own.
"""

from __future__ import annotations

import os
import re
import secrets
import stat

import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakelambda.errors import ProtocolError
from lakemagic import client
from lakemagic.errors import LakeQueryError
from lakemagic.reuse_scope import ENVIRONMENT, ReuseScopeError, reuse_scope

from test_reuse import BY_PAYMENT, REUSE_BUCKET, lake, proxy, run, s3_reuse_lake, stored, stored_result_files  # noqa: F401

GUESS = "SELECT count(*) AS trips, sum(total_amount) AS paid FROM taxi_2019_04 WHERE pickup_location_id = $id"


def s3_requests(lake) -> dict:
    """The proxy's requests since its reset, with result ids and reuse keys made alike (each run has its own)."""
    requests: dict = {}
    for (method, path), count in lake.proxy.objects.items():
        path = re.sub(r"/_lakemagic/results/reuse/[0-9a-f]{64}\.[A-Za-z0-9_-]+$", "/_lakemagic/results/reuse/KEY.ID", path)
        path = re.sub(r"/_lakemagic/results/[A-Za-z0-9_-]{22,64}\.", "/_lakemagic/results/ID.", path)
        requests[(method, path)] = requests.get((method, path), 0) + count
    return requests


def test_another_scope_is_answered_as_if_the_query_never_ran(stored, lake):
    """Scope A runs a query; scope B's identical query is a fresh run, whose S3 requests are those of a
    scope C that never ran anything, and the same scope A is answered from its result."""
    first, second, never = (secrets.token_hex(32) for _ in range(3))
    lake.start()
    run(lake, "SELECT count(*) AS warm FROM taxi_2019_04 WHERE passenger_count = 4", reuse=never)  # lists, binds
    mine = run(lake, GUESS, params={"id": 7}, reuse=first)
    assert mine.reused_from is None and run(lake, GUESS, params={"id": 7}, reuse=first).reused_from is not None
    expected = mine.to_dataframe()

    if lake.name == "lambda":
        lake.proxy.reset()
    theirs = run(lake, GUESS, params={"id": 7}, reuse=second)
    assert theirs.reused_from is None and theirs.result_id != mine.result_id
    if lake.name == "lambda":
        guessed = s3_requests(lake)
        assert guessed[("PUT", f"/{REUSE_BUCKET}/_lakemagic/results/ID.parquet")] == 1, guessed  # it ran, stored
        assert mine.result_id not in str(dict(lake.proxy.objects))  # nothing of the first scope's was touched
    pd.testing.assert_frame_equal(theirs.to_dataframe(), expected)
    if lake.name == "lambda":
        lake.proxy.reset()
        fresh = run(lake, GUESS, params={"id": 8}, reuse=secrets.token_hex(32))
        assert fresh.reused_from is None and s3_requests(lake) == guessed
    else:
        assert stored_result_files(lake.folder) == 3  # the warm-up's, first's, second's: each scope its own
        assert run(lake, GUESS, params={"id": 7}, reuse=second).reused_from is not None
        assert stored_result_files(lake.folder) == 3


def test_a_query_without_a_scope_is_neither_reused_nor_kept(lake):
    request = protocol.query_request(BY_PAYMENT, {}, 50)
    assert "reuse_scope" not in request
    answers = [client.run_request(lake.engine, request, BY_PAYMENT) for _ in range(2)]
    assert [answer.reused_from for answer in answers] == [None, None]
    scoped = secrets.token_hex(32)
    assert run(lake, BY_PAYMENT, reuse=scoped).reused_from is None  # nothing was kept for anyone


def test_a_garbled_scope_is_an_error_answer_and_the_next_query_answers(lake):
    request = dict(protocol.query_request(BY_PAYMENT, {}, 50), reuse_scope="guess")
    with pytest.raises(LakeQueryError) as refused:
        client.run_request(lake.engine, request, BY_PAYMENT)
    assert refused.value.error_type == "ProtocolError" and "32 to 256 characters" in refused.value.message
    assert run(lake, BY_PAYMENT, reuse=secrets.token_hex(32)).total_rows > 0


@pytest.mark.parametrize("scope, problem", [
    ("short", "32 to 256 characters, not 5"),
    ("x" * 257, "32 to 256 characters, not 257"),
    (12345, "a reuse scope is a string"),
    (" " + "a" * 40, "printable ASCII"),
    ("é" * 40, "printable ASCII"),
    ("a" * 40 + "\n", "printable ASCII"),
])
def test_a_garbled_scope_is_refused_at_the_edge_and_in_the_notebook(scope, problem):
    request = dict(protocol.query_request("SELECT 1", {}, 1), reuse_scope=scope)
    with pytest.raises(ProtocolError, match=re.escape(problem)):
        protocol.parse_request(request)
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


def test_the_magic_reuses_within_its_configured_scope_only(ipython, local_taxi_lake, tmp_path, stored):
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
