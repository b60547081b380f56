"""Result reuse on real servers: a repeated query over unchanged inputs is answered from its result.

Both engines: the embedded one over a lake folder, and the Lambda path
(boto3 -> lakemagic serve -> handler -> moto S3, through a counting proxy),
each over a lake of its own, since these tests rewrite its files. Reuse is
private to a scope (issue 20, finding 3): a caller guessing another's query
(`... WHERE pickup_location_id = $id`) without that scope's secret gets what a
fresh run gives: no `reused_from`, a result of its own, the S3 requests of a
scope that never ran anything (test_reuse_scope.py: where the scope comes from).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil

import boto3
import duckdb
import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakelambda.errors import ProtocolError
from lakelambda.lake import Lake
from lakelambda.reuse_key import reuse_key
from lakelambda.sql import CLOCK_NAMES, changing_functions, nondeterministic_parts
from lakemagic import client
from lakemagic.errors import LakeQueryError
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.fanout import NotSplit, shape
from lakemagic.locallambda.s3proxy import S3Proxy

from kept import kept
from servers import FUNCTION, start_function
import events

REUSE_BUCKET = "reuse-lake"
PARTITION = "partitioned/date=2019-04-02/data_0.parquet"
DAY_TRIPS = "SELECT date, count(*) AS trips, sum(total_amount) AS revenue FROM partitioned GROUP BY 1 ORDER BY 1"
BY_PAYMENT = "SELECT payment_type, count(*) AS trips FROM taxi_2019_04 GROUP BY 1 ORDER BY 1"
WHOLE_TABLE = "SELECT * FROM taxi_2019_04 ORDER BY pickup_at, dropoff_at, total_amount, pickup_location_id"


@pytest.fixture(scope="module")
def proxy(moto_endpoint):
    with S3Proxy(moto_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def s3_reuse_lake(aws_environment, local_taxi_lake):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=REUSE_BUCKET)
    for path in local_taxi_lake.rglob("*.parquet"):
        if "_lakemagic" not in path.parts:
            s3.upload_file(str(path), REUSE_BUCKET, path.relative_to(local_taxi_lake).as_posix())
    yield s3
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=REUSE_BUCKET):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=REUSE_BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=REUSE_BUCKET)


class OnLambda:
    """The Lambda path over its own bucket; its S3 requests are counted by object."""

    name = "lambda"

    def __init__(self, s3, proxy: S3Proxy, aws_environment: dict, monkeypatch):
        self.s3, self.proxy, self.aws_environment, self.monkeypatch = s3, proxy, aws_environment, monkeypatch
        self.local = None
        self.start()

    def start(self, **env) -> None:
        """A function with fresh containers (none of an earlier start's memory)."""
        if self.local is not None:
            self.local.stop()
        env = dict(env, AWS_ENDPOINT_URL_S3=self.proxy.endpoint_url)
        if "LAKEMAGIC_INLINE_RESULT_BYTES" in os.environ:  # the `stored` fixture, for the function too
            env["LAKEMAGIC_INLINE_RESULT_BYTES"] = os.environ["LAKEMAGIC_INLINE_RESULT_BYTES"]
        self.local = start_function(f"s3://{REUSE_BUCKET}", self.aws_environment, env=env, max_workers=1)
        self.monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", self.local.endpoint_url)
        self.engine = LambdaEngine(FUNCTION)

    def rewrite(self, relative: str, sql: str) -> None:
        with _written(sql) as local:
            self.s3.upload_file(local, REUSE_BUCKET, relative)

    def data_reads(self) -> int:
        """GETs of the lake's data files since the proxy was reset (not listings, which GET the bucket itself)."""
        return sum(count for (method, path), count in self.proxy.objects.items()
                   if method == "GET" and path.startswith((f"/{REUSE_BUCKET}/dataset/", f"/{REUSE_BUCKET}/partitioned/")))

    def stop(self) -> None:
        self.local.stop()


class Embedded:
    name = "embedded"

    def __init__(self, folder: str):
        self.folder = folder
        self.start()

    def start(self, **env) -> None:
        self.engine = EmbeddedEngine(self.folder)

    def rewrite(self, relative: str, sql: str) -> None:
        with _written(sql) as local:
            os.replace(local, os.path.join(self.folder, relative))

    def stop(self) -> None:
        pass


class _written:
    """A Parquet file of `sql`'s rows in a temporary folder, removed afterwards."""

    def __init__(self, sql: str):
        self.sql = sql

    def __enter__(self) -> str:
        import tempfile

        self.folder = tempfile.mkdtemp(prefix="lakemagic-test-")
        path = os.path.join(self.folder, "data.parquet")
        duckdb.sql(f"COPY ({self.sql}) TO '{path}' (FORMAT parquet)")
        return path

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.folder)


@pytest.fixture(params=["embedded", "lambda"])
def lake(request, local_taxi_lake, tmp_path, monkeypatch):
    if request.param == "lambda":
        setup = OnLambda(request.getfixturevalue("s3_reuse_lake"), request.getfixturevalue("proxy"),
                         request.getfixturevalue("aws_environment"), monkeypatch)
    else:
        folder = tmp_path / "lake"
        shutil.copytree(local_taxi_lake, folder, ignore=shutil.ignore_patterns("_lakemagic"))
        setup = Embedded(str(folder))
    setup.original = local_taxi_lake  # the files as they were, which tests rewrite from
    yield setup
    setup.stop()
    if request.param == "lambda":  # the next test starts from the original files
        setup.s3.upload_file(str(local_taxi_lake / PARTITION), REUSE_BUCKET, PARTITION)


@pytest.fixture
def stored(monkeypatch):
    """Every result stored, as big results are (set before an engine starts)."""
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")


def run(lake, sql: str, **options) -> client.QueryResult:
    return client.run_query(lake.engine, sql, page_size=50, **options)


@pytest.mark.parametrize("sql", [BY_PAYMENT, DAY_TRIPS])
def test_a_repeated_query_is_answered_from_its_result(lake, sql):
    first = run(lake, sql)
    if lake.name == "lambda":
        lake.proxy.reset()
    again = run(lake, sql)
    assert first.reused_from is None and again.reused_from is not None
    assert first.reuse_note == "" and again.reuse_note.startswith("reused result of 20")
    pd.testing.assert_frame_equal(again.to_dataframe(), first.to_dataframe())
    if lake.name == "lambda":
        assert lake.data_reads() == 0, dict(lake.proxy.objects)  # the data was not read again


def test_a_stored_result_is_reused_by_another_container(stored, lake):
    lake.start()
    first = run(lake, WHOLE_TABLE)
    assert not first.info.inline
    expected = first.to_dataframe()
    lake.start()  # new containers: nothing of the first run in memory
    if lake.name == "lambda":
        lake.proxy.reset()
    again = run(lake, WHOLE_TABLE)
    assert again.reused_from is not None and again.result_id == first.result_id
    if lake.name == "lambda":
        assert lake.data_reads() == 0, dict(lake.proxy.objects)
    pd.testing.assert_frame_equal(again.to_dataframe(), expected)


def test_a_rewritten_partition_file_gives_a_fresh_result(lake):
    before = run(lake, DAY_TRIPS).to_dataframe()
    assert run(lake, DAY_TRIPS).reused_from is not None
    lake.rewrite(PARTITION, f"SELECT * FROM read_parquet('{lake.original / PARTITION}') LIMIT 3")
    after = run(lake, DAY_TRIPS)
    assert after.reused_from is None
    frame = after.to_dataframe()
    day = frame["date"].astype(str) == "2019-04-02"
    assert frame[day]["trips"].tolist() == [3] and before[day]["trips"].tolist() != [3]
    pd.testing.assert_frame_equal(frame[~day].reset_index(drop=True), before[~day].reset_index(drop=True))


@pytest.mark.parametrize("sql", [
    "SELECT count(*) AS n, random() AS r FROM taxi_2019_04",
    "SELECT count(*) AS n, now() AS at FROM taxi_2019_04",
    "SELECT count(*) AS n FROM taxi_2019_04 WHERE pickup_at < current_timestamp",
    "SELECT gen_random_uuid() AS id",
    "SELECT * FROM taxi_2019_04 USING SAMPLE 5 ROWS",
])
def test_a_non_deterministic_query_is_never_reused(lake, sql):
    assert run(lake, sql).reused_from is None
    assert run(lake, sql).reused_from is None


def test_parameters_and_views_are_part_of_the_key(lake):
    sql = "SELECT count(*) AS trips FROM cheap WHERE passenger_count = $n"
    cheap = (protocol.View("cheap", "SELECT * FROM taxi_2019_04 WHERE total_amount < 10"),)
    dear = (protocol.View("cheap", "SELECT * FROM taxi_2019_04 WHERE total_amount >= 10"),)
    one = run(lake, sql, params={"n": 1}, views=cheap)
    two = run(lake, sql, params={"n": 2}, views=cheap)
    other_view = run(lake, sql, params={"n": 1}, views=dear)
    assert [one.reused_from, two.reused_from, other_view.reused_from] == [None, None, None]
    counts = {result.to_dataframe()["trips"][0] for result in (one, two, other_view)}
    assert len(counts) == 3
    again = run(lake, sql, params={"n": 1}, views=cheap)
    assert again.reused_from is not None and again.to_dataframe()["trips"][0] == one.to_dataframe()["trips"][0]


def test_reuse_can_be_turned_off_per_query(lake):
    run(lake, BY_PAYMENT)
    assert run(lake, BY_PAYMENT, reuse=False).reused_from is None


def stored_result_files(folder: str) -> int:
    return sum(1 for name in os.listdir(os.path.join(folder, "_lakemagic", "results")) if name.endswith(".parquet"))


@pytest.mark.parametrize("switch", ["--no-reuse", "%config"])
def test_the_magic_turns_reuse_off(ipython, local_taxi_lake, tmp_path, stored, switch):
    folder = tmp_path / "lake"
    shutil.copytree(local_taxi_lake, folder, ignore=shutil.ignore_patterns("_lakemagic"))
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(folder)!r}")
    for _ in range(2):
        with capture_output():
            ipython.run_cell(f"%%lakesql df <<\n{BY_PAYMENT}").raise_error()
    assert stored_result_files(str(folder)) == 1  # the second answer was the first's result
    option = "--no-reuse " if switch == "--no-reuse" else ""
    if switch == "%config":
        ipython.run_line_magic("config", "LakeMagic.reuse_results = False")
    for _ in range(2):
        with capture_output() as shown:
            ipython.run_cell(f"%%lakesql {option}\n{BY_PAYMENT}").raise_error()
        assert "reused result" not in shown.outputs[-1].data["text/plain"]  # it ran again
    with capture_output() as shown:
        ipython.run_cell(f"%%lakesql\n{BY_PAYMENT}").raise_error()
    assert ("reused result" in shown.outputs[-1].data["text/plain"]) == (switch == "--no-reuse")
    # Its table's result kept in the embedded database's memory (test_in_memory.py): nothing stored.
    assert stored_result_files(str(folder)) == 1
    with capture_output():
        ipython.run_cell(f"%%lakesql {option}df <<\n{BY_PAYMENT}").raise_error()
    assert stored_result_files(str(folder)) == 1  # ran again, nothing stored that nobody pages or reuses


def test_the_reuse_field_must_be_a_boolean():
    request = events.query_request("SELECT 1", {}, 1)
    assert protocol.parse_request(request).reuse is True
    assert protocol.parse_request(dict(request, reuse=False)).reuse is False
    with pytest.raises(ProtocolError, match="'reuse' must be true or false"):
        protocol.parse_request(dict(request, reuse="no"))


@pytest.mark.parametrize("sql, found", [
    ("SELECT random()", {"random"}),
    ("SELECT uuid(), today()", {"uuid", "today"}),
    ("SELECT current_date", {"current_date"}),
    ("SELECT age(DATE '2020-01-01')", {"age"}),
    ("SELECT * FROM range(10) TABLESAMPLE 5 ROWS", {"SAMPLE"}),
    ("SELECT * FROM (SELECT 1 WHERE now() > DATE '2020-01-01')", {"now"}),
    ("SELECT date_trunc('day', TIMESTAMP '2020-01-01 10:00'), 'now()' AS text", set()),
])
def test_non_deterministic_parts_come_from_the_parse_tree(sql, found):
    assert nondeterministic_parts(sql) == found


def _changing_calls() -> list[str]:
    """A call of every function whose value may change from run to run, and each clock name."""
    return sorted(f"{name}(NULL)" for name in changing_functions()) + sorted(CLOCK_NAMES)


@pytest.mark.parametrize("call", _changing_calls())
def test_what_changes_from_run_to_run_is_neither_reused_nor_split(call, tmp_path):
    """Reuse and fan-out ask the one answer (lakelambda.sql.changing_value): a value that may differ
    from run to run keeps a query's result from being reused and its shape from being split."""
    sql = f"SELECT vendor_id, count(*) AS n FROM partitioned WHERE {call} IS NOT NULL GROUP BY 1"
    assert reuse_key(Lake(str(tmp_path)), (sql,), {}, (), {}, "scope" * 8) is None
    split = shape(sql, "partitioned")
    assert isinstance(split, NotSplit) and "gives a different value" in split.reason, split


@pytest.mark.parametrize("call", ["error(NULL)", "age(DATE '2020-01-01', DATE '2019-01-01')", "abs(NULL)"])
def test_a_value_fixed_by_its_arguments_is_both_reused_and_split(call, tmp_path):
    sql = f"SELECT vendor_id, count(*) AS n FROM partitioned WHERE {call} IS NULL GROUP BY 1"
    assert reuse_key(Lake(str(tmp_path)), (sql,), {}, (), {}, "scope" * 8) is not None
    assert not isinstance(shape(sql, "partitioned"), NotSplit)


def test_the_names_that_once_disagreed_have_one_answer_now():
    """Reuse and fan-out each kept a list once, and they differed on these five."""
    changing = changing_functions()
    assert {"age", "current_localtime", "pg_sleep", "current_catalog"} <= changing and "error" not in changing


def test_every_function_duckdb_calls_volatile_is_changing():
    classified = {name for (name,) in duckdb.sql(
        "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
        "WHERE stability IN ('VOLATILE', 'CONSISTENT_WITHIN_QUERY') AND function_name <> 'error'").fetchall()}
    assert classified <= changing_functions(), sorted(classified - changing_functions())


GUESS = "SELECT count(*) AS trips, sum(total_amount) AS paid FROM taxi_2019_04 WHERE pickup_location_id = $id"


def s3_requests(lake) -> dict:
    """The proxy's requests since its reset, with result ids and reuse keys made alike (each run has its own)."""
    requests: dict = {}
    for (method, path), count in lake.proxy.objects.items():
        path = re.sub(r"/_lakemagic/results/reuse/[0-9a-f]{64}\.[A-Za-z0-9_-]+$", "/_lakemagic/results/reuse/KEY.ID", path)
        path = re.sub(r"/_lakemagic/results/[A-Za-z0-9_-]{22,64}\.", "/_lakemagic/results/ID.", path)
        requests[(method, path)] = requests.get((method, path), 0) + count
    return requests


def test_another_scope_is_answered_as_if_the_query_never_ran(stored, lake):
    """Scope A runs a query; scope B's identical query is a fresh run, whose S3 requests are those of a
    scope C that never ran anything, and the same scope A is answered from its result."""
    first, second, never = (secrets.token_hex(32) for _ in range(3))
    lake.start()
    run(lake, "SELECT count(*) AS warm FROM taxi_2019_04 WHERE passenger_count = 4", reuse=never)  # lists, binds
    mine = run(lake, GUESS, params={"id": 7}, reuse=first)
    assert mine.reused_from is None and run(lake, GUESS, params={"id": 7}, reuse=first).reused_from is not None
    expected = mine.to_dataframe()

    if lake.name == "lambda":
        lake.proxy.reset()
    theirs = run(lake, GUESS, params={"id": 7}, reuse=second)
    assert theirs.reused_from is None and theirs.result_id != mine.result_id
    if lake.name == "lambda":
        guessed = s3_requests(lake)
        assert guessed[("PUT", f"/{REUSE_BUCKET}/_lakemagic/results/ID.parquet")] == 1, guessed  # it ran, stored
        assert mine.result_id not in str(dict(lake.proxy.objects))  # nothing of the first scope's was touched
    pd.testing.assert_frame_equal(theirs.to_dataframe(), expected)
    if lake.name == "lambda":
        lake.proxy.reset()
        fresh = run(lake, GUESS, params={"id": 8}, reuse=secrets.token_hex(32))
        assert fresh.reused_from is None and s3_requests(lake) == guessed
    else:
        assert stored_result_files(lake.folder) == 3  # the warm-up's, first's, second's: each scope its own
        assert run(lake, GUESS, params={"id": 7}, reuse=second).reused_from is not None
        assert stored_result_files(lake.folder) == 3


def test_a_query_without_a_scope_is_neither_reused_nor_kept(lake):
    request = events.query_request(BY_PAYMENT, {}, 50)
    assert "reuse_scope" not in request
    answers = [client.run_request(lake.engine, request, BY_PAYMENT) for _ in range(2)]
    assert [answer.reused_from for answer in answers] == [None, None]
    scoped = secrets.token_hex(32)
    assert run(lake, BY_PAYMENT, reuse=scoped).reused_from is None  # nothing was kept for anyone


def test_a_garbled_scope_is_an_error_answer_and_the_next_query_answers(lake):
    request = dict(events.query_request(BY_PAYMENT, {}, 50), reuse_scope="guess")
    with pytest.raises(LakeQueryError) as refused:
        client.run_request(lake.engine, request, BY_PAYMENT)
    assert refused.value.error_type == "ProtocolError" and "32 to 256 characters" in refused.value.message
    assert run(lake, BY_PAYMENT, reuse=secrets.token_hex(32)).total_rows > 0


def test_the_table_says_when_it_shows_a_reused_result(ipython, local_taxi_lake, tmp_path):
    folder = tmp_path / "lake"
    shutil.copytree(local_taxi_lake, folder, ignore=shutil.ignore_patterns("_lakemagic"))
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(folder)!r}")
    shown = []
    for _ in range(2):
        with capture_output() as captured:
            ipython.run_cell(f"%%lakesql\n{BY_PAYMENT}").raise_error()
        shown.append(kept(captured.outputs)[-1].data)
    first, again = shown
    for form in ("text/html", "text/plain"):
        assert "reused result of" not in first[form]
        assert "reused result of 20" in again[form] and " UTC" in again[form]
