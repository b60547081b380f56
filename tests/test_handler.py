"""The lake handler as the notebook sees it: answers for every event, SQL errors, paging, the catalog.

Lakes are built in tmp_path with DuckDB directly. Expected results always
come from DuckDB running the same SQL locally, never from the handler.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
import re
import secrets
import uuid

import duckdb
import pandas as pd
import pytest

from lakelambda import protocol
from lakelambda.handler import LakeHandler
from lakemagic import client
from lakemagic.decode import decode_pages
from lakemagic.engines import Reply
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError
import events


def sql_literal(text) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def wire(handler: LakeHandler, event) -> dict:
    """Call the handler as Lambda does: the event and the answer both cross JSON."""
    answer = handler(json.loads(json.dumps(event)), None)
    return json.loads(json.dumps(answer))


def query(handler: LakeHandler, sql: str, params: dict | None = None, page_size: int = 50) -> dict:
    return wire(handler, events.query_request(sql, params or {}, page_size))


def page(handler: LakeHandler, result_id: str, offset: int, limit: int) -> dict:
    return wire(handler, events.page_request(result_id, offset, limit))


def frame(answer: dict) -> pd.DataFrame:
    parsed = protocol.parse_answer(answer)
    assert isinstance(parsed, protocol.PageAnswer), answer.get("error")
    return decode_pages([parsed.page.data], parsed.result.columns, parsed.page.row_count)


def expect_error(answer: dict, error_type: str) -> dict:
    assert "error" in answer, f"expected {error_type}, got a result with columns {answer.get('columns')}"
    assert answer["version"] == protocol.VERSION
    assert answer["error"]["type"] == error_type, answer["error"]
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert "result_id" not in answer and "page" not in answer
    return answer["error"]


@pytest.fixture
def lake(tmp_path) -> str:
    root = tmp_path / "lake"
    root.mkdir()
    return str(root)


@pytest.fixture
def handler(lake) -> LakeHandler:
    """A warm handler: its first (cold) call has already been a good one."""
    h = LakeHandler(lake)
    assert "error" not in h(events.query_request("SELECT 1", {}, 1))
    return h


@pytest.fixture
def engine(lake) -> EmbeddedEngine:
    return EmbeddedEngine(lake)


# --- protocol validation ---------------------------------------------------------------

GOOD_QUERY = {"version": 1, "op": "query", "sql": "SELECT $a AS a", "params": {"a": 1}, "page_size": 10}
GOOD_PAGE = {"version": 1, "op": "page", "result_id": "A" * 32, "offset": 0, "limit": 10}
GOOD_PART = {"version": 1, "op": "part", "result_id": "A" * 32, "start": 0, "length": 10}


def with_fields(base: dict, **changes) -> dict:
    event = dict(base)
    for name, value in changes.items():
        if value is _MISSING:
            event.pop(name, None)
        else:
            event[name] = value
    return event


_MISSING = object()

MALFORMED_EVENTS = [
    # (id, event, a word the message must contain)
    ("list", [GOOD_QUERY], "object"),
    ("string", "SELECT 1", "object"),
    ("null", None, "object"),
    ("number", 1, "object"),
    ("version_missing", with_fields(GOOD_QUERY, version=_MISSING), "version"),
    ("version_2", with_fields(GOOD_QUERY, version=2), "version"),
    ("version_string", with_fields(GOOD_QUERY, version="1"), "version"),
    ("version_bool", with_fields(GOOD_QUERY, version=True), "version"),
    ("op_unknown", with_fields(GOOD_QUERY, op="drop"), "op"),
    ("op_missing", with_fields(GOOD_QUERY, op=_MISSING), "op"),
    ("sql_missing", with_fields(GOOD_QUERY, sql=_MISSING), "sql"),
    ("sql_empty", with_fields(GOOD_QUERY, sql=""), "sql"),
    ("sql_blank", with_fields(GOOD_QUERY, sql="  \n\t "), "sql"),
    ("sql_not_string", with_fields(GOOD_QUERY, sql=["SELECT 1"]), "sql"),
    ("sql_too_long", with_fields(GOOD_QUERY, sql="SELECT 1" + " " * protocol.MAX_SQL_CHARS), "sql"),
    ("page_size_missing", with_fields(GOOD_QUERY, page_size=_MISSING), "page_size"),
    ("page_size_string", with_fields(GOOD_QUERY, page_size="10"), "page_size"),
    ("page_size_float", with_fields(GOOD_QUERY, page_size=10.5), "page_size"),
    ("page_size_bool", with_fields(GOOD_QUERY, page_size=True), "page_size"),
    ("page_size_negative", with_fields(GOOD_QUERY, page_size=-1), "page_size"),
    ("page_size_too_big", with_fields(GOOD_QUERY, page_size=protocol.MAX_PAGE_ROWS + 1), "page_size"),
    ("offset_negative", with_fields(GOOD_PAGE, offset=-1), "offset"),
    ("offset_bool", with_fields(GOOD_PAGE, offset=False), "offset"),
    ("offset_missing", with_fields(GOOD_PAGE, offset=_MISSING), "offset"),
    ("offset_float", with_fields(GOOD_PAGE, offset=1.0), "offset"),
    ("limit_zero", with_fields(GOOD_PAGE, limit=0), "limit"),
    ("limit_bool", with_fields(GOOD_PAGE, limit=True), "limit"),
    ("limit_too_big", with_fields(GOOD_PAGE, limit=protocol.MAX_PAGE_ROWS + 1), "limit"),
    ("result_id_traversal", with_fields(GOOD_PAGE, result_id="../../etc/passwd"), "result_id"),
    ("result_id_traversal_long", with_fields(GOOD_PAGE, result_id="../../../../../../../../etc/passwd"), "result_id"),
    ("result_id_short", with_fields(GOOD_PAGE, result_id="abc"), "result_id"),
    ("result_id_slash", with_fields(GOOD_PAGE, result_id="A" * 20 + "/" + "A" * 11), "result_id"),
    ("result_id_newline", with_fields(GOOD_PAGE, result_id="A" * 32 + "\n"), "result_id"),
    ("result_id_number", with_fields(GOOD_PAGE, result_id=12345678901234567890123), "result_id"),
    ("result_id_missing", with_fields(GOOD_PAGE, result_id=_MISSING), "result_id"),
    ("part_start_negative", with_fields(GOOD_PART, start=-1), "start"),
    ("part_length_zero", with_fields(GOOD_PART, length=0), "length"),
    ("part_length_too_big", with_fields(GOOD_PART, length=protocol.MAX_PART_BYTES + 1), "length"),
    ("part_result_id_traversal", with_fields(GOOD_PART, result_id="../../etc/passwd"), "result_id"),
    ("query_unknown_field", with_fields(GOOD_QUERY, timeout=5), "timeout"),
    ("page_unknown_field", with_fields(GOOD_PAGE, sql="SELECT 1"), "sql"),
    ("params_list", with_fields(GOOD_QUERY, params=[1]), "params"),
    ("params_string", with_fields(GOOD_QUERY, params="a=1"), "params"),
    ("param_name_dash", with_fields(GOOD_QUERY, params={"a-b": 1}), "a-b"),
    ("param_name_digit", with_fields(GOOD_QUERY, params={"1a": 1}), "1a"),
    ("param_name_empty", with_fields(GOOD_QUERY, params={"": 1}), "parameter name"),
    ("param_name_space", with_fields(GOOD_QUERY, params={"a b": 1}), "a b"),
    ("param_name_dollar", with_fields(GOOD_QUERY, params={"$a": 1}), "$a"),
    ("param_name_injection", with_fields(GOOD_QUERY, params={"a; DROP": 1}), "a; DROP"),
    ("tag_bad_date", with_fields(GOOD_QUERY, params={"a": {"$type": "date", "value": "2024-13-45"}}), "date"),
    ("tag_date_number", with_fields(GOOD_QUERY, params={"a": {"$type": "date", "value": 20240101}}), "date"),
    ("tag_bad_datetime", with_fields(GOOD_QUERY, params={"a": {"$type": "datetime", "value": "yesterday"}}), "datetime"),
    ("tag_bad_time", with_fields(GOOD_QUERY, params={"a": {"$type": "time", "value": "25:61"}}), "time"),
    ("tag_bad_decimal", with_fields(GOOD_QUERY, params={"a": {"$type": "decimal", "value": "one"}}), "decimal"),
    ("tag_decimal_object", with_fields(GOOD_QUERY, params={"a": {"$type": "decimal", "value": {"x": 1}}}), "decimal"),
    ("tag_bad_uuid", with_fields(GOOD_QUERY, params={"a": {"$type": "uuid", "value": "not-a-uuid"}}), "uuid"),
    ("tag_uuid_number", with_fields(GOOD_QUERY, params={"a": {"$type": "uuid", "value": 5}}), "uuid"),
    ("tag_uuid_null", with_fields(GOOD_QUERY, params={"a": {"$type": "uuid", "value": None}}), "uuid"),
    ("tag_unknown_type", with_fields(GOOD_QUERY, params={"a": {"$type": "bytes", "value": "AA=="}}), "parameter"),
    ("tag_extra_key", with_fields(GOOD_QUERY, params={"a": {"$type": "date", "value": "2024-01-01", "tz": "UTC"}}), "parameter"),
    ("tag_missing_value", with_fields(GOOD_QUERY, params={"a": {"$type": "date"}}), "parameter"),
    ("plain_object_value", with_fields(GOOD_QUERY, params={"a": {"x": 1}}), "parameter"),
    ("tag_inside_list", with_fields(GOOD_QUERY, params={"a": [{"$type": "date", "value": "nope"}]}), "date"),
]


@pytest.mark.parametrize("event, word", [case[1:] for case in MALFORMED_EVENTS], ids=[case[0] for case in MALFORMED_EVENTS])
def test_malformed_event_gets_protocol_error_answer(handler, event, word):
    answer = wire(handler, event)  # an exception here fails the test: events are answered, never raised
    assert set(answer) == {"version", "error", "stats"}
    error = expect_error(answer, "ProtocolError")
    assert word in error["message"]


def test_malformed_first_event_does_not_break_the_handler(lake):
    # A fresh container whose first event is bad must still answer the next good one.
    h = LakeHandler(lake)
    expect_error(wire(h, "not an event"), "ProtocolError")
    answer = query(h, "SELECT 42 AS answer")
    assert "error" not in answer, answer.get("error")
    assert frame(answer)["answer"].tolist() == [42]


def test_good_template_events_are_accepted(handler):
    # The malformed events above are variations of these; they themselves are fine.
    answer = wire(handler, GOOD_QUERY)
    assert frame(answer)["a"].tolist() == [1]
    expect_error(wire(handler, GOOD_PAGE), "ResultNotFound")
    expect_error(wire(handler, GOOD_PART), "ResultNotFound")


# --- SQL errors ------------------------------------------------------------------------

_COLUMNS_60 = ", ".join(f"{i} AS c{i}" for i in range(60))


def _last(sql: str, token: str) -> int:
    return sql.rindex(token)


def _first(sql: str, token: str) -> int:
    return sql.index(token)


# (id, sql, where the offending token starts)
POSITION_CASES = [
    ("parser_first_word", "SELEC 1", lambda s: 0),
    ("parser_multiline", "SELECT a,\n       b\nFROM (SELECT 1 a, 2 b)\nWHERE a = = 1", lambda s: _last(s, "= 1")),
    ("binder_one_line", "SELECT nope FROM (SELECT 1 AS a)", lambda s: _first(s, "nope")),
    ("binder_multiline", "SELECT a,\n  nope\nFROM (SELECT 1 AS a)", lambda s: _first(s, "nope")),
    ("binder_trailing_comment", "SELECT a\nFROM (SELECT 1 AS a)\nWHERE nope > 0 -- keep positive ones\n",
     lambda s: _first(s, "nope")),
    ("binder_trailing_semicolon", "SELECT a\nFROM (SELECT 1 AS a)\nWHERE nope > 0;\n", lambda s: _first(s, "nope")),
    ("binder_leading_comment", "-- first a comment\n  SELECT nope FROM (SELECT 1 AS a)", lambda s: _first(s, "nope")),
    ("binder_crlf", "SELECT a,\r\n  nope\r\nFROM (SELECT 1 AS a)", lambda s: _first(s, "nope")),
    ("catalog_multiline", "SELECT *\nFROM\n  nosuch_table", lambda s: _first(s, "nosuch_table")),
    ("long_line_elided_middle", f"SELECT {_COLUMNS_60}, nope, {_COLUMNS_60} FROM (SELECT 1 AS a)",
     lambda s: _first(s, "nope")),
    ("long_line_elided_end", f"SELECT {_COLUMNS_60}, nope FROM (SELECT 1 AS a)", lambda s: _first(s, "nope")),
    ("long_second_line_elided", f"SELECT 1 AS x,\n  {_COLUMNS_60}, nope, {_COLUMNS_60}\nFROM (SELECT 1 AS a)",
     lambda s: _first(s, "nope")),
    ("wide_characters_before_error", "SELECT '日本語' AS s, nope AS second_column FROM (SELECT 1 AS a) AS the_table",
     lambda s: _first(s, "nope")),
    ("parser_end_of_input", "SELECT (1 + 2", lambda s: len(s)),
]


@pytest.mark.parametrize("sql, where", [c[1:] for c in POSITION_CASES], ids=[c[0] for c in POSITION_CASES])
def test_sql_error_class_and_position(handler, sql, where):
    with pytest.raises(duckdb.Error) as local:
        duckdb.sql(sql).fetchall()
    error = expect_error(query(handler, sql), type(local.value).__name__)
    expected = where(sql)
    assert error["position"] == expected, (
        f"position {error['position']} points at {sql[error['position']:][:20]!r}, "
        f"expected {expected} at {sql[expected:][:20]!r}"
    )


# (id, sql, the cast expression that fails on a row's data)
RUNTIME_CASES = [
    ("one_line", "SELECT i::INTEGER AS n FROM (VALUES ('1'), ('x')) AS t(i)", "i::INTEGER"),
    ("multiline", "SELECT 1 AS x,\n  i::INTEGER AS n\nFROM (VALUES ('1'), ('x')) AS t(i)\n-- done", "i::INTEGER"),
    ("beside_lossy_column",
     "SELECT 1::HUGEINT AS h,\n  i::INTEGER AS n\nFROM (VALUES ('1'), ('x')) AS t(i)", "i::INTEGER"),
    ("constant", "SELECT 'abc'::INTEGER AS n FROM range(3)", "'abc'::INTEGER"),
]


@pytest.mark.parametrize("sql, expression", [c[1:] for c in RUNTIME_CASES], ids=[c[0] for c in RUNTIME_CASES])
def test_runtime_conversion_error_points_into_the_failing_cast(handler, sql, expression):
    with pytest.raises(duckdb.ConversionException):
        duckdb.sql(sql).fetchall()
    error = expect_error(query(handler, sql), "ConversionException")
    start = sql.index(expression)
    assert error["position"] is not None and start <= error["position"] < start + len(expression), (
        error["position"], sql[error["position"] or 0:][:20])


def test_sql_error_reaches_the_notebook_as_lake_query_error(engine):
    sql = "SELECT a,\n  nope\nFROM (SELECT 1 AS a)"
    with pytest.raises(LakeQueryError) as raised:
        client.run_query(engine, sql)
    assert raised.value.error_type == "BinderException"
    assert sql[raised.value.position:].startswith("nope")
    assert "LINE 2:   nope" in str(raised.value)


# --- only single queries -------------------------------------------------------------------

def test_unsupported_statements_do_nothing(handler, lake, tmp_path):
    copy_target = tmp_path / "copied.parquet"
    attached = tmp_path / "attached.duckdb"
    statements = [
        "CREATE TABLE t (a INTEGER)",
        "CREATE VIEW v AS SELECT 1",
        "INSERT INTO t VALUES (1)",
        "DELETE FROM t",
        f"COPY (SELECT 1) TO {sql_literal(copy_target)}",
        "SET threads = 1",
        f"ATTACH {sql_literal(attached)}",
        "SELECT 1; SELECT 2",
        f"SELECT 1; COPY (SELECT 1) TO {sql_literal(copy_target)}",
        "SELECT 1;\nCREATE TABLE t (a INTEGER);",
    ]
    for sql in statements:
        error = expect_error(query(handler, sql), "UnsupportedStatement")
        assert error["message"], sql
    assert not copy_target.exists()
    assert not attached.exists()


@pytest.mark.parametrize("sql", [
    "SELECT 42 AS answer;",
    "SELECT 42 AS answer -- the answer",
    "SELECT 42 AS answer; -- the answer\n",
    "SELECT 42 AS answer\n-- done; really\n",
    "/* a */ SELECT 42 AS answer /* b */ ;  -- c\n  ",
    "WITH x AS (SELECT 42 AS answer) SELECT * FROM x;",
    "FROM (SELECT 42 AS answer);",
])
def test_trailing_semicolon_and_comment(handler, sql):
    expected = duckdb.sql(sql).df()
    pd.testing.assert_frame_equal(frame(query(handler, sql)), expected)


@pytest.mark.parametrize("sql", [
    "SELECT city FROM (VALUES ('Zürich'), ('Genève')) AS t(city)",
    "SELECT 'Zürich' AS city;",
    "SELECT '東京' AS city; -- capital",
    "SELECT count(*) AS n FROM (VALUES ('Zürich')) AS t(city) WHERE city IN ('Zürich')",
])
def test_non_ascii_sql_is_answered(handler, sql):
    answer = query(handler, sql)  # an exception here is a crash of the handler
    pd.testing.assert_frame_equal(frame(answer), duckdb.sql(sql).df())


@pytest.mark.parametrize("sql", [
    "SELECT * FROM duckdb_secrets()",
    "SELECT 'Zürich' AS city, * FROM duckdb_secrets() AS secrets_of_the_handler",
    "SELECT '東京' AS city, secret_rows.* FROM which_secret('s3://bucket/key', 's3') AS secret_rows",
])
def test_secret_functions_are_refused_wherever_they_appear(handler, sql):
    # PROTOCOL.md / query.py: the handler's credentials are not for queries to read.
    error = expect_error(query(handler, sql), "PermissionException")
    assert "not available to queries" in error["message"]
    name = "duckdb_secrets" if "duckdb_secrets" in sql else "which_secret"
    assert error["position"] == sql.index(name)


@pytest.fixture
def trips_lake(lake) -> str:
    os.makedirs(os.path.join(lake, "dataset"))
    path = os.path.join(lake, "dataset", "trips.parquet")
    duckdb.sql(
        "COPY (SELECT i AS id, (i % 7)::INTEGER AS zone, i * 1.5 AS fare, 'v' || (i % 3) AS vendor "
        f"FROM range(100) AS t(i)) TO {sql_literal(path)} (FORMAT parquet)"
    )
    return lake


def _local_with_trips(lake: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW trips AS SELECT * FROM read_parquet({sql_literal(os.path.join(lake, 'dataset', 'trips.parquet'))})")
    return con


@pytest.mark.parametrize("sql", ["DESCRIBE trips", "DESCRIBE SELECT zone, fare FROM trips", "SUMMARIZE trips",
                                 "SUMMARIZE SELECT fare FROM trips", "SHOW trips"])
def test_describe_summarize_show(trips_lake, sql):
    h = LakeHandler(trips_lake)
    expected = _local_with_trips(trips_lake).sql(sql).df()
    pd.testing.assert_frame_equal(frame(query(h, sql)), expected)


# --- paging -----------------------------------------------------------------------------

PAGED_SQL = "SELECT i, i * i AS square, md5(i::VARCHAR) AS h FROM range(1234) AS t(i) ORDER BY h"


def test_pages_equal_slices_of_the_duckdb_result(stored_results, handler):
    expected = duckdb.sql(PAGED_SQL).df()
    first = query(handler, PAGED_SQL, page_size=50)
    assert first["total_rows"] == 1234
    assert first["page"]["offset"] == 0 and first["page"]["row_count"] == 50
    pd.testing.assert_frame_equal(frame(first), expected.iloc[0:50].reset_index(drop=True))

    second = page(handler, first["result_id"], 50, 50)
    assert second["result_id"] == first["result_id"]
    assert second["page"]["offset"] == 50 and second["page"]["row_count"] == 50
    pd.testing.assert_frame_equal(frame(second), expected.iloc[50:100].reset_index(drop=True))

    last = page(handler, first["result_id"], 1200, 50)
    assert last["page"]["row_count"] == 34
    pd.testing.assert_frame_equal(frame(last), expected.iloc[1200:].reset_index(drop=True))

    for offset in (1234, 5000, 2**40):
        beyond = page(handler, first["result_id"], offset, 10)
        assert beyond["page"]["row_count"] == 0
        assert len(frame(beyond)) == 0
        assert list(frame(beyond).columns) == list(expected.columns)


def test_a_page_is_served_by_another_handler_over_the_same_lake(stored_results, lake):
    first = query(LakeHandler(lake), PAGED_SQL, page_size=10)
    other = page(LakeHandler(lake), first["result_id"], 10, 20)
    pd.testing.assert_frame_equal(frame(other), duckdb.sql(PAGED_SQL).df().iloc[10:30].reset_index(drop=True))


def test_unknown_result_id_is_result_not_found(handler):
    error = expect_error(page(handler, secrets.token_urlsafe(24), 0, 10), "ResultNotFound")
    assert "run the query again" in error["message"]


def test_client_page_and_to_dataframe(stored_results, engine):
    result = client.run_query(engine, PAGED_SQL, page_size=50)
    expected = duckdb.sql(PAGED_SQL).df()
    got = result.page(100, 25)
    assert (got.offset, got.row_count) == (100, 25)
    pd.testing.assert_frame_equal(got.frame(), expected.iloc[100:125].reset_index(drop=True))
    pd.testing.assert_frame_equal(result.to_dataframe(), expected)


# --- the 6 MB cut -------------------------------------------------------------------------

BIG_SQL = (
    "SELECT i, md5(i::VARCHAR) || md5((i + 1)::VARCHAR) || md5((i + 2)::VARCHAR) "
    "|| substr(md5((i + 3)::VARCHAR), 1, 4) AS s FROM range(200000) AS t(i)"
)


def test_big_rows_are_cut_to_fit_a_lambda_response(handler):
    requested = protocol.MAX_PAGE_ROWS
    first = query(handler, BIG_SQL, page_size=requested)
    total = first["total_rows"]
    assert total == 200_000
    frames = []
    answer, offset, calls = first, 0, 0
    while True:
        calls += 1
        assert len(json.dumps(answer).encode()) < protocol.MAX_RESPONSE_BYTES
        assert answer["page"]["offset"] == offset
        count = answer["page"]["row_count"]
        assert 0 < count < requested
        frames.append(frame(answer))
        assert len(frames[-1]) == count
        offset += count
        if offset >= total:
            break
        answer = page(handler, first["result_id"], offset, requested)
    assert offset == total
    assert calls >= 2  # 20 MB of text cannot travel in one answer
    got = pd.concat(frames, ignore_index=True)
    expected = duckdb.sql(BIG_SQL).df()
    assert got["i"].is_unique
    pd.testing.assert_frame_equal(got, expected)


class _MeasuringEngine(EmbeddedEngine):
    """The embedded engine, recording how big each answer is on the wire."""

    in_process = False  # every answer through the wire, as to Lambda

    def __init__(self, lake: str):
        super().__init__(lake)
        self.answer_sizes: list[int] = []

    def call(self, request: dict) -> Reply:
        reply = super().call(request)
        self.answer_sizes.append(len(json.dumps(reply.answer).encode()))
        return reply


def test_big_result_reaches_the_notebook_whole_in_answers_that_fit(lake):
    engine = _MeasuringEngine(lake)
    got = client.run_query(engine, BIG_SQL, page_size=protocol.MAX_PAGE_ROWS).to_dataframe()
    pd.testing.assert_frame_equal(got, duckdb.sql(BIG_SQL).df())
    assert len(engine.answer_sizes) >= 2
    assert max(engine.answer_sizes) < protocol.MAX_RESPONSE_BYTES


# --- $name parameters ------------------------------------------------------------------------

def test_parameters_are_bound_with_their_types(engine):
    sql = "SELECT $n AS n, $s AS s, $d AS d, $m AS m, $l AS l, $t AS t, $u AS u, $none AS none, $f AS f, $b AS b"
    params = {
        "n": 7, "s": "héllo", "d": dt.date(2024, 2, 29), "m": decimal.Decimal("12.345"), "l": [1, 2, 3],
        "t": dt.datetime(2024, 1, 2, 3, 4, 5, 6), "u": uuid.UUID(int=5), "none": None, "f": 1.5, "b": True,
    }
    result = client.run_query(engine, sql, params)
    local = duckdb.connect()
    expected_types = [(row[0], row[1]) for row in local.execute(f"DESCRIBE {sql}", params).fetchall()]
    assert [(c.name, c.type) for c in result.columns] == expected_types
    assert dict(expected_types)["d"] == "DATE" and dict(expected_types)["m"].startswith("DECIMAL")
    pd.testing.assert_frame_equal(result.to_dataframe(), local.execute(sql, params).df())


def test_parameters_filter_a_dataset(trips_lake):
    engine = EmbeddedEngine(trips_lake)
    sql = "SELECT id, fare FROM trips WHERE zone = $zone AND fare >= $min_fare AND vendor IN (SELECT unnest($vendors)) ORDER BY id"
    params = {"zone": 3, "min_fare": decimal.Decimal("30.0"), "vendors": ["v0", "v2"]}
    expected = _local_with_trips(trips_lake).execute(sql, params).df()
    assert len(expected) > 0
    pd.testing.assert_frame_equal(client.run_query(engine, sql, params).to_dataframe(), expected)


@pytest.mark.parametrize("sql", [
    "SELECT id FROM trips WHERE zone = $zone AND vendor <> 'Zürich' ORDER BY id",
    "SELECT id FROM trips WHERE vendor <> 'Zürich' AND zone = $zone ORDER BY id",
    "SELECT id, 'Genève' AS city FROM trips WHERE zone = $zone ORDER BY id DESC",
])
def test_parameters_beside_non_ascii_text_in_a_lake_query(trips_lake, sql):
    params = {"zone": 3}
    expected = _local_with_trips(trips_lake).execute(sql, params).df()
    assert len(expected) > 0
    pd.testing.assert_frame_equal(client.run_query(EmbeddedEngine(trips_lake), sql, params).to_dataframe(), expected)


@pytest.mark.parametrize("value", ["x'); DROP TABLE trips; --", "1 OR 1=1", "' OR '1'='1", "$other", "'; SELECT 1; --"])
def test_a_parameter_holding_sql_stays_a_value(trips_lake, value):
    engine = EmbeddedEngine(trips_lake)
    echoed = client.run_query(engine, "SELECT $v AS v", {"v": value}).to_dataframe()
    assert echoed["v"].tolist() == [value]
    filtered = client.run_query(engine, "SELECT id FROM trips WHERE vendor = $v OR id::VARCHAR = $v", {"v": value})
    assert filtered.total_rows == 0
    assert client.run_query(engine, "SELECT count(*) AS n FROM trips").to_dataframe()["n"].tolist() == [100]


def test_missing_parameter_value_is_an_error_answer(handler):
    error = expect_error(query(handler, "SELECT $a AS a, $b AS b", {"a": 1}), "InvalidInputException")
    assert "b" in error["message"]
    with pytest.raises(duckdb.InvalidInputException):
        duckdb.execute("SELECT $a AS a, $b AS b", {"a": 1})


# --- catalog ---------------------------------------------------------------------------------

@pytest.fixture
def catalog_lake(lake) -> str:
    for folder in ("dataset", "dashboard"):
        os.makedirs(os.path.join(lake, folder))
    duckdb.sql(f"COPY (SELECT 'dataset' AS src, i FROM range(5) AS t(i)) TO {sql_literal(os.path.join(lake, 'dataset', 'trips.parquet'))}")
    duckdb.sql(f"COPY (SELECT 'dataset' AS src, i FROM range(3) AS t(i)) TO {sql_literal(os.path.join(lake, 'dataset', 'zones.parquet'))}")
    duckdb.sql(f"COPY (SELECT 'dashboard' AS src, i FROM range(2) AS t(i)) TO {sql_literal(os.path.join(lake, 'dashboard', 'trips.parquet'))}")
    duckdb.sql(
        "COPY (SELECT i, (i % 3)::INTEGER AS k, 'p' || (i % 2) AS j FROM range(30) AS t(i)) "
        f"TO {sql_literal(os.path.join(lake, 'events'))} (FORMAT parquet, PARTITION_BY (k, j))"
    )
    return lake


def test_dataset_file(catalog_lake):
    sql = "SELECT * FROM zones ORDER BY i"
    expected = duckdb.sql(f"SELECT * FROM read_parquet({sql_literal(os.path.join(catalog_lake, 'dataset', 'zones.parquet'))}) ORDER BY i").df()
    pd.testing.assert_frame_equal(client.run_query(EmbeddedEngine(catalog_lake), sql).to_dataframe(), expected)


def test_a_dataset_wins_over_a_dashboard_file_of_the_same_name(catalog_lake):
    """Nothing written under dashboard/ can change what a dataset's name means, even one added later."""
    got = client.run_query(EmbeddedEngine(catalog_lake), "SELECT * FROM trips ORDER BY i").to_dataframe()
    expected = duckdb.sql(
        f"SELECT * FROM read_parquet({sql_literal(os.path.join(catalog_lake, 'dataset', 'trips.parquet'))}) ORDER BY i"
    ).df()
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["src"]) == {"dataset"}


def test_names_compare_without_case_as_duckdb_does(catalog_lake):
    engine = EmbeddedEngine(catalog_lake)
    assert client.run_query(engine, "SELECT count(*) AS n FROM TRIPS").to_dataframe()["n"][0] == 5
    with pytest.raises(LakeQueryError) as refused:
        client.materialize(engine, "SELECT 666 AS i", "dashboard/TRIPS.parquet")
    assert refused.value.error_type == "NameTaken"
    assert client.run_query(engine, "SELECT count(*) AS n FROM trips").to_dataframe()["n"][0] == 5


def test_hive_partitioned_folder_with_partition_columns(catalog_lake):
    engine = EmbeddedEngine(catalog_lake)
    pattern = sql_literal(os.path.join(catalog_lake, "events", "*=*", "**", "*.parquet"))
    local = f"read_parquet({pattern}, hive_partitioning = true)"
    for sql in ("SELECT * FROM {} ORDER BY i", "SELECT k, j, count(*) AS n FROM {} WHERE k = 1 GROUP BY ALL ORDER BY ALL"):
        got = client.run_query(engine, sql.format("events")).to_dataframe()
        expected = duckdb.sql(sql.format(local)).df()
        pd.testing.assert_frame_equal(got, expected)
    assert set(client.run_query(engine, "SELECT * FROM events").to_dataframe().columns) == {"i", "k", "j"}


def test_full_read_parquet_paths_still_work(catalog_lake):
    path = sql_literal(os.path.join(catalog_lake, "dataset", "trips.parquet"))
    sql = f"SELECT * FROM read_parquet({path}) ORDER BY i"
    pd.testing.assert_frame_equal(client.run_query(EmbeddedEngine(catalog_lake), sql).to_dataframe(), duckdb.sql(sql).df())


def test_join_of_lake_tables(catalog_lake):
    got = client.run_query(
        EmbeddedEngine(catalog_lake), "SELECT e.i, z.src FROM events e JOIN zones z ON e.i = z.i ORDER BY e.i"
    ).to_dataframe()
    assert got["i"].tolist() == [0, 1, 2]
    assert set(got["src"]) == {"dataset"}


def test_name_not_in_the_lake_is_catalog_exception(catalog_lake):
    h = LakeHandler(catalog_lake)
    sql = "SELECT * FROM\n  not_in_the_lake"
    error = expect_error(query(h, sql), "CatalogException")
    assert sql[error["position"]:].startswith("not_in_the_lake")
    expect_error(query(h, "SELECT * FROM dataset"), "CatalogException")


# --- stats -----------------------------------------------------------------------------------

def _check_stats(answer: dict, cold: bool) -> None:
    stats = answer["stats"]
    # PROTOCOL.md: time in the engine, cold start, the result's rows, the encoded bytes of the
    # page, the DuckDB version. (The page's byte count is named "encoded_bytes" there.)
    assert set(stats) >= {"engine_ms", "cold", "rows", "encoded_bytes", "duckdb_version"}
    assert isinstance(stats["engine_ms"], (int, float)) and stats["engine_ms"] >= 0
    assert stats["cold"] is cold
    assert stats["duckdb_version"] == duckdb.__version__
    if "error" in answer:
        assert stats["rows"] == 0 and stats["encoded_bytes"] == 0
    else:
        assert stats["rows"] == answer["total_rows"]
        assert stats["encoded_bytes"] == len(answer["page"]["data"]) > 0


def test_stats_on_every_answer(lake):
    h = LakeHandler(lake)
    first = query(h, "SELECT * FROM range(10)", page_size=3)
    _check_stats(first, cold=True)
    assert first["stats"]["rows"] == 10
    _check_stats(page(h, first["result_id"], 3, 3), cold=False)
    _check_stats(query(h, "SELECT nope"), cold=False)
    _check_stats(wire(h, {"version": 1}), cold=False)
    _check_stats(page(h, secrets.token_urlsafe(24), 0, 1), cold=False)
    _check_stats(query(h, "CREATE TABLE t (a INTEGER)"), cold=False)
    # Another handler is another container: cold again on its first call.
    _check_stats(query(LakeHandler(lake), "SELECT 1"), cold=True)


def test_stats_cold_on_a_first_call_that_fails(lake):
    h = LakeHandler(lake)
    _check_stats(query(h, "SELECT nope"), cold=True)
    _check_stats(query(h, "SELECT 1"), cold=False)


# --- result ids ---------------------------------------------------------------------------------

def test_result_ids_are_unguessable_and_kept_in_the_lake(stored_results, lake):
    h = LakeHandler(lake)
    run_again = [events.query_request("SELECT 1 AS one", {}, 50, reuse=False)] * 30
    ids = [wire(h, request)["result_id"] for request in run_again]
    ids.append(query(h, "SELECT 2 AS two")["result_id"])
    assert len(set(ids)) == len(ids)
    for result_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", result_id)
        assert len(result_id) * 6 >= 128  # base64url: 6 random bits a character
        padded = result_id + "=" * (-len(result_id) % 4)
        assert len(base64.urlsafe_b64decode(padded)) >= 16
    # Not a counter nor a clock: every character position varies across ids.
    for position in range(min(len(i) for i in ids)):
        assert len({result_id[position] for result_id in ids}) > 1, position
    results = os.path.join(lake, "_lakemagic", "results")
    stored = sorted(entry.name for entry in os.scandir(results) if entry.is_file())  # beside the reuse index's folder
    assert stored == sorted(f"{result_id}.parquet" for result_id in ids)
    assert os.listdir(lake) == ["_lakemagic"]
    stored = duckdb.sql(f"SELECT * FROM read_parquet({sql_literal(os.path.join(results, ids[0] + '.parquet'))})").fetchall()
    assert stored == [(1,)]


# --- duplicate column names ---------------------------------------------------------------------

DUPLICATE_NAME_CASES = [
    ("select_list", "SELECT 1 AS a, 2 AS a"),
    ("three_times", "SELECT 1 AS a, 2 AS a, 3 AS a"),
    ("join_star", "SELECT * FROM (SELECT 1 AS id, 'x' AS v) AS l JOIN (SELECT 1 AS id, 'y' AS v) AS r ON l.id = r.id"),
    ("join_using_star", "SELECT * FROM (SELECT 1 AS id, 'x' AS v) AS l JOIN (SELECT 1 AS id, 'y' AS v) AS r USING (id)"),
    ("with_lossy_type", "SELECT 1::HUGEINT AS a, 2::HUGEINT AS a"),
    ("renamed_name_already_taken", "SELECT 1 AS a, 2 AS a, 3 AS a_1"),
    ("taken_name_first", "SELECT 1 AS a_1, 2 AS a, 3 AS a"),
    ("differ_only_in_case", "SELECT 1 AS A, 2 AS a"),
]


@pytest.mark.parametrize("sql", [c[1] for c in DUPLICATE_NAME_CASES], ids=[c[0] for c in DUPLICATE_NAME_CASES])
def test_duplicate_column_names_like_duckdb_df(engine, sql):
    result = client.run_query(engine, sql)
    expected = duckdb.sql(sql).df()
    pd.testing.assert_frame_equal(result.to_dataframe(), expected)
    assert [c.name for c in result.columns] == list(expected.columns)


def test_a_query_naming_a_partitioned_table_for_fan_out_is_answered_with_its_listing(local_taxi_lake):
    """`fanout_tables` in a query: a partitioned table's listing comes back in the same call and nothing runs;
    a single-file table's query just runs, so it costs one invocation, not a listing call and then the query."""
    handler = LakeHandler(str(local_taxi_lake))
    sql = "SELECT count(*) AS n FROM {}"
    listed = protocol.parse_answer(wire(handler, events.query_request(
        sql.format("partitioned"), {}, 50, fanout_tables=("partitioned",))))
    assert isinstance(listed, protocol.PartitionsAnswer)  # the listing instead of a result: nothing ran
    (table,) = listed.tables
    alone = protocol.parse_answer(wire(handler, events.partitions_request(["partitioned"])))
    assert table == alone.tables[0] and len(table.files) > 1

    ran = wire(handler, events.query_request(sql.format("taxi_2019_04"), {}, 50, fanout_tables=("taxi_2019_04",)))
    assert frame(ran)["n"].tolist() == [20_000]
    unfiltered = wire(handler, events.query_request(sql.format("partitioned"), {}, 50))
    assert frame(unfiltered)["n"].tolist() == [20_000]  # without the field, a partitioned table's query runs


@pytest.mark.parametrize("tables", ["partitioned", [1], ["a b"], ["t"] * 17, [None]])
def test_fanout_tables_must_be_a_short_list_of_table_names(handler, tables):
    expect_error(wire(handler, dict(events.query_request("SELECT 1", {}, 1), fanout_tables=tables)), "ProtocolError")
