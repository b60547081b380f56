"""A small result of a query the embedded engine runs in-process stays in its database's memory
(results.ResultStore.keep_in_memory): it must be paged, sorted, filtered, profiled, summarized and
fetched whole exactly as the same result stored as a file is, for every type; the bound lets old ones go
with an error that says to run the query again; and no query can read another's table.

Real DuckDB over a real lake folder; the stored twin is the same engine with nothing kept in memory.
"""

from __future__ import annotations

import os

import duckdb
import pandas as pd
import pytest

from lakelambda import results
from lakelambda.protocol import SortKey
from lakelambda.results import ResultStore
from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError

from table_writers import write_iceberg
from test_page_types import CASE_IDS, TYPE_CASES, typed_query


@pytest.fixture
def lake(tmp_path) -> str:
    (tmp_path / "lake").mkdir()
    return str(tmp_path / "lake")


def kept_and_stored(lake: str, sql: str, monkeypatch, page_size: int = 2):
    """`sql`'s result kept in memory, and the same query's stored in its file (in the lake, never inline)."""
    engine = EmbeddedEngine(lake)
    kept = client.run_query(engine, sql, page_size=page_size, reuse=False)
    with monkeypatch.context() as stored_only:
        stored_only.setattr(ResultStore, "memory_rows", -1)
        stored_only.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
        stored = client.run_query(EmbeddedEngine(lake), sql, page_size=page_size, reuse=False)
    assert isinstance(kept.first_page, client.TextPage) and kept.engine is engine
    assert isinstance(stored.first_page, client.HeldPage) and not stored.inline
    return kept, stored


def outcome(call):
    """What a call gives, or the error it answers with (a type that cannot be sorted, or made a DataFrame,
    fails alike both ways)."""
    try:
        return call()
    except LakeQueryError as error:  # an unforeseen failure's message names an incident of its own
        return ("error", error.error_type, "" if error.error_type == "InternalError" else error.message)
    except duckdb.Error as error:
        return ("error", type(error).__name__, str(error))


def assert_same_frames(kept, stored) -> None:
    kept, stored = outcome(kept), outcome(stored)
    if isinstance(kept, pd.DataFrame):
        pd.testing.assert_frame_equal(kept, stored)
    else:
        assert kept == stored


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
def test_a_result_in_memory_is_served_as_its_stored_file_is(lake, monkeypatch, name, type_sql, literals):
    # Sorted inside: a query that sorts all its rows at its top goes to its file at once (the next tests).
    kept, stored = kept_and_stored(lake, f"SELECT * FROM ({typed_query(type_sql, literals)})", monkeypatch)
    assert kept.columns == stored.columns and kept.total_rows == stored.total_rows == len(literals)
    assert kept.first_page.text() == stored.first_page.text()
    assert kept.page(1, 2).text() == stored.page(1, 2).text()
    assert_same_frames(kept.page(2, 2).frame, stored.page(2, 2).frame)  # the wire's page, decoded
    assert_same_frames(kept.first_page.frame, stored.first_page.frame)
    for descending in (False, True):
        sort = (SortKey("v", descending), SortKey("i", False))
        assert outcome(lambda: kept.derive(sort, "v IS NOT NULL").first_page.text()) == \
            outcome(lambda: stored.derive(sort, "v IS NOT NULL").first_page.text())
    assert outcome(lambda: kept.profile("v")) == outcome(lambda: stored.profile("v"))
    assert outcome(lambda: kept.summaries().columns) == outcome(lambda: stored.summaries().columns)
    assert_same_frames(kept.to_dataframe, stored.to_dataframe)


def test_a_download_writes_the_file_once_and_the_result_pages_on(lake, monkeypatch):
    kept, _ = kept_and_stored(lake, "SELECT range AS n, 'x' || range AS s FROM range(300)", monkeypatch, 50)
    path = os.path.join(lake, "_lakemagic", "results", f"{kept.result_id}.parquet")
    assert not os.path.exists(path)
    assert kept.to_dataframe()["n"].tolist() == list(range(300))
    assert os.path.exists(path)  # a download reads the file itself: it is written then, where the lake keeps results
    assert kept.page(250, 3).text() == (("250", "x250"), ("251", "x251"), ("252", "x252"))
    assert kept.profile("n").max == "299"


def test_the_oldest_results_are_let_go_beyond_the_bound_and_say_to_run_again(lake, monkeypatch):
    # 16 bytes a value: 2 columns of 1,000 rows are 32,000 bytes; the bound holds two such results.
    monkeypatch.setattr(results, "MEMORY_BYTES", 70_000)
    engine = EmbeddedEngine(lake)
    sql = "SELECT range AS n, range * {} AS m FROM range(1000)"
    first, second, third = (client.run_query(engine, sql.format(k), page_size=10, reuse=False) for k in (1, 2, 3))
    with pytest.raises(LakeQueryError) as gone:
        first.page(500, 10)
    assert gone.value.error_type == "ResultNotFound" and "run the query again" in gone.value.message
    assert second.page(500, 1).text() == (("500", "1000"),) and third.page(500, 1).text() == (("500", "1500"),)


def test_a_result_written_for_its_download_leaves_the_bound_to_the_others(lake, monkeypatch):
    monkeypatch.setattr(results, "MEMORY_BYTES", 70_000)  # two results of 32,000 bytes, as above
    engine = EmbeddedEngine(lake)
    sql = "SELECT range AS n, range * {} AS m FROM range(1000)"
    first = client.run_query(engine, sql.format(1), page_size=10, reuse=False)
    assert first.to_dataframe()["m"].sum() == sum(range(1000))  # written as its file: let go from memory
    second, third = (client.run_query(engine, sql.format(k), page_size=10, reuse=False) for k in (2, 3))
    assert second.page(500, 1).text() == (("500", "1000"),) and third.page(500, 1).text() == (("500", "1500"),)
    assert first.page(500, 1).text() == (("500", "500"),)  # from its file


def test_a_result_too_large_for_memory_is_stored_and_one_of_more_rows_runs_into_its_file(lake, monkeypatch):
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    engine = EmbeddedEngine(lake)
    monkeypatch.setattr(results, "MEMORY_RESULT_BYTES", 1000)
    bytes_over = client.run_query(engine, "SELECT repeat('x', 100) AS s FROM range(20)", reuse=False)
    monkeypatch.setattr(ResultStore, "memory_rows", 99)
    rows_over = client.run_query(engine, "SELECT range AS n FROM range(100)", reuse=False)
    for result, rows in ((bytes_over, 20), (rows_over, 100)):
        assert isinstance(result.first_page, client.HeldPage) and result.total_rows == rows
        assert os.path.exists(result.first_page.path)
    assert rows_over.to_dataframe()["n"].tolist() == list(range(100))


@pytest.mark.parametrize("sql, kept_in_memory", [
    ("SELECT range AS n FROM range(20000) ORDER BY n DESC", False),  # it sorts every row: to its file at once
    ("SELECT range AS n FROM range(20000) ORDER BY n DESC LIMIT 10000", True),
    ("SELECT range AS n FROM range(20000) ORDER BY n DESC LIMIT 10001", False),
    ("SELECT n FROM (SELECT range AS n FROM range(20000) ORDER BY n DESC) WHERE n < 10000", True),
    ("SELECT n % 3 AS m, max(n) AS n FROM range(20000) AS t(n) GROUP BY m ORDER BY m", True),
    ("SELECT * FROM (SELECT range AS n FROM range(20000) ORDER BY n DESC)", False),  # tried, then run into its file
    # Each computes every row before its first: made whole, then written as its file.
    ("SELECT n % 15000 AS m, count(*) AS c FROM range(30000) AS t(n) GROUP BY ALL ORDER BY m", False),
    ("SELECT DISTINCT n % 12000 AS m FROM range(30000) AS t(n) ORDER BY m", False),
    ("SELECT n, sum(n) OVER (ORDER BY n) AS s FROM range(20000) AS t(n) ORDER BY n", False),
    ("SELECT range AS n FROM range(20000) UNION SELECT 20000 ORDER BY n", False),
    ("SELECT n % 9000 AS m, count(*) AS c FROM range(30000) AS t(n) GROUP BY m ORDER BY m", True),
])
def test_which_results_are_kept_in_memory(lake, sql, kept_in_memory):
    result = client.run_query(EmbeddedEngine(lake), sql, page_size=3, reuse=False)
    assert isinstance(result.first_page, client.TextPage if kept_in_memory else client.HeldPage)
    whole = duckdb.sql(sql).fetchall()
    assert result.total_rows == len(whole)
    assert result.first_page.text() == tuple(tuple(str(value) for value in row) for row in whole[:3])
    assert [tuple(row) for row in result.to_dataframe().itertuples(index=False)] == whole


def test_the_first_and_last_dates_and_times_are_profiled_and_summarized_as_duckdb_writes_them(lake, monkeypatch):
    sql = ("SELECT * FROM (VALUES (DATE '0001-01-01', TIMESTAMP '0001-01-01 00:00:00', TIMESTAMPTZ '0001-01-01 00:00:00+00'),"
           " (DATE '9999-12-31', TIMESTAMP '9999-12-31 23:59:59.999999', TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'),"
           " (DATE '2024-02-29', TIMESTAMP '2024-02-29 12:00:00', TIMESTAMPTZ '2024-02-29 12:00:00+00'),"
           " (DATE 'infinity', TIMESTAMP 'infinity', TIMESTAMPTZ '-infinity')) AS t(d, t, tz)")
    kept, stored = kept_and_stored(lake, sql, monkeypatch)
    for column in ("d", "t", "tz"):
        profile = kept.profile(column)
        assert profile == stored.profile(column)
        low, high = duckdb.sql(f"SELECT CAST(min({column}) AS VARCHAR), CAST(max({column}) AS VARCHAR) "
                               f"FROM ({sql})").fetchone()
        assert (profile.min, profile.max) == (low, high)
        assert profile.bars_kind == "histogram" and sum(bar.count for bar in profile.bars) == 3  # the finite ones
        assert profile.bars[0].label.startswith("0001-01-01") and profile.bars[-1].count >= 1
        last_edge = profile.bars[-1].label.split(" – ")[1]
        assert duckdb.sql(f"SELECT TIMESTAMP '{last_edge}' > TIMESTAMP '9999-12-31'").fetchone()[0]  # past Python's
    assert kept.summaries().columns == stored.summaries().columns


def test_no_query_reads_a_result_kept_in_memory(lake):
    engine = EmbeddedEngine(lake)
    kept = client.run_query(engine, "SELECT 42 AS secret", reuse=False)
    for sql in (f'SELECT * FROM {results.MEMORY_SCHEMA}."{kept.result_id}"', f'SELECT * FROM "{kept.result_id}"',
                f"SELECT * FROM memory.{results.MEMORY_SCHEMA}.\"{kept.result_id}\""):
        with pytest.raises(LakeQueryError) as refused:
            client.run_query(engine, sql, reuse=False)
        assert refused.value.error_type in ("PermissionException", "CatalogException"), refused.value


def test_results_in_memory_are_let_go_with_the_database_a_table_format_replaces(tmp_path):
    lake, catalog = tmp_path / "lake", tmp_path / "catalog"
    lake.mkdir()
    catalog.mkdir()
    write_iceberg(f"file://{lake}", "trips", catalog)
    engine = EmbeddedEngine(str(lake))
    before = client.run_query(engine, "SELECT range AS n FROM range(100)", page_size=10, reuse=False)
    # The first query of an Iceberg table opens the database again, with the format's extensions.
    iceberg = client.run_query(engine, "SELECT count(*) AS n FROM trips", reuse=False)
    assert isinstance(iceberg.first_page, client.TextPage) and int(iceberg.first_page.text()[0][0]) > 0
    with pytest.raises(LakeQueryError) as gone:
        before.page(50, 10)
    assert gone.value.error_type == "ResultNotFound" and "run the query again" in gone.value.message
    assert iceberg.profile("n").max == iceberg.first_page.text()[0][0]
