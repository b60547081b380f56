"""Sort, filter, profile and pages of a whole result, wherever it is held: the function over its stored
result (on the real local servers), the embedded handler over its stored result, and the kernel engine
over a result that came inline or that it merged from a fan-out. All four are served by the same result
operations (lakelambda/results.py).

Every answer is checked against DuckDB's own ORDER BY, WHERE and aggregates over the whole result.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from lakelambda import protocol
from lakelambda import explore
from lakelambda.explore import HISTOGRAM_BINS
from lakelambda.errors import ProtocolError
from lakelambda.protocol import SortKey
from lakemagic import client
from lakemagic.display import render
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.engines.kernel import kernel_engine
from lakemagic.errors import LakeQueryError
from lakemagic.fanout import runner

from servers import CREDENTIALS, FUNCTION, OTHER_BUCKET
import events

SQL = "SELECT * FROM taxi_2019_04 LIMIT 6000"


@pytest.fixture(params=["lambda", "embedded", "in memory", "inline", "merged"])
def result(request, local_taxi_lake, monkeypatch):
    """Taxi rows stored by the function, stored by the embedded handler, kept in its database's memory (a
    query run in-process, not kept for reuse), inline (so held by the kernel engine), or merged by the kernel
    engine from a fan-out's tasks."""
    if request.param == "lambda":
        function = request.getfixturevalue("storing_function")
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", function.endpoint_url)
        engine = LambdaEngine(FUNCTION)
    else:
        if request.param == "embedded":
            monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
        engine = EmbeddedEngine(str(local_taxi_lake))
    if request.param == "merged":
        result = runner.run(engine, "SELECT * FROM partitioned LIMIT 6000", {}, 50, (), 4)
        assert result.stats.fanout.tasks > 1 and result.engine is kernel_engine()
    elif request.param == "in memory":
        result = client.run_query(engine, SQL, page_size=50, reuse=False)
        assert isinstance(result.first_page, client.TextPage) and result.engine is engine
    else:
        result = client.run_query(engine, SQL, page_size=50)
        assert result.inline == (request.param == "inline")
    assert result.total_rows == 6000
    return result


def in_duckdb(whole: pd.DataFrame, clause: str) -> pd.DataFrame:
    """DuckDB's answer over the whole result, its rows numbered in result order."""
    numbered = whole.reset_index()  # noqa: F841 (read by DuckDB by name)
    return duckdb.sql(f"SELECT * EXCLUDE (index) FROM numbered {clause}").df()


@pytest.mark.parametrize("column, descending", [("fare_amount", True), ("payment_type", False), ("pickup_at", True)])
def test_a_sort_orders_the_whole_result_as_duckdb_does(result, column, descending):
    derived = result.derive((SortKey(column, descending),))
    order = f"ORDER BY {column} {'DESC' if descending else 'ASC'} NULLS LAST, index"
    expected = in_duckdb(result.to_dataframe(), order)
    assert derived.total_rows == result.total_rows
    pd.testing.assert_frame_equal(derived.to_dataframe(), expected)
    # Its pages are the sorted rows, wherever they are.
    pd.testing.assert_frame_equal(derived.rows(5000, 50)[1], expected.iloc[5000:5050].reset_index(drop=True))


def test_a_filter_keeps_the_rows_duckdb_keeps_and_counts_them(result):
    where = "trip_distance > 3 AND payment_type = '1'"
    derived = result.derive((SortKey("trip_distance", False),), where)
    expected = in_duckdb(result.to_dataframe(), f"WHERE {where} ORDER BY trip_distance NULLS LAST, index")
    assert 0 < derived.total_rows == len(expected) < result.total_rows
    pd.testing.assert_frame_equal(derived.to_dataframe(), expected)


def test_a_filter_may_use_plain_functions_operators_and_comments(result):
    where = ("lower(vendor_id) IN ('1', '2') /* either vendor */ AND date_part('hour', pickup_at) BETWEEN 7 AND 9 "
             "AND CAST(fare_amount AS INTEGER) % 2 = 0 AND store_and_fwd_flag IS NOT NULL -- and stored flags\n")
    derived = result.derive((), where)
    assert derived.total_rows == len(in_duckdb(result.to_dataframe(), f"WHERE {where}"))


@pytest.mark.parametrize("column", ["fare_amount", "passenger_count", "pickup_at", "payment_type"])
def test_a_profile_is_duckdbs_own_aggregates(result, column):
    profile = result.profile(column)
    whole = result.to_dataframe()  # noqa: F841
    rows, nulls, distinct = duckdb.sql(
        f"SELECT count(*), count(*) - count({column}), count(DISTINCT {column}) FROM whole").fetchone()
    assert (profile.rows, profile.nulls, profile.distinct) == (rows, nulls, distinct)
    assert profile.distinct_exact  # 6,000 rows: counted, not estimated
    if column == "payment_type":
        assert profile.bars_kind == "top" and profile.min is None
        top = duckdb.sql(f"SELECT {column}, count(*) AS n FROM whole WHERE {column} IS NOT NULL "
                         "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10").fetchall()
        assert [(bar.label, bar.count) for bar in profile.bars] == top
        return
    low, high, mean = duckdb.sql(f"SELECT CAST(min({column}) AS VARCHAR), CAST(max({column}) AS VARCHAR), "
                                 f"CAST(avg({column}) AS VARCHAR) FROM whole").fetchone()
    assert (profile.min, profile.max, profile.mean) == (low, high, mean)
    assert profile.bars_kind == "histogram"
    assert sum(bar.count for bar in profile.bars) == rows - nulls
    assert 2 <= len(profile.bars) <= HISTOGRAM_BINS + 1  # bins of one round width (bin_width), from below the least


def test_a_profile_estimates_distinct_values_above_the_exact_count_limit_and_says_so(local_taxi_lake, monkeypatch):
    monkeypatch.setattr(explore, "EXACT_DISTINCT_ROWS", 5_999)  # the embedded handler runs in this process
    result = client.run_query(EmbeddedEngine(str(local_taxi_lake)), SQL, page_size=50)
    profile = result.profile("fare_amount")
    whole = result.to_dataframe()  # noqa: F841
    estimate = duckdb.sql("SELECT approx_count_distinct(fare_amount) FROM whole").fetchone()[0]
    assert not profile.distinct_exact and profile.distinct == estimate
    assert f"distinct (estimate) <b>about {estimate:,}</b>" in render.profile_html(profile)


def test_a_profile_of_a_filtered_result_counts_only_its_rows(result):
    derived = result.derive((), "payment_type = '2'")
    profile = derived.profile("tip_amount")
    assert profile.rows == derived.total_rows
    whole = result.to_dataframe()  # noqa: F841
    assert profile.max == duckdb.sql("SELECT CAST(max(tip_amount) AS VARCHAR) FROM whole "
                                     "WHERE payment_type = '2'").fetchone()[0]


HOSTILE_FILTERS = {
    "a subquery over another table": ("fare_amount > (SELECT max(fare_amount) FROM taxi_2019_04)", "PermissionException"),
    "another bucket": (f"EXISTS (SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv'))", "PermissionException"),
    "read_parquet of another bucket": (f"fare_amount IN (SELECT 1 FROM read_parquet('s3://{OTHER_BUCKET}/x.parquet'))",
                                       "PermissionException"),
    "a setting": ("current_setting('s3_secret_access_key') IS NOT NULL", "PermissionException"),
    "the environment": ("getenv('AWS_SECRET_ACCESS_KEY') <> ''", "PermissionException"),
    "a file as a scalar": ("read_text('/etc/passwd') IS NOT NULL", "PermissionException"),
    "SQL from a string": ("query('SELECT 1') IS NOT NULL", "PermissionException"),
    "the engine's state": ("duckdb_secrets() IS NOT NULL", "PermissionException"),
    "a COPY after a semicolon": ("1 = 1; COPY (SELECT 1) TO 's3://lake/dataset/evil.parquet'", "ParserException"),
    "a SET after a semicolon": ("1 = 1; SET enable_external_access = true", "ParserException"),
    "closing the parenthesis": (f"1 = 1) UNION ALL SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv') WHERE (1 = 1",
                                "PermissionException"),
    "closing it around comments": (f"1 = 1 /* */) UNION ALL SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv') "
                                   "WHERE (/* */ 1 = 1", "PermissionException"),
    "a comment swallowing the rest": ("1 = 1) --", "ParserException"),
    "an open comment": ("1 = 1 /*", "ParserException"),
    "a window": ("row_number() OVER () < 10", "PermissionException"),
    "an aggregate": ("fare_amount > avg(fare_amount)", "PermissionException"),
    "a lambda": ("list_filter([1, 2], x -> x > 1) IS NOT NULL", "PermissionException"),
    "a parameter": ("fare_amount > $limit", "PermissionException"),
    "a schema-qualified function": ("main.lower(vendor_id) = '1'", "PermissionException"),
    "a column the result lacks": ("secret > 1", "ColumnNotFound"),
    "malformed": ("fare_amount >", "ParserException"),
    "a wrong type": ("payment_type + 1 > 2", "BinderException"),
}


@pytest.mark.parametrize("name", HOSTILE_FILTERS)
def test_hostile_and_malformed_filters_are_refused_and_change_nothing(result, name):
    where, error_type = HOSTILE_FILTERS[name]
    before = result.rows(50, 10)[1]
    with pytest.raises(LakeQueryError) as refused:
        result.derive((), where)
    assert refused.value.error_type == error_type
    assert "hunter2" not in str(refused.value) and CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in refused.value.message
    pd.testing.assert_frame_equal(result.rows(50, 10)[1], before)


def test_a_refusal_points_into_the_filter(result):
    with pytest.raises(LakeQueryError) as refused:
        result.derive((), "fare_amount > 1 AND getenv('HOME') = ''")
    assert refused.value.position == len("fare_amount > 1 AND ")
    assert refused.value.pointer().endswith("^")


@pytest.mark.parametrize("column", ['fare_amount" DESC, (SELECT 1) --', "FARE_AMOUNT", "nope"])
def test_sort_and_profile_name_a_column_exactly(result, column):
    with pytest.raises(LakeQueryError) as refused:
        result.derive((SortKey(column),))
    assert refused.value.error_type == "ColumnNotFound"
    with pytest.raises(LakeQueryError) as refused:
        result.profile(column)
    assert refused.value.error_type == "ColumnNotFound"


def test_quoted_odd_column_names_sort_and_filter(tmp_path):
    engine = EmbeddedEngine(str(tmp_path))
    sql = "SELECT range AS \"we\"\"ird col\", -range AS \"ORDER\" FROM range(50)"
    result = client.run_query(engine, sql)
    derived = result.derive((SortKey('we"ird col', True),), '"ORDER" > -10')
    assert derived.to_dataframe()['we"ird col'].tolist() == list(range(9, -1, -1))


def test_an_inline_result_is_explored_by_the_kernel_engine_without_a_call_to_its_own(tmp_path):
    class Counting(EmbeddedEngine):
        calls = 0

        def call(self, request):
            Counting.calls += 1
            return super().call(request)

        def query_here(self, request, take=None):
            Counting.calls += 1
            return super().query_here(request, take)

    result = client.run_query(Counting(str(tmp_path)), "SELECT range AS n, range % 3 AS m FROM range(1000)")
    derived = result.derive((SortKey("n", True),), "m = 0")
    profile = derived.profile("n")
    assert Counting.calls == 1
    assert derived.engine is kernel_engine() and derived.total_rows == 334 and profile.max == "999"


def test_hugeints_and_intervals_sort_by_value_not_by_their_stored_text(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    sql = "SELECT CAST(range AS HUGEINT) * 11 AS h, to_days(range) AS d FROM range(12)"
    result = client.run_query(EmbeddedEngine(str(tmp_path)), sql)
    derived = result.derive((SortKey("h", True),), "d > INTERVAL 2 DAY")
    frame = derived.to_dataframe()
    assert frame["h"].tolist() == [11 * i for i in range(11, 2, -1)]


@pytest.mark.parametrize("event, problem", [
    ({"sort": "fare_amount"}, "'sort' must be a list"),
    ({"sort": [{"column": "x", "descending": "yes"}]}, "descending"),
    ({"sort": [{"column": "x"}]}, "exactly 'column' and 'descending'"),
    ({"sort": [{"column": "x", "descending": False}] * 9}, "at most 8"),
    ({"sort": [{"column": 3, "descending": False}]}, "column name"),
    ({"filter": 7}, "'filter' must be null or a string"),
    ({"filter": "x" * 10_001}, "'filter' must be null or a string"),
    ({"extra": 1}, "unknown field(s) extra"),
])
def test_derive_requests_are_validated_at_the_edge(event, problem):
    request = dict(events.derive_request("a" * 32, (), None, 50), **event)
    with pytest.raises(ProtocolError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        protocol.parse_request(request)


def test_profile_requests_are_validated_at_the_edge():
    with pytest.raises(ProtocolError, match="'column' must be a column name"):
        protocol.parse_request(dict(events.profile_request("a" * 32, "x"), column=None))
    with pytest.raises(ProtocolError, match="unknown field"):
        protocol.parse_request(dict(events.profile_request("a" * 32, "x"), filter="1=1"))
    assert protocol.parse_request(events.profile_request("a" * 32, "x")) == protocol.ProfileRequest("a" * 32, "x")


def test_one_call_sorts_and_filters_and_a_page_anywhere_in_it_is_one_more(local_taxi_lake, monkeypatch):
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")

    class Counting(EmbeddedEngine):
        requests: list = []

        def call(self, request):
            Counting.requests.append(request.op)
            return super().call(request)

        def query_here(self, request, take=None):
            Counting.requests.append(request.op)
            return super().query_here(request, take)

    result = client.run_query(Counting(str(local_taxi_lake)), SQL, page_size=50)
    derived = result.derive((SortKey("fare_amount", True),), "payment_type = '1'")
    derived.rows(derived.total_rows - 10, 10)
    derived.rows(50, 50)
    assert Counting.requests == ["query", "derive", "page", "page"]
