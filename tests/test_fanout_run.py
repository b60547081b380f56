"""Fan-out end to end, on real local servers: moto S3 and `lakemagic serve`'s Invoke API.

A lake of its own (a bucket): the generated taxi month partitioned by date
with a small zones table, and TPC-H lineitem (scale factor 0.01, from the
duckdb-extension-tpch wheel) Hive-partitioned by ship month with supplier
and nation. Each query's fanned-out result must equal its result on one
invocation; the invocations each takes are counted from the local Lambda's
own log lines.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import boto3
import duckdb
import pandas as pd
import pytest

from lakelambda.protocol import MAX_PAGE_ROWS
from lakelambda.sql import quote_literal
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.errors import EngineError, LakeQueryError
from lakemagic.fanout import runner
from servers import FUNCTION, start_function
from test_fanout_plan import TAXI_QUERIES, TPCH_QUERIES

BUCKET = "fanout-run"
FANOUT = 4
LOG_SETTLE_S = 0.1
# A sample of each lake's shapes (test_fanout_plan.py runs them all in-process): aggregates with
# count distinct, count(x) and min, stddev/variance, avg, expressions, HAVING/ORDER BY/LIMIT/OFFSET;
# filters and projections; ORDER BY ... LIMIT k; joins with small tables.
TAXI_SAMPLE = [TAXI_QUERIES[index] for index in (2, 3, 4, 6, 8, 9, 14, 17, 20, 21, 23, 27, 28)]
TPCH_SAMPLE = [TPCH_QUERIES[index] for index in (0, 2, 5, 10, 12, 14)]


@pytest.fixture(scope="module")
def fanout_lake(aws_environment, local_taxi_lake, tmp_path_factory) -> str:
    """The bucket, filled once: the taxi lake's files plus zones, lineitem, supplier and nation."""
    package = pytest.importorskip("duckdb_extension_tpch", reason="pip install duckdb-extension-tpch==1.5.5")
    extension = Path(package.__file__).parent / "extensions" / "v1.5.5" / "tpch.duckdb_extension"
    root = tmp_path_factory.mktemp("fanout-run-lake")
    (root / "dataset").mkdir()
    with duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}) as con:
        con.execute(f"COPY (SELECT range::INTEGER AS location_id, ['Manhattan', 'Queens', 'Brooklyn'][range % 3 + 1] "
                    f"AS borough FROM range(1, 200)) TO {quote_literal(str(root / 'dataset' / 'zones.parquet'))}")
        con.execute(f"LOAD {quote_literal(str(extension))}")
        con.execute("CALL dbgen(sf = 0.01)")
        con.execute("COPY (SELECT *, strftime(l_shipdate, '%Y-%m') AS ship_month FROM lineitem) "
                    f"TO {quote_literal(str(root / 'lineitem'))} (FORMAT parquet, PARTITION_BY (ship_month))")
        for name in ("supplier", "nation"):
            con.execute(f"COPY {name} TO {quote_literal(str(root / 'dataset' / f'{name}.parquet'))}")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for folder in (local_taxi_lake, root):
        for path in folder.rglob("*.parquet"):
            if "_lakemagic" not in path.parts:
                s3.upload_file(str(path), BUCKET, path.relative_to(folder).as_posix())
    return f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def function(fanout_lake, aws_environment):
    """The handler behind `lakemagic serve`'s Invoke API with FANOUT workers, and an engine invoking it."""
    local = start_function(fanout_lake, aws_environment, max_workers=FANOUT)
    saved = os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = local.endpoint_url
    yield local, LambdaEngine(FUNCTION)
    local.stop()
    if saved is None:
        os.environ.pop("AWS_ENDPOINT_URL_LAMBDA", None)
    else:
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = saved


def invocations(capsys, outcome: str = "ok") -> list[str]:
    """The local Lambda's log line of each invocation since the last call that ended with `outcome`
    (`ok`: it ran; `429`: it was throttled, so never ran). Each line is written just after its
    answer is sent, so the last one is waited for."""
    time.sleep(LOG_SETTLE_S)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("local-lambda ")]
    return [line for line in lines if f" outcome={outcome}" in line]


def same_value(got, want) -> bool:
    if pd.isna(got) is True and pd.isna(want) is True:
        return True
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return type(got) is type(want) and got == want


def sort_key(row: tuple) -> tuple:
    return tuple((pd.isna(value) is True, round(value, 6) if isinstance(value, float) else str(value))
                 for value in row)


def assert_same(fanned: client.QueryResult, single: client.QueryResult, ordered: bool) -> None:
    assert [(c.name, c.type) for c in fanned.columns] == [(c.name, c.type) for c in single.columns]
    got, want = fanned.to_dataframe(), single.to_dataframe()
    assert list(got.dtypes) == list(want.dtypes)
    got_rows, want_rows = list(got.itertuples(index=False)), list(want.itertuples(index=False))
    if not ordered:
        got_rows, want_rows = sorted(got_rows, key=sort_key), sorted(want_rows, key=sort_key)
    assert len(got_rows) == len(want_rows)
    for got_row, want_row in zip(got_rows, want_rows):
        assert all(same_value(g, w) for g, w in zip(got_row, want_row)), (got_row, want_row)


def fanned_and_single(engine, sql: str, capsys, fanout: int = FANOUT):
    single = client.run_query(engine, sql, {}, MAX_PAGE_ROWS, reuse=False)
    invocations(capsys)
    fanned = runner.run(engine, sql, {}, 50, (), fanout, reuse=False)
    return fanned, single, invocations(capsys)


@pytest.mark.parametrize(("sql", "ordered"), TAXI_SAMPLE + TPCH_SAMPLE)
def test_a_fanned_out_query_equals_its_single_invocation(function, capsys, sql, ordered):
    _, engine = function
    fanned, single, calls = fanned_and_single(engine, sql, capsys)
    assert_same(fanned, single, ordered)
    receipt = fanned.stats.fanout
    assert receipt is not None and receipt.not_split is None and receipt.tasks == FANOUT, receipt
    assert len(calls) == 1 + FANOUT, calls  # the listing, then one invocation per task
    assert receipt.billed_gb_s > 0 and receipt.cost_usd > 0 and receipt.slowest_task_ms > 0


def test_the_original_designs_query_over_ten_days_prunes_to_their_files(function, capsys):
    _, engine = function
    sql = ("SELECT pickup_location_id, count(*) AS trips FROM partitioned "
           "WHERE date BETWEEN DATE '2019-04-01' AND DATE '2019-04-10' GROUP BY 1 ORDER BY 2 DESC, 1")
    fanned, single, calls = fanned_and_single(engine, sql, capsys, fanout=10)
    assert_same(fanned, single, ordered=True)
    assert (fanned.stats.fanout.tasks, fanned.stats.fanout.partitions, len(calls)) == (10, 10, 11), calls
    # More tasks than the function's FANOUT workers: the extra ones were throttled and tried again.


def test_a_parameter_on_the_partition_key_prunes_too(function, capsys):
    import datetime

    _, engine = function
    sql = "SELECT count(*) AS trips, sum(fare_amount) AS fares FROM partitioned WHERE date = $day"
    params = {"day": datetime.date(2019, 4, 3)}
    invocations(capsys)
    result = runner.run(engine, sql, params, 50, (), FANOUT, reuse=False)
    assert len(invocations(capsys)) == 2  # the listing, then one invocation: one file is one task's worth
    assert "the file of partitioned it reads (one of 30, after pruning) makes one task" in result.stats.fanout.not_split


def test_a_saved_view_over_a_small_table_travels_with_every_task(function, capsys):
    from lakelambda.protocol import View

    _, engine = function
    views = (View("queens", "SELECT location_id FROM zones WHERE borough = 'Queens'"),)
    sql = ("SELECT count(*) AS trips, sum(fare_amount) AS fares FROM partitioned p "
           "JOIN queens q ON p.pickup_location_id = q.location_id")
    single = client.run_query(engine, sql, {}, MAX_PAGE_ROWS, views, reuse=False)
    invocations(capsys)
    fanned = runner.run(engine, sql, {}, 50, views, FANOUT, reuse=False)
    assert len(invocations(capsys)) == 1 + FANOUT
    assert_same(fanned, single, ordered=True)


# (query, its views, invocations it takes, why it is not split, whether the footer says so: it does
# where the query was found to read a partitioned table)
NOT_SPLIT = [
    ("SELECT median(fare_amount) FROM partitioned", (), 1, "median", False),
    ("SELECT fare_amount, row_number() OVER (ORDER BY pickup_at) FROM partitioned ORDER BY 2 LIMIT 5", (), 1,
     "window functions", False),
    ("SELECT count(*) FROM partitioned a JOIN partitioned b USING (pickup_at)", (), 1, "read 2 times", False),
    ("SELECT string_agg(payment_type ORDER BY pickup_at) FROM partitioned", (), 1, "string_agg", False),
    ("SELECT count(*) FROM taxi_2019_04", (), 1, "not a Hive-partitioned table", False),
    ("SELECT * FROM partitioned WHERE fare_amount > 50", (), 1, "rows without a LIMIT", False),
    ("SELECT count(*), sum(fare_amount) FROM partitioned WHERE date = DATE '2019-04-03'", (), 2, "makes one task", True),
    ("SELECT count(*) FROM cheap", (("cheap", "SELECT * FROM partitioned WHERE fare_amount < 5"),), 1,
     "only through its views", False),
    ("SELECT count(*) FROM partitioned JOIN cheap USING (pickup_at)",
     (("cheap", "SELECT * FROM partitioned WHERE fare_amount < 5"),), 2, "the view cheap reads partitioned", True),
]


@pytest.mark.parametrize(("sql", "views", "calls", "reason", "in_footer"), NOT_SPLIT)
def test_what_must_not_fan_out_runs_on_one_invocation_and_says_why(function, capsys, sql, views, calls, reason,
                                                                   in_footer):
    from lakelambda.protocol import View

    _, engine = function
    views = tuple(View(name, text) for name, text in views)
    explained = runner.explain(engine, sql, views, FANOUT)
    assert explained.startswith("Runs on one invocation:") and reason in explained, explained
    invocations(capsys)
    result = runner.run(engine, sql, {}, 50, views, FANOUT, reuse=False)
    # One call runs the query, unless it lists a partitioned table instead: then the query is a second call.
    assert len(invocations(capsys)) == calls
    single = client.run_query(engine, sql, {}, MAX_PAGE_ROWS, views, reuse=False)
    assert_same(result, single, ordered=True)
    receipt = result.stats.fanout
    assert (reason in receipt.not_split) if in_footer else receipt is None, receipt


def test_explain_lists_tasks_partitions_and_both_sqls(function, capsys):
    _, engine = function
    text = runner.explain(engine, "SELECT vendor_id, avg(fare_amount) FROM partitioned GROUP BY 1", (), 3)
    assert text.startswith("Fan-out over 3 tasks, reading 30 files")
    assert "task 3: 10 files" in text and "date=2019-04-" in text
    assert "Each task runs, reading only its own files as the table partitioned:" in text
    assert "sum(fare_amount) AS fanout_agg1" in text and "FROM partials GROUP BY vendor_id" in text
    assert len(invocations(capsys)) == 1  # the listing only: nothing ran


def test_an_sql_error_in_the_tasks_fails_the_query_with_that_error(function):
    _, engine = function
    with pytest.raises(LakeQueryError) as caught:
        runner.run(engine, "SELECT vendor_id, sum(no_such_column) FROM partitioned GROUP BY 1", {}, 50, (), FANOUT)
    assert caught.value.error_type == "BinderException" and "no_such_column" in caught.value.message


def test_throttled_tasks_are_retried_until_they_run(fanout_lake, aws_environment, capsys, monkeypatch):
    """One worker for two tasks at once: `lakemagic serve` throttles one (429), and the runner tries
    it again, since an engine that does not retry itself (max_attempts=1) gives the throttle back."""
    local = start_function(fanout_lake, aws_environment, max_workers=1)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
    try:
        engine = LambdaEngine(FUNCTION, max_attempts=1)
        sql = "SELECT payment_type, count(*) AS trips, avg(tip_amount) AS tip FROM partitioned GROUP BY 1"
        single = client.run_query(engine, sql, {}, MAX_PAGE_ROWS, reuse=False)
        invocations(capsys)
        fanned = runner.run(engine, sql, {}, 50, (), 2)
        assert_same(fanned, single, ordered=False)
        assert fanned.stats.fanout.retries >= 1
        lines = invocations(capsys, outcome="")
        ran, throttled = [line for line in lines if "outcome=ok" in line], [line for line in lines if "outcome=429" in line]
        assert len(ran) == 1 + 2 and len(throttled) == fanned.stats.fanout.retries, lines
    finally:
        local.stop()


def test_a_task_that_keeps_timing_out_fails_the_query_after_bounded_retries(fanout_lake, aws_environment, capsys,
                                                                            monkeypatch):
    local = start_function(fanout_lake, aws_environment, max_workers=2, timeout_s=2.0)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
    try:
        engine = LambdaEngine(FUNCTION, timeout_s=2.0)
        slow = "SELECT sum(r.range * p.fare_amount) AS s FROM partitioned p CROSS JOIN range(50000000) r"
        invocations(capsys)
        with pytest.raises((LakeQueryError, EngineError)) as caught:
            runner.run(engine, slow, {}, 50, (), 2)
        assert "time" in str(caught.value)
        calls = invocations(capsys)
        # The listing, then each task tried TASK_ATTEMPTS times at most (a failing one stops the other).
        assert 1 + runner.TASK_ATTEMPTS <= len(calls) <= 1 + 2 * runner.TASK_ATTEMPTS, (str(caught.value), calls)
    finally:
        local.stop()


def test_the_magic_fans_out_explains_and_shows_the_receipt(function, ipython, capsys):
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
    ipython.run_line_magic("config", f"LakeMagic.function_name = {FUNCTION!r}")
    ipython.run_line_magic("config", "LakeMagic.max_fanout = 3")
    sql = "SELECT vendor_id, count(*) AS trips, avg(fare_amount) AS fare FROM partitioned GROUP BY 1 ORDER BY 1"
    invocations(capsys)
    with capture_output() as captured:
        ipython.run_cell(f"%%lakesql --explain\n{sql}").raise_error()
    assert captured.stdout.startswith("Fan-out over 3 tasks, reading 30 files"), captured.stdout
    with capture_output() as captured:
        ipython.run_cell(f"%%lakesql\n{sql}").raise_error()
    shown = "".join(output.data.get("text/plain", "") + output.data.get("text/html", "") for output in captured.outputs)
    assert "fanned out: 3 tasks over 30 partitions, slowest task" in shown and "GB-s in all" in shown, shown
    invocations(capsys)
    ipython.run_cell(f"%%lakesql --fanout 1 one <<\n{sql}").raise_error()
    assert len(invocations(capsys)) == 1
    ipython.run_cell(f"%%lakesql --fanout 4 many <<\n{sql}").raise_error()
    assert len(invocations(capsys)) == 1 + 4
    pd.testing.assert_frame_equal(ipython.user_ns["one"], ipython.user_ns["many"], check_exact=False, rtol=1e-9)
    with pytest.raises(UsageError, match="--fanout must be at least 1"):
        ipython.run_cell_magic("lakesql", "--fanout 0", sql)


def test_a_query_whose_merge_the_engine_would_refuse_is_refused_by_the_engine(function, capsys):
    """The merge would run in the kernel, out of the sandbox's sight: such a query runs on one invocation,
    where the handler refuses it as it refuses any query, naming what it refused."""
    _, engine = function
    sql = "SELECT count(*) AS n, current_setting('allowed_directories') AS s FROM partitioned"
    invocations(capsys)
    with pytest.raises(LakeQueryError) as refused:
        runner.run(engine, sql, {}, 50, (), FANOUT, reuse=False)
    assert refused.value.error_type == "PermissionException" and "current_setting" in refused.value.message
    assert len(invocations(capsys)) == 1
