"""What an answer's data may decode to: a page of the rows it declares can still hold one value of
gigabytes (a few KB of Parquet can), so pages and inline results are bounded on arrival and measured
before the notebook decodes or the kernel engine adopts them; the handler pages within the same bound."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import duckdb
import pytest

from lakelambda import page_format, protocol
from lakelambda.errors import ProtocolError
from lakelambda.page_format import MEASURER_MEMORY_BYTES
from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import EngineError, LakeQueryError

from forged import Forged

LIMIT = protocol.MAX_DECODED_BYTES
RESULT_ID = "R" * 32

# Each writes one Parquet file whose rows are as the answer will declare them, and which decodes past LIMIT.
BOMBS = {
    "one string": f"SELECT repeat('x', {LIMIT + 1000}) AS v",
    "one string too big to read at all": f"SELECT repeat('x', {2 * LIMIT + 20_000_000}) AS v",
    "one blob": f"SELECT repeat('x', {LIMIT + 1000})::BLOB AS v",
    "a string in a list in a struct": f"SELECT {{'a': [repeat('x', {LIMIT + 1000})]}} AS v",
    "a map's key": f"SELECT MAP {{repeat('k', {LIMIT + 1000}): 1}} AS v",
    "one value on every row (a dictionary)": f"SELECT repeat('x', 100000) AS v FROM range({LIMIT // 100000 + 10})",
    "one string among small columns": f"SELECT 1 AS a, repeat('x', {LIMIT + 1000}) AS v, 'b' AS b",
}


def parquet_of(sql: str, tmp_path) -> tuple[bytes, list[tuple[str, str]]]:
    """The file `sql` writes (zstd, as pages are), and its columns; written in another process, so this
    one's memory never held the values."""
    path = tmp_path / "page.parquet"
    script = ("import duckdb, json, sys; con = duckdb.connect(); con.execute('SET enable_progress_bar = false'); r = con.sql(sys.argv[1]); "
              "print(json.dumps([[n, str(t)] for n, t in zip(r.columns, r.types)])); "
              "r.write_parquet(sys.argv[2], compression='zstd')")
    columns = subprocess.run([sys.executable, "-c", script, sql, str(path)], check=True, capture_output=True,
                             text=True).stdout
    data = path.read_bytes()
    path.unlink()
    return data, [tuple(column) for column in json.loads(columns)]


def answer(data: bytes, columns, rows: int, result_id: str | None) -> dict:
    info = protocol.ResultInfo(result_id, tuple(protocol.Column(*c) for c in columns), rows, len(data))
    return protocol.encode(protocol.PageAnswer(info, protocol.Page(0, rows, base64.b64encode(data).decode())))


@pytest.mark.parametrize("bomb", BOMBS)
def test_an_inline_result_that_decodes_past_the_bound_is_not_adopted(bomb, tmp_path):
    data, columns = parquet_of(BOMBS[bomb], tmp_path)
    assert len(data) < 200_000  # the whole answer is a few KB: Lambda's 6 MB is no bound on what it decodes to
    rows = 1 if "dictionary" not in bomb else LIMIT // 100000 + 10
    with pytest.raises(EngineError, match="decodes to more than the 100,664,896 bytes") as refused:
        client.run_query(Forged(answer(data, columns, rows, None)), "SELECT 1", reuse=False)
    if "too big to read" in bomb:  # its one Parquet page was never decompressed: past the measurer's memory
        assert f"at least {MEASURER_MEMORY_BYTES + 1:,}" in str(refused.value)


@pytest.mark.parametrize("bomb", ["one string", "one string too big to read at all", "a string in a list in a struct"])
def test_a_stored_results_page_that_decodes_past_the_bound_is_not_decoded(bomb, tmp_path):
    data, columns = parquet_of(BOMBS[bomb], tmp_path)
    result = client.run_query(Forged(answer(data, columns, 1, RESULT_ID)), "SELECT 1", reuse=False)
    with pytest.raises(EngineError, match="decodes to more than"):
        result.page(0, 1).frame()


def test_within_the_bound_the_same_shapes_are_adopted(tmp_path):
    data, columns = parquet_of("SELECT {'a': [repeat('x', 1000)]} AS v, MAP {'k': 1} AS m, 'x'::BLOB AS b "
                               "FROM range(3)", tmp_path)
    result = client.run_query(Forged(answer(data, columns, 3, None)), "SELECT 1", reuse=False)
    assert result.engine.name == "kernel" and result.page(0, 3).frame().v[2]["a"] == ["x" * 1000]


def test_a_page_is_refused_on_arrival_if_it_carries_more_than_a_response_can():
    wire = answer(b"PAR1", [("v", "VARCHAR")], 1, RESULT_ID)
    wire["page"]["data"] = "A" * (protocol.MAX_PAGE_DATA_CHARS + 4)
    with pytest.raises(ProtocolError, match="'page.data'"):
        protocol.parse_answer(wire)


@pytest.mark.parametrize("forge", [
    lambda w: w.update(result_bytes=w["result_bytes"] - 1),  # the data is more than the result it says
    lambda w: w.update(result_bytes=w["result_bytes"] + 3),
    lambda w: w["page"].update(offset=1, row_count=0),  # not the whole result
    lambda w: w.update(total_rows=2),
])
def test_an_inline_results_page_is_its_whole_file_of_the_size_it_declares(forge):
    wire = answer(b"PAR1" * 10, [("v", "VARCHAR")], 1, None)
    protocol.parse_answer(wire)
    forge(wire)
    with pytest.raises(ProtocolError, match="inline result's page is not its whole file"):
        protocol.parse_answer(wire)


def test_a_small_result_that_decodes_large_travels_stored_and_is_held_whole_in_process(tmp_path):
    """A few KB of Parquet that decode past the bound (one long value on every row) never travel inline
    in an answer: the handler stores the result. In-process no answer carries it, so it is not measured:
    the kernel engine holds it, and its pages are bounded there as anywhere."""
    (tmp_path / "dataset").mkdir()
    engine = EmbeddedEngine(str(tmp_path))
    rows = LIMIT // 100_000 + 10
    sql = f"SELECT i, repeat('x', 100000) AS v FROM range({rows}) t(i)"
    answer, _ = client.call(engine, protocol.QueryRequest(sql, {}, 50, (), False), protocol.PageAnswer, sql)
    assert not answer.result.inline and answer.result.total_rows == rows  # through the wire, as to Lambda
    result = client.run_query(engine, sql, page_size=50, reuse=False)  # in-process
    assert result.inline and result.total_rows == rows
    page = result.page(0, rows)
    assert 50 < page.row_count < rows and page.frame().i.tolist() == list(range(page.row_count))


def test_the_handler_pages_values_that_decode_large_within_the_bound(tmp_path):
    """What a hostile answer is refused for, a true one never is: rows of 1 MB each compress to almost
    nothing, so the handler stores the result rather than inline it, and each page holds fewer rows than
    asked; a row alone past the bound is RowTooLarge, not a page the notebook refuses."""
    (tmp_path / "dataset").mkdir()
    engine = EmbeddedEngine(str(tmp_path))
    sql = "SELECT i, repeat(chr(65 + (i % 26)::INT), 1000000) AS s FROM range(300) t(i)"
    result = client.run_query(engine, sql, page_size=50, reuse=False)
    assert result.result_id is not None and result.total_rows == 300  # stored, not inline
    page = result.page(0, 200)  # a page the handler serves (the first 50 rows were read where they are)
    assert 50 <= page.row_count < 100  # ~1 MB a row, ~100 MB a page at most
    frame = page.frame()
    assert frame.i.tolist() == list(range(page.row_count)) and frame.s[1] == "B" * 1_000_000
    with pytest.raises(LakeQueryError, match="decodes to more than"):
        client.run_query(engine, f"SELECT repeat('x', {LIMIT + 1}) AS s FROM range(2)", reuse=False).page(1, 1)


def test_a_result_of_fixed_size_columns_is_counted_as_the_measure_would_count_it(tmp_path):
    """ResultStore.keep decides whether a result travels inline by its decoded size: for columns of
    fixed-size types it is counted, without reading the file, and the count is the measure's; a string
    column is measured."""
    con = duckdb.connect()
    fixed = ("(i % 100)::TINYINT AS a, i AS b, i::UBIGINT AS c, i / 3 AS d, (i / 7)::DECIMAL(18,3) AS e, "
             "DATE '2024-01-01' + i::INT AS f, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS g, TIME '01:02:03' AS h, "
             "CASE WHEN i % 2 = 0 THEN true END AS k, TIMESTAMP_NS '2024-01-01' AS l, i::FLOAT AS m")
    for select, counted in ((fixed, True), (fixed + ", repeat('x', i::INT) AS s", False)):
        path = str(tmp_path / "result.parquet")
        relation = con.sql(f"SELECT {select} FROM range(1000) t(i)")
        columns = [protocol.Column(name, str(kind)) for name, kind in zip(relation.columns, relation.types)]
        relation.write_parquet(path)
        assert page_format.written_size(path, columns, 1000) == page_format.decoded_size(path)[1]
        os.remove(path)
        if counted:
            assert page_format.written_size(path, columns, 1000) == 16 * len(columns) * 1000
        else:
            with pytest.raises(duckdb.IOException):
                page_format.written_size(path, columns, 1000)


def test_a_result_of_strings_is_measured_on_the_table_it_was_written_from_as_its_file_would_be(tmp_path):
    """Where the handler still holds the result's table, strings and blobs are summed there, not read back from
    the file: the same figure as the measure of the file, NULLs and multi-byte characters included; a column
    whose type the file changes (an ENUM becomes VARCHAR) is measured on the file."""
    con = duckdb.connect()
    con.execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
    strings = ("i AS a, CASE WHEN i % 3 > 0 THEN repeat('é', i::INT) END AS s, "
               "CASE WHEN i % 5 > 0 THEN repeat('x', i::INT)::BLOB END AS b, (i / 7)::DECIMAL(18,3) AS d")
    for select, on_table in ((strings, True), (strings + ", 'ok'::mood AS m", False)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE held AS SELECT {select} FROM range(1000) t(i)")
        columns = [protocol.Column(name, kind) for name, kind, *_ in con.execute("DESCRIBE held").fetchall()]
        path = str(tmp_path / "result.parquet")
        con.execute(f"COPY held TO '{path}' (FORMAT parquet)")
        measured = page_format.decoded_size(path)
        assert page_format.written_size(path, columns, 1000, (con, "held")) == measured.bytes > 16 * 4 * 1000
        assert measured.rows == 1000 and measured.columns == len(columns)
        os.remove(path)
        if on_table:
            assert page_format.written_size(path, columns, 1000, (con, "held")) == measured.bytes
        else:
            with pytest.raises(duckdb.IOException):
                page_format.written_size(path, columns, 1000, (con, "held"))
