"""The kernel engine: a fan-out's merge exact, typed as declared, sandboxed, each merge on its own; the
results it keeps bounded; nothing but result operations served.

The merge SQL carries the user's expressions, so the database it runs in
reads no file but its own folder's, loads nothing, computes in UTC and keeps
its settings; one kernel engine serves the kernel's merges, each a cursor
that sees only its own partials, and what it merges is a result it serves.
(tests/test_explore.py runs every result operation over its results.)
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from lakelambda import page_format, protocol
from lakelambda.protocol import Column, SortKey
from lakelambda.sql import quote_identifier, quote_literal
from lakemagic import client
from lakemagic.client import Page
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import EngineError
from lakemagic.engines.kernel import KernelEngine, kernel_engine
from lakemagic.fanout.tree import PARTIALS

COLUMNS = (Column("k", "INTEGER"), Column("n", "HUGEINT"))


def part(tmp_path, sql: str, columns: tuple[Column, ...] = COLUMNS) -> str:
    """The rows of `sql` as a task's result file, in the page format, outside the kernel engine's folder."""
    path = tmp_path / f"part-{len(list(tmp_path.iterdir()))}.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT {page_format.storage_projection(list(columns))} FROM ({sql})) TO "
                    f"{quote_literal(str(path))} (FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})")
    return str(path)


def merged(files, merge_sql: str, params=None, kernel=None):
    answer = (kernel or kernel_engine()).merge(files, COLUMNS, merge_sql, PARTIALS, params or {}, 1000)
    return answer, Page(0, answer.page.row_count, answer.page.data, answer.result.columns).frame()


def test_partials_merge_into_a_result_typed_as_the_merge_declares(tmp_path):
    files = [part(tmp_path, f"SELECT range::INTEGER AS k, (range * {task})::HUGEINT AS n FROM range(5)")
             for task in range(1, 4)]
    answer, got = merged(files, "SELECT k, sum(n) AS n FROM partials WHERE k >= $low GROUP BY k ORDER BY k",
                         {"low": 1, "unused": 7})
    assert [(column.name, column.type) for column in answer.result.columns] == [("k", "INTEGER"), ("n", "HUGEINT")]
    assert answer.result.total_rows == 4 and answer.result.result_id is not None
    assert got.k.tolist() == [1, 2, 3, 4] and got.n.tolist() == [6, 12, 18, 24]


@pytest.mark.parametrize("merge_sql", [
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT count(*) FROM partials, read_text('/etc/passwd')",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
])
def test_the_merge_sql_reads_nothing_but_its_partials(tmp_path, merge_sql):
    with pytest.raises(duckdb.Error):
        merged([part(tmp_path, "SELECT 1::INTEGER AS k, 1::HUGEINT AS n")], merge_sql)


def test_the_kernel_engine_keeps_its_doors_shut_and_its_clock_in_utc(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    kernel = KernelEngine()
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with kernel._database.cursor() as cursor:  # a cursor, as each call and merge has
        for statement in (f"SELECT * FROM read_csv({quote_literal(str(outside))})",
                          f"SELECT * FROM read_text({quote_literal(kernel.folder + '/../' + outside.name)})",
                          f"COPY (SELECT 1) TO {quote_literal(str(tmp_path / 'written.csv'))}",
                          "SET enable_external_access = true", "SET allowed_directories = ['/']",
                          "SET TimeZone = 'America/New_York'", "LOAD httpfs", "INSTALL httpfs"):
            with pytest.raises(duckdb.Error):
                cursor.execute(statement)
        # In New York this instant is 18:30 on the 1st.
        assert cursor.execute("SELECT hour(TIMESTAMPTZ '2024-01-01 23:30:00+00')").fetchone()[0] == 23
    assert not (tmp_path / "written.csv").exists()


def test_concurrent_merges_each_see_only_their_own_partials(tmp_path):
    files = {task: [part(tmp_path, f"SELECT {task}::INTEGER AS k, range::HUGEINT AS n FROM range({task})")]
             for task in range(1, 9)}

    def counted(task):
        _, got = merged(files[task] * 3, "SELECT k, count(*) AS rows FROM partials GROUP BY k")
        return got.values.tolist()

    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(counted, files)) == [[[task, 3 * task]] for task in files]


def test_one_kernel_engine_serves_the_kernel_and_is_made_again_if_its_folder_went(tmp_path):
    files = [part(tmp_path, "SELECT 1::INTEGER AS k, 2::HUGEINT AS n")]
    merged(files, "SELECT * FROM partials")
    first = kernel_engine()
    merged(files, "SELECT * FROM partials")
    assert kernel_engine() is first
    shutil.rmtree(first.folder)
    _, got = merged(files, "SELECT * FROM partials")
    assert kernel_engine() is not first and got.n.tolist() == [2]


def test_beyond_its_bound_the_oldest_results_go_and_asking_for_one_says_to_run_again(tmp_path):
    kernel = KernelEngine(kept_bytes=1)  # room for the newest result only
    files = [part(tmp_path, "SELECT 1::INTEGER AS k, 2::HUGEINT AS n")]
    older, _ = merged(files, "SELECT * FROM partials", kernel=kernel)
    newer, _ = merged(files, "SELECT n, k FROM partials", kernel=kernel)
    pages = [protocol.parse_answer(kernel.call(protocol.PageRequest(answer.result.result_id, 0, 10)).answer)
             for answer in (older, newer)]
    assert pages[0].type == "ResultNotFound" and "run the query again" in pages[0].message
    assert pages[1].page.row_count == 1
    assert len(list(Path(kernel.folder).rglob("*.parquet"))) == 1  # the older file went too


def test_it_answers_requests_about_its_results_only():
    answer = protocol.parse_answer(KernelEngine().call(protocol.QueryRequest("SELECT 1", {}, 10)).answer)
    assert answer.type == "ProtocolError" and "only serves results it holds" in answer.message


HOSTILE_NAMES = ["n\") AS a, (SELECT content FROM read_text('/etc/hostname')) AS \"leak",
                 "m'); COPY (SELECT 1) TO '/tmp/lakemagic-canary.csv'; --"]


class Renaming(EmbeddedEngine):
    """An engine whose inline answers name their columns with SQL of their own."""

    in_process = False  # every answer crosses the wire, where it can be forged

    def call(self, request: dict):
        reply = super().call(request)
        for column, name in zip(reply.answer.get("columns", []), HOSTILE_NAMES):
            column["name"] = name
        return reply


def test_an_answers_column_names_are_data_in_the_kernel_engine_never_sql(tmp_path):
    result = client.run_query(Renaming(str(tmp_path)), "SELECT range AS n, range % 3 AS m FROM range(10)")
    assert result.inline and result.engine is kernel_engine()
    first, second = HOSTILE_NAMES
    # The kernel engine reads a result's columns by position and names them as the answer says.
    derived = result.derive((SortKey(first, True),), f"{quote_identifier(second)} = 0")
    assert derived.total_rows == 4 and derived.columns == result.columns
    assert result.profile(second).max == "2" and result.profile(first).max == "9"
    # The decoder refuses rows whose columns are not the ones the answer names.
    with pytest.raises(EngineError, match="but its rows hold"):
        result.to_dataframe()
    assert not os.path.exists("/tmp/lakemagic-canary.csv")
