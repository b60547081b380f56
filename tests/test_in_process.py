"""The embedded engine's in-process path: the same checks as on Lambda, the same values, nothing stored for nobody.

A query the notebook runs on the embedded engine is answered by the handler in
this process (Engine.query_here): `VAR <<` takes its rows from the handler's
cursor, and a table's first page is read from the result's own file. These
tests run real DuckDB over a real lake folder, in a real IPython shell where
the user would.
"""

from __future__ import annotations

import os

import duckdb
import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError
from lakelambda.results import ResultStore

SQL = "SELECT range AS n, range % 7 AS m, 'row ' || range AS label FROM range(5000) ORDER BY n DESC"


@pytest.fixture
def lake(tmp_path) -> str:
    (tmp_path / "dataset").mkdir()
    duckdb.sql(f"COPY ({SQL}) TO '{tmp_path / 'dataset' / 'numbers.parquet'}' (FORMAT parquet)")
    return str(tmp_path)


def stored_files(lake: str) -> list[str]:
    """Every file the handler keeps in the lake's results area (results, and the reuse index)."""
    folder = os.path.join(lake, "_lakemagic")
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)


def test_var_takes_the_rows_and_stores_nothing_nobody_pages_or_reuses(lake, ipython):
    ipython.run_line_magic("config", f"LakeMagic.lake = {lake!r}")
    ipython.run_line_magic("config", "LakeMagic.reuse_results = False")
    before = stored_files(lake)
    with capture_output():
        assert ipython.run_cell("%%lakesql x <<\nSELECT * FROM numbers WHERE m = 3 ORDER BY n").success
    expected = duckdb.sql(f"SELECT * FROM '{lake}/dataset/numbers.parquet' WHERE m = 3 ORDER BY n").df()
    pd.testing.assert_frame_equal(ipython.user_ns["x"], expected)
    assert stored_files(lake) == before


def test_a_reused_result_gives_the_same_frame(lake, ipython):
    ipython.run_line_magic("config", f"LakeMagic.lake = {lake!r}")
    with capture_output():
        assert ipython.run_cell("%%lakesql x <<\nSELECT m, count(*) AS c FROM numbers GROUP BY m ORDER BY m").success
        assert ipython.run_cell("%%lakesql y <<\nSELECT m, count(*) AS c FROM numbers GROUP BY m ORDER BY m").success
    pd.testing.assert_frame_equal(ipython.user_ns["x"], ipython.user_ns["y"])
    assert ipython.user_ns["y"]["c"].sum() == 5000


@pytest.mark.parametrize("sql, refusal", [
    ("SELECT * FROM read_text('/etc/hostname')", "PermissionException"),
    ("SELECT current_setting('TimeZone') AS zone", "PermissionException"),
    ("SELECT * FROM '_lakemagic/results/x.parquet'", "PermissionException"),
    ("SELECT 1; SELECT 2", "UnsupportedStatement"),
    ("COPY (SELECT 1) TO '/tmp/lakemagic-in-process-canary.csv'", "UnsupportedStatement"),
])
@pytest.mark.parametrize("path", ["frame", "table"])
def test_every_check_runs_in_process_as_on_lambda(lake, sql, refusal, path):
    engine = EmbeddedEngine(lake)
    with pytest.raises(LakeQueryError) as refused:
        if path == "frame":
            client.query_frame(engine, sql, reuse=False)
        else:
            client.run_query(engine, sql, reuse=False)
    assert refused.value.error_type == refusal
    assert not os.path.exists("/tmp/lakemagic-in-process-canary.csv")


@pytest.mark.parametrize("kept", ["in memory", "in its file"])
def test_the_tables_first_page_is_read_where_the_result_is(lake, kept, monkeypatch):
    if kept == "in its file":
        monkeypatch.setattr(ResultStore, "memory_rows", 4999)  # one row fewer than the result
        monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")  # stored, not inline: the file is the lake's
    before = stored_files(lake)
    engine = EmbeddedEngine(lake)
    # Its LIMIT keeps it within the rows kept in memory; above them (4999), it sorts them all: to its file.
    result = client.run_query(engine, "SELECT n, label FROM numbers ORDER BY n LIMIT 5000", page_size=20,
                              reuse=False)
    page_kind = client.TextPage if kept == "in memory" else client.HeldPage
    assert isinstance(result.first_page, page_kind) and result.first_page.row_count == 20
    assert result.engine is engine and result.total_rows == 5000
    assert (stored_files(lake) == before) == (kept == "in memory")  # no file until one is asked for
    expected = duckdb.sql(f"SELECT CAST(n AS VARCHAR), label FROM '{lake}/dataset/numbers.parquet' ORDER BY n "
                          "LIMIT 20").fetchall()
    assert list(result.first_page.text()) == expected
    pd.testing.assert_frame_equal(result.first_page.frame(), result.page(0, 40).frame().iloc[:20])
    # Later pages, sorts and filters are the result operations', as for any stored result.
    derived = result.derive(where="n % 1000 = 0")
    assert derived.to_dataframe()["n"].tolist() == [0, 1000, 2000, 3000, 4000]
