"""Every DuckDB type must reach pandas exactly as DuckDB gives it locally, through the wire and in-process.

Each query runs through EmbeddedEngine and the notebook client: in-process, as
the notebook runs it, and through `call` (a JSON round trip, as to Lambda).
The DataFrame it yields is compared with `duckdb.sql(q).df()` of the same
query. Because `.df()` turns HUGEINT and wide DECIMALs into float64, the
values are also compared exactly, as Python objects, by restoring the pages
with DuckDB (test_values_survive_exactly). `VAR <<`'s whole frame, taken
straight from the handler's cursor, is compared too (test_whole_frame_equals_local_df).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pytest

from lakelambda import protocol
from lakemagic import client
from lakemagic.errors import LakeQueryError
from lakemagic.engines.embedded import EmbeddedEngine


class WireEngine(EmbeddedEngine):
    """The embedded handler, every query through the JSON round trip, as to Lambda."""

    in_process = False


@pytest.fixture(params=["in_process", "wire"])
def engine(tmp_path, request):
    (tmp_path / "lake").mkdir()
    return (EmbeddedEngine if request.param == "in_process" else WireEngine)(str(tmp_path / "lake"))


def typed_query(type_sql: str, literals: list[str]) -> str:
    """Rows (i, CAST(literal AS type)) in a fixed order; NULL is always one of them."""
    rows = ", ".join(f"({number}, {literal})" for number, literal in enumerate(literals))
    return f"SELECT i, CAST(v AS {type_sql}) AS v FROM (VALUES {rows}) AS t(i, v) ORDER BY i"


HUGEINT_MAX = "170141183460469231731687303715884105727"

# (id, DuckDB type, SQL literals for its rows). Every case has a NULL row.
TYPE_CASES = [
    ("tinyint", "TINYINT", ["-128", "127", "0", "NULL"]),
    ("smallint", "SMALLINT", ["-32768", "32767", "NULL", "7"]),
    ("integer", "INTEGER", ["-2147483648", "2147483647", "NULL"]),
    ("bigint", "BIGINT", ["-9223372036854775808", "9223372036854775807", "NULL"]),
    ("utinyint", "UTINYINT", ["0", "255", "NULL"]),
    ("usmallint", "USMALLINT", ["0", "65535", "NULL"]),
    ("uinteger", "UINTEGER", ["0", "4294967295", "NULL"]),
    ("ubigint", "UBIGINT", ["0", "18446744073709551615", "NULL"]),
    ("hugeint", "HUGEINT", [HUGEINT_MAX, "-" + HUGEINT_MAX, "0", "1", "NULL"]),
    ("uhugeint", "UHUGEINT", ["340282366920938463463374607431768211455", "0", "NULL"]),
    ("decimal_10_3", "DECIMAL(10,3)", ["'1234567.891'", "'-0.001'", "'0'", "NULL"]),
    ("decimal_38_10", "DECIMAL(38,10)", ["'1234567890123456789012345678.1234567891'", "'-0.0000000001'", "NULL"]),
    ("float", "FLOAT", ["'1.5'", "'nan'", "'inf'", "'-inf'", "'-0.0'", "'3.4e38'", "NULL"]),
    ("double", "DOUBLE", ["'1.5'", "'nan'", "'inf'", "'-inf'", "'1e308'", "'5e-324'", "NULL"]),
    ("boolean", "BOOLEAN", ["true", "false", "NULL"]),
    ("varchar", "VARCHAR", ["'héllo wörld'", "'日本語'", "'😀'", "''", "'it''s'", "'line\nbreak'", "NULL"]),
    # The same unicode values, built without non-ASCII characters in the SQL text.
    ("varchar_codepoints", "VARCHAR",
     ["'h' || chr(233) || 'llo'", "chr(26085) || chr(26412)", "chr(128512)", "''", "NULL"]),
    ("date", "DATE", ["'2024-02-29'", "'1970-01-01'", "'9999-12-31'", "NULL"]),
    ("time", "TIME", ["'00:00:00'", "'23:59:59.999999'", "'12:34:56.789'", "NULL"]),
    ("timetz", "TIMETZ", ["'12:34:56+05:30'", "'00:00:00-08'", "NULL"]),
    ("timestamp", "TIMESTAMP", ["'2024-01-02 03:04:05.123456'", "'1900-01-01 00:00:00'", "NULL"]),
    ("timestamp_s", "TIMESTAMP_S", ["'2024-01-02 03:04:05'", "'1969-12-31 23:59:59'", "NULL"]),
    ("timestamp_ms", "TIMESTAMP_MS", ["'2024-01-02 03:04:05.123'", "NULL"]),
    ("timestamp_ns", "TIMESTAMP_NS", ["'2024-01-02 03:04:05.123456789'", "NULL"]),
    ("timestamptz", "TIMESTAMPTZ", ["'2024-01-02 03:04:05+02'", "'2024-07-01 00:00:00+00'", "NULL"]),
    ("interval", "INTERVAL", ["'1 year 2 months 3 days 04:05:06.789'", "'-1 day'", "'0 seconds'", "NULL"]),
    ("blob", "BLOB", ["'\\xAA\\x00abc'", "''", "NULL"]),
    ("uuid", "UUID", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'",
                      "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "NULL"]),
    ("enum", "ENUM('a', 'x')", ["'x'", "'a'", "NULL"]),
    ("list", "INTEGER[]", ["[1, 2, NULL]", "[]", "NULL"]),
    ("array", "INTEGER[3]", ["[1, 2, 3]", "[4, NULL, 6]", "NULL"]),
    ("struct", "STRUCT(a INTEGER, b VARCHAR)", ["{'a': 1, 'b': 'x'}", "{'a': NULL, 'b': NULL}", "NULL"]),
    ("map", "MAP(VARCHAR, INTEGER)", ["MAP {'a': 1, 'b': 2}", "MAP {}", "NULL"]),
    ("list_of_struct_hugeint", "STRUCT(h HUGEINT, s VARCHAR)[]",
     [f"[{{'h': {HUGEINT_MAX}, 's': 'x'}}, {{'h': -1, 's': NULL}}]", "[]", "[NULL]", "NULL"]),
    # Strings a user's data may hold, inside the nested lossy type.
    ("list_of_struct_hugeint_punctuation", "STRUCT(h HUGEINT, s VARCHAR)[]",
     ["[{'h': 1, 's': 'a, b'}]", "[{'h': 2, 's': 'x}y'}]", "[{'h': 3, 's': 'NULL'}]", "NULL"]),
    ("bit", "BIT", ["'0101'", "'1'", "'0000000011111111'", "NULL"]),
]
CASE_IDS = [case[0] for case in TYPE_CASES]


def local_frame_or_error(sql: str):
    """What DuckDB's own `.df()` gives for `sql`: a DataFrame, or the exception it raises."""
    try:
        return duckdb.sql(sql).df(), None
    except duckdb.Error as exc:
        return None, exc


def assert_same_as_local(result: client.QueryResult, sql: str) -> None:
    expected, expected_error = local_frame_or_error(sql)
    if expected_error is None:
        pd.testing.assert_frame_equal(result.to_dataframe(), expected)
    else:
        # DuckDB cannot make a DataFrame of this type itself; the client must fail the same way.
        with pytest.raises(type(expected_error)) as raised:
            result.to_dataframe()
        assert str(raised.value) == str(expected_error)


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
def test_dataframe_equals_local_df(engine, name, type_sql, literals):
    sql = typed_query(type_sql, literals)
    result = client.run_query(engine, sql)
    assert result.total_rows == len(literals)
    assert_same_as_local(result, sql)


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("rows", ["given", "all_null", "none"])
def test_whole_frame_equals_local_df(engine, name, type_sql, literals, rows):
    sql = typed_query(type_sql, ["NULL", "NULL", "NULL"] if rows == "all_null" else literals)
    if rows == "none":
        sql = f"SELECT * FROM ({sql}) WHERE i < 0"
    expected, expected_error = local_frame_or_error(sql)
    if expected_error is None:
        pd.testing.assert_frame_equal(client.query_frame(engine, sql), expected)
        return
    # DuckDB cannot make a DataFrame of this type itself; the engine says so in DuckDB's words.
    with pytest.raises((LakeQueryError, type(expected_error))) as raised:
        client.query_frame(engine, sql)
    if isinstance(raised.value, LakeQueryError):
        assert raised.value.error_type == type(expected_error).__name__
        assert raised.value.message in str(expected_error)
    else:
        assert str(raised.value) == str(expected_error)


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("stored", [False, True], ids=["inline", "stored"])
def test_a_first_page_read_in_process_shows_what_a_wire_page_shows(tmp_path, monkeypatch, name, type_sql, literals,
                                                                   stored):
    if stored:
        monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    sql = typed_query(type_sql, literals)
    here = client.run_query(EmbeddedEngine(str(tmp_path)), sql, page_size=2)
    wire = client.run_query(WireEngine(str(tmp_path)), sql, page_size=2)
    assert isinstance(here.first_page, client.HeldPage) and here.inline == (not stored)
    assert here.first_page.text() == wire.first_page.text()[:2]  # an inline answer's page is all of it
    assert here.page(2, 2).text() == wire.page(2, 2).text()


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
def test_all_null_column_equals_local_df(engine, name, type_sql, literals):
    sql = typed_query(type_sql, ["NULL", "NULL", "NULL"])
    assert_same_as_local(client.run_query(engine, sql), sql)


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
def test_empty_result_equals_local_df(engine, name, type_sql, literals):
    sql = f"SELECT * FROM ({typed_query(type_sql, literals)}) WHERE i < 0"
    result = client.run_query(engine, sql)
    assert result.total_rows == 0
    assert_same_as_local(result, sql)


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
def test_declared_types_equal_describe(engine, name, type_sql, literals):
    sql = typed_query(type_sql, literals)
    answer = engine.call(protocol.QueryRequest(sql, {}, 10)).answer
    assert "error" not in answer, answer.get("error")
    described = duckdb.sql(f"DESCRIBE {sql}").fetchall()
    assert answer["columns"] == [{"name": row[0], "type": row[1]} for row in described]


def exact_rows(result: client.QueryResult, folder) -> list[tuple]:
    """All rows of a result as Python objects: its pages read back and cast to the declared types."""
    pages = [result.first_page]
    fetched = result.first_page.row_count
    while fetched < result.total_rows:
        page = result.page(fetched, protocol.MAX_PAGE_ROWS)
        assert page.row_count > 0
        pages.append(page)
        fetched += page.row_count
    projection = ", ".join(
        'CAST("{}" AS {})'.format(column.name.replace('"', '""'), column.type) for column in result.columns
    )
    con = duckdb.connect()
    try:
        rows = []
        for number, page in enumerate(pages):
            if isinstance(page, client.HeldPage):  # read where the engine in this process wrote it
                rows.extend(con.execute(f"SELECT {projection} FROM read_parquet(?) LIMIT {page.row_count} "
                                        f"OFFSET {page.offset}", [page.path]).fetchall())
                continue
            path = folder / f"page-{number}.parquet"
            path.write_bytes(base64.b64decode(page.data))
            rows.extend(con.execute(f"SELECT {projection} FROM read_parquet(?)", [str(path)]).fetchall())
        return rows
    finally:
        con.close()


@pytest.mark.parametrize("name, type_sql, literals", TYPE_CASES, ids=CASE_IDS)
def test_values_survive_exactly(engine, tmp_path, name, type_sql, literals):
    # .df() hides precision loss (HUGEINT and DECIMAL(38,10) become float64) and cannot
    # show UHUGEINT or TIMETZ at all; Python objects show every digit and offset.
    sql = typed_query(type_sql, literals)
    result = client.run_query(engine, sql, page_size=2)
    assert repr(exact_rows(result, tmp_path)) == repr(duckdb.sql(sql).fetchall())


MIXED_SQL = """
SELECT
    i,
    i::HUGEINT * 1000000000000000000000 AS huge,
    (i / 7)::DECIMAL(38,10) AS wide_decimal,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL 1 MINUTE AS tstz,
    CASE WHEN i % 5 = 0 THEN NULL ELSE md5(i::VARCHAR) END AS text,
    [i, i + 1] AS pair,
    {'n': i::HUGEINT, 'tag': (CASE WHEN i % 2 = 0 THEN 'x' ELSE 'a' END)::ENUM('a', 'x')} AS nested,
    i::BIT AS bits,
    i % 3 = 0 AS flag
FROM range(50000) AS t(i)
ORDER BY i
"""


def test_multi_page_result_equals_local_df(engine):
    sql = MIXED_SQL
    result = client.run_query(engine, sql, page_size=1000)
    assert result.total_rows == 50000
    assert result.first_page.row_count == 1000
    expected = duckdb.sql(sql).df()
    pd.testing.assert_frame_equal(result.to_dataframe(), expected)
    # The same rows, fetched in several explicit pages and put together.
    frames = []
    offset = 0
    while offset < result.total_rows:
        page = result.page(offset, 12_345)
        assert page.offset == offset and page.row_count > 0
        frames.append(page.frame())
        offset += page.row_count
    assert len(frames) > 1
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), expected)


def test_descending_order_of_lossy_column_kept_across_pages(engine):
    # A HUGEINT travels as VARCHAR inside the stored result: the order must still be the query's.
    sql = "SELECT (i * 7919 % 300000)::HUGEINT AS h, i FROM range(300000) AS t(i) ORDER BY h DESC"
    result = client.run_query(engine, sql, page_size=100)
    expected = duckdb.sql(sql).df()
    frames = [result.page(offset, 40_000).frame() for offset in range(0, result.total_rows, 40_000)]
    assert len(frames) > 1
    got = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)
    assert got["h"].is_monotonic_decreasing


def test_odd_column_names_equal_local_df(engine):
    sql = 'SELECT 1 AS "a""b", 2 AS "x y", 3 AS "row_number", 4 AS c0, 5 AS "Ü", 6::HUGEINT AS "h.h"'
    pd.testing.assert_frame_equal(client.run_query(engine, sql).to_dataframe(), duckdb.sql(sql).df())


# --- TIMESTAMPTZ and the TimeZone setting -------------------------------------------

_TZ_SQL = (
    "SELECT t, t::DATE AS day, hour(t) AS hour, t::VARCHAR AS text "
    "FROM (VALUES (TIMESTAMPTZ '2024-01-02 03:00:00+00'), (NULL)) AS v(t)"
)

_NOTEBOOK_SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    import duckdb, pandas as pd
    from lakemagic import client
    from lakelambda import protocol
    from lakemagic.engines import Engine, Reply

    HANDLER = '''
    import json, sys
    from lakelambda.handler import LakeHandler
    event = json.loads(sys.stdin.read())
    print(json.dumps(LakeHandler(sys.argv[1])(event)))
    '''

    class SubprocessEngine(Engine):
        # The handler in its own process with its own TZ, as in a Lambda container.
        name = "subprocess"
        concurrency = 1
        shares_files = True
        def __init__(self, lake, tz):
            self.lake, self.tz = lake, tz
        def call(self, request):
            env = dict(os.environ, TZ=self.tz)
            done = subprocess.run([sys.executable, "-c", HANDLER, self.lake], input=json.dumps(protocol.encode(request)),
                                  capture_output=True, text=True, env=env, check=True)
            return Reply(json.loads(done.stdout))

    lake, handler_tz, sql = sys.argv[1], sys.argv[2], sys.argv[3]
    if handler_tz == "same":
        from lakemagic.engines.embedded import EmbeddedEngine
        os.makedirs(lake, exist_ok=True)
        engine = EmbeddedEngine(lake)
    else:
        engine = SubprocessEngine(lake, handler_tz)
    got = client.run_query(engine, sql).to_dataframe()
    pd.testing.assert_frame_equal(client.query_frame(engine, sql), got)  # VAR <<'s frame: the same zone
    utc = duckdb.connect()
    utc.execute("SET TimeZone = 'UTC'")
    expected = utc.sql(sql).df()
    print(duckdb.sql("SELECT current_setting('TimeZone')").fetchone()[0])
    print(got.to_json(date_format="iso"))
    print(expected.to_json(date_format="iso"))
    assert str(got["t"].dt.tz) == duckdb.sql("SELECT current_setting('TimeZone')").fetchone()[0]
    for frame in (got, expected):
        frame["t"] = frame["t"].dt.tz_convert("UTC")
    pd.testing.assert_frame_equal(got, expected)
    """
)


def _run_notebook(tmp_path, notebook_tz: str, handler_tz: str) -> subprocess.CompletedProcess:
    script = tmp_path / "notebook.py"
    script.write_text(_NOTEBOOK_SCRIPT)
    env = dict(os.environ, TZ=notebook_tz)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "lake"), handler_tz, _TZ_SQL],
        capture_output=True, text=True, env=env, timeout=60,
    )


# Every engine computes in UTC (Lambda's zone), so t::DATE and hour(t) are the
# same wherever a query runs; the DataFrame shows the instants in the notebook's zone.


def test_timestamptz_in_a_non_utc_notebook_embedded(tmp_path):
    done = _run_notebook(tmp_path, "America/New_York", "same")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "America/New_York"


def test_timestamptz_when_handler_runs_in_utc_like_lambda(tmp_path):
    done = _run_notebook(tmp_path, "America/New_York", "UTC")
    assert done.returncode == 0, done.stdout + done.stderr


UNION_CASES = {
    "union": "SELECT union_value(i := 1)::UNION(i INTEGER, s VARCHAR) AS u",
    "struct_with_union": "SELECT {'u': union_value(i := 7)::UNION(i INTEGER, s VARCHAR)} AS v",
}


@pytest.mark.parametrize("name", sorted(UNION_CASES))
def test_unions_are_refused_with_a_clear_error(engine, name):
    # A UNION stored as VARCHAR comes back as its VARCHAR member; refusing beats a wrong value.
    with pytest.raises(LakeQueryError) as refused:
        client.run_query(engine, UNION_CASES[name])
    assert refused.value.error_type == "UnsupportedType"
    assert "UNION" in refused.value.message
