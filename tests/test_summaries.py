"""Every column of a result at a glance, in one call: its nulls, and its histogram or top values.

Checked against DuckDB's own counts over the whole result, for a result held by the kernel engine (it came
inline), one stored by the embedded handler and one stored by the function on the local Lambda and S3
servers; a result above the documented size is summarized on a fixed-seed sample, and the answer says so.
"""

from __future__ import annotations

import datetime

import duckdb
import pytest

from lakelambda.explore import HISTOGRAM_BINS, SUMMARY_SAMPLE_ROWS, TOP_VALUES
from lakemagic import client
from lakemagic.engines import Engine
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.engines.kernel import kernel_engine

from servers import FUNCTION

SQL = """SELECT range AS n, CASE WHEN range % 7 = 0 THEN NULL ELSE range * 0.37 END AS x,
    'kind ' || (range * range % 13) AS word, range % 3 = 0 AS flag,
    TIMESTAMP '2019-04-01 06:00:00' + INTERVAL (range * 97) SECOND AS moment,
    DATE '2019-04-01' + CAST(range % 40 AS INTEGER) AS day
FROM range(5000)"""


@pytest.fixture(params=["inline", "stored", "lambda"])
def result(request, tmp_path, monkeypatch):
    """The rows inline in the query's answer (so held by the kernel engine), stored by the embedded handler,
    or stored in an S3 lake by the function behind the Lambda Invoke API (the real local servers)."""
    if request.param == "lambda":
        function = request.getfixturevalue("storing_function")
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", function.endpoint_url)
        engine: Engine = LambdaEngine(FUNCTION)
    else:
        if request.param == "stored":
            monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
        engine = EmbeddedEngine(str(tmp_path))
    result = client.run_query(engine, SQL, page_size=50)
    assert result.inline == (request.param == "inline")
    assert (result.engine is kernel_engine()) == result.inline
    return result


@pytest.fixture(scope="module")
def whole():
    """DuckDB's own reading of the query, as a table `whole` to count in."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE whole AS {SQL}")
    yield con
    con.close()


def edges(label: str, temporal: bool) -> tuple:
    low, high = label.split(" – ")
    if temporal:
        return datetime.datetime.fromisoformat(low), datetime.datetime.fromisoformat(high)
    return float(low.replace(",", "")), float(high.replace(",", ""))


def test_summaries_are_duckdbs_own_counts_over_the_whole_result(result, whole):
    answer = result.summaries()
    assert (answer.rows, answer.sampled) == (5000, False)
    assert [summary.column for summary in answer.columns] == [column.name for column in result.columns]
    kinds = {summary.column: summary.bars_kind for summary in answer.columns}
    assert kinds == {"n": "histogram", "x": "histogram", "word": "top", "flag": "top", "moment": "histogram",
                     "day": "histogram"}
    for summary in answer.columns:
        name = summary.column
        assert summary.nulls == whole.execute(f"SELECT count(*) - count({name}) FROM whole").fetchone()[0]
        if summary.bars_kind == "top":
            expected = whole.execute(f"SELECT CAST({name} AS VARCHAR) AS v, count(*) AS c FROM whole WHERE {name} "
                                     f"IS NOT NULL GROUP BY v ORDER BY c DESC, v LIMIT {TOP_VALUES}").fetchall()
            assert [(bar.label, bar.count) for bar in summary.bars] == expected
            continue
        # Equal-width bins, edge to edge, covering every value; each bar counts the values in it.
        temporal = name in ("moment", "day")
        bins = [edges(bar.label, temporal) for bar in summary.bars]
        assert 2 <= len(bins) <= HISTOGRAM_BINS + 1
        assert all(high == following for (_, high), (following, _) in zip(bins, bins[1:]))
        assert len({high - low for low, high in bins}) == 1
        low, high = whole.execute(f"SELECT min({name}), max({name}) FROM whole").fetchone()
        if name == "day":
            low, high = (datetime.datetime.combine(day, datetime.time()) for day in (low, high))
        assert bins[0][0] <= low and high <= bins[-1][1]
        for index, (start, end) in enumerate(bins):
            last = index == len(bins) - 1
            count = whole.execute(f"SELECT count(*) FROM whole WHERE {name} >= $start AND "
                                  f"({name} < $end OR ($last AND {name} = $end))",
                                  {"start": start, "end": end, "last": last}).fetchone()[0]
            assert summary.bars[index].count == count, (name, summary.bars[index])


def test_bins_have_readable_edges(result):
    bars = {summary.column: summary.bars for summary in result.summaries().columns}
    assert bars["n"][0].label == "0 – 500" and bars["n"][-1].label == "4,500 – 5,000"
    assert bars["day"][0].label.startswith("2019-04-01 – ")  # a date where bins are whole days
    assert all(label.endswith(":00") or label[-3] == ":"  # whole minutes: no odd seconds
               for bar in bars["moment"] for label in bar.label.split(" – "))
    assert result.profile("moment").bars == bars["moment"]  # the profile draws the same bins


def test_a_big_result_is_summarized_on_a_sample_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    sql = ("SELECT range AS n, CASE WHEN range % 4 = 0 THEN NULL ELSE 'v' || (range % 3) END AS word "
           "FROM range(2000000)")
    result = client.run_query(EmbeddedEngine(str(tmp_path)), sql, page_size=50)
    assert result.total_rows == 2_000_000
    answer = result.summaries()
    assert answer.sampled and answer.rows == SUMMARY_SAMPLE_ROWS < result.total_rows
    for summary in answer.columns:
        assert summary.nulls + sum(bar.count for bar in summary.bars) == answer.rows
    word = answer.columns[1]
    assert abs(word.nulls / answer.rows - 0.25) < 0.01  # a quarter of the whole result's rows are NULL
    assert {bar.label for bar in word.bars} == {"v0", "v1", "v2"}
    assert result.summaries().columns == answer.columns  # the seed is fixed: the same sample every time


@pytest.mark.parametrize("sql", [
    "SELECT NULL::INTEGER AS nothing, [range, 2] AS list, INTERVAL (range) HOUR AS span, {'a': range} AS struct, "
    "TIMESTAMPTZ '2020-01-01 00:00:00+05' + INTERVAL (range) HOUR AS zoned, uuid() AS id FROM range(30)",
    "SELECT * FROM (VALUES (-1.7e308::DOUBLE), (1.7e308), ('inf'), ('nan'), (NULL)) AS t(too_wide)",
    "SELECT * FROM (VALUES (0::DOUBLE), (5e-324::DOUBLE), (1e-320)) AS t(too_narrow)",
    "SELECT 1 AS n WHERE false",
])
def test_a_column_of_any_type_or_span_is_summarized_every_row_counted(sql, tmp_path):
    answer = client.run_query(EmbeddedEngine(str(tmp_path)), sql, page_size=50).summaries()
    for summary in answer.columns:
        counted = summary.nulls + sum(bar.count for bar in summary.bars)
        if summary.bars_kind == "top" and len(summary.bars) == TOP_VALUES:  # the most frequent values only
            assert counted <= answer.rows, summary
        else:
            assert counted == answer.rows, summary
    zoned = next((s for s in answer.columns if s.column == "zoned"), None)
    if zoned is not None:  # in UTC, as the engine computes: 2020-01-01 00:00+05 is 2019-12-31 19:00
        assert zoned.bars_kind == "histogram" and zoned.bars[0].label.startswith("2019-12-31 18:00 – ")
