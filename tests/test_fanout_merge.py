"""The fan-out's merge in the kernel: exact, typed as declared, sandboxed, and each merge on its own.

The merge SQL carries the user's expressions, so the database it runs in
reads no file but its own pages, loads nothing and keeps its settings; one
database serves the kernel's merges, each a cursor that sees only its own
partials.
"""

from __future__ import annotations

import base64
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from lakelambda import page_format
from lakelambda.protocol import Column
from lakelambda.sql import quote_literal
from lakemagic.client import Page
from lakemagic.fanout import merge as merge_module
from lakemagic.fanout.merge import MergeDatabase, merge

COLUMNS = (Column("k", "INTEGER"), Column("n", "HUGEINT"))


def page(tmp_path, sql: str, columns: tuple[Column, ...] = COLUMNS) -> str:
    """The rows of `sql` as a task's page: the page format, base64."""
    path = tmp_path / f"page-{len(list(tmp_path.iterdir()))}.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT {page_format.storage_projection(columns)} FROM ({sql})) TO "
                    f"{quote_literal(str(path))} (FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})")
    return page_format.encode_file(str(path))


def frame(info, data):
    return Page(0, info.total_rows, data, info.columns).frame()


def test_partials_merge_into_one_page_typed_as_the_merge_declares(tmp_path):
    pages = [page(tmp_path, f"SELECT range::INTEGER AS k, (range * {task})::HUGEINT AS n FROM range(5)")
             for task in range(1, 4)]
    info, data = merge(pages, COLUMNS, "SELECT k, sum(n) AS n FROM partials WHERE k >= $low GROUP BY k ORDER BY k",
                       {"low": 1, "unused": 7})
    assert [(column.name, column.type) for column in info.columns] == [("k", "INTEGER"), ("n", "HUGEINT")]
    assert info.total_rows == 4 and info.result_bytes == len(base64.b64decode(data))
    got = frame(info, data)
    assert got.k.tolist() == [1, 2, 3, 4] and got.n.tolist() == [6, 12, 18, 24]


@pytest.mark.parametrize("merge_sql", [
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT count(*) FROM partials, read_text('/etc/passwd')",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
])
def test_the_merge_sql_reads_nothing_but_its_partials(tmp_path, merge_sql):
    pages = [page(tmp_path, "SELECT 1::INTEGER AS k, 1::HUGEINT AS n")]
    with pytest.raises(duckdb.Error):
        merge(pages, COLUMNS, merge_sql, {})


def test_the_merge_database_keeps_its_doors_shut(tmp_path):
    database = MergeDatabase()
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with database._con.cursor() as cursor:
        for statement in (f"SELECT * FROM read_csv({quote_literal(str(outside))})",
                          f"SELECT * FROM read_text({quote_literal(database.folder + '/../' + outside.name)})",
                          f"COPY (SELECT 1) TO {quote_literal(str(tmp_path / 'written.csv'))}",
                          "SET enable_external_access = true", "SET allowed_directories = ['/']",
                          "LOAD httpfs", "INSTALL httpfs"):
            with pytest.raises(duckdb.Error):
                cursor.execute(statement)
    assert not (tmp_path / "written.csv").exists()


def test_concurrent_merges_each_see_only_their_own_partials(tmp_path):
    pages = {task: [page(tmp_path, f"SELECT {task}::INTEGER AS k, range::HUGEINT AS n FROM range({task})")]
             for task in range(1, 9)}

    def merged(task):
        info, data = merge(pages[task] * 3, COLUMNS, "SELECT k, count(*) AS rows FROM partials GROUP BY k", {})
        return frame(info, data).values.tolist()

    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(merged, pages)) == [[[task, 3 * task]] for task in pages]


def test_one_database_serves_the_kernel_and_is_opened_again_if_its_folder_went(tmp_path):
    pages = [page(tmp_path, "SELECT 1::INTEGER AS k, 2::HUGEINT AS n")]
    merge(pages, COLUMNS, "SELECT * FROM partials", {})
    first = merge_module._kernel_database
    merge(pages, COLUMNS, "SELECT * FROM partials", {})
    assert merge_module._kernel_database is first and os.listdir(first.folder) == []  # each merge's pages gone
    shutil.rmtree(first.folder)
    info, data = merge(pages, COLUMNS, "SELECT * FROM partials", {})
    assert merge_module._kernel_database is not first and frame(info, data).n.tolist() == [2]
