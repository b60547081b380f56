"""--dry-run and LakeMagic.max_scan_bytes: what a query would read, from listings and Parquet footers, with
nothing of it run; checked against what queries really read from S3, as the proxy in front of moto counts it.

The estimate may differ from the bytes a scan fetches by what DuckDB reads around the column chunks it needs
(it merges nearby ranges into one request, the columns between them too): within FACTOR either way (README;
seen here: 0.95 to 1.40 times the estimate, exactly it for most of these queries).
"""

from __future__ import annotations

import dataclasses

import boto3
import duckdb
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.handler import LakeHandler
from lakemagic.locallambda.s3proxy import S3Proxy
import events

ROWS = 200_000
GROUP_ROWS = 20_480  # a multiple of DuckDB's vector (2,048 rows), so row groups hold exactly this many
DAYS = 10
FACTOR = 1.5  # the estimate and the bytes read from S3 are within this factor of each other (README)
FUNCTION_MB = 2048  # lakemagic deploy's and lakemagic serve's default
BUCKET = "dryrun-lake"  # a bucket of this module's own: the session's lake keeps the tables other tests count


def write_lake(folder) -> None:
    """`ids`: a dataset of sorted ids in row groups of GROUP_ROWS; `events`: the same rows partitioned by day."""
    (folder / "dataset").mkdir(parents=True, exist_ok=True)
    rows = (f"SELECT range AS id, range * 7 % 1000 AS x, md5(range::VARCHAR) AS s, random() AS r, "
            f"DATE '2019-04-01' + (range * {DAYS} // {ROWS})::INT AS day FROM range({ROWS})")
    with duckdb.connect() as con:
        con.execute(f"COPY ({rows}) TO '{folder}/dataset/ids.parquet' (FORMAT parquet, ROW_GROUP_SIZE {GROUP_ROWS})")
        con.execute(f"COPY ({rows}) TO '{folder}/events' (FORMAT parquet, PARTITION_BY (day), "
                    f"ROW_GROUP_SIZE {GROUP_ROWS})")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dryrun-lake")
    write_lake(folder)
    return folder


@pytest.fixture(scope="module")
def handler(lake):
    running = LakeHandler(str(lake))
    yield running
    running.close()


def estimated(handler, sql: str, params: dict | None = None) -> protocol.SourceEstimate:
    answer = protocol.parse_answer(handler(protocol.encode(protocol.EstimateRequest(sql, params or {}))))
    assert isinstance(answer, protocol.EstimateAnswer), answer
    (source,) = answer.sources
    return source


def matching(lake, where: str) -> tuple[int, int]:
    """The rows of `ids` where `where` holds, and the row groups holding at least one: read from the file."""
    with duckdb.connect() as con:
        return con.execute(f"SELECT count(*), count(DISTINCT file_row_number // {GROUP_ROWS}) FROM read_parquet("
                           f"'{lake}/dataset/ids.parquet', file_row_number = true) WHERE {where}").fetchone()


def test_a_filter_on_the_partition_keys_leaves_only_its_partitions(handler):
    whole = estimated(handler, "SELECT sum(x) FROM events")
    some = estimated(handler, "SELECT sum(x) FROM events WHERE day BETWEEN DATE '2019-04-03' AND '2019-04-04'")
    one = estimated(handler, "SELECT sum(x) FROM events e WHERE e.day = $day", {"day": "2019-04-07"})
    assert whole.partitioned and (whole.files, whole.files_read) == (DAYS, DAYS)
    assert (some.files, some.files_read, one.files_read) == (DAYS, 2, 1)
    assert one.bytes_read < some.bytes_read < whole.bytes_read
    assert some.rows_read == 2 * ROWS // DAYS and one.rows_read == ROWS // DAYS


@pytest.mark.parametrize("where", ["id >= 150000", "id < 30000 AND x > 3", "50000 > id",
                                   "id BETWEEN 41000 AND 42000", "s = 'zzz'", "s = '8'"])
def test_row_groups_whose_statistics_rule_the_filter_out_are_not_read(handler, lake, where):
    estimate = estimated(handler, f"SELECT sum(x) FROM ids WHERE {where}")
    rows, groups = matching(lake, where)
    assert estimate.row_groups == -(-ROWS // GROUP_ROWS)
    assert rows <= estimate.rows_read  # never less than the rows the filter keeps
    if where == "s = '8'":  # md5 texts spread from 0... to f... in every row group: nothing to prune
        assert estimate.row_groups_read == estimate.row_groups
    else:
        assert estimate.row_groups_read == groups < estimate.row_groups


def test_only_the_columns_the_query_names_count(handler):
    everything = estimated(handler, "SELECT * FROM ids")
    one = estimated(handler, "SELECT sum(x) FROM ids")
    two = estimated(handler, "SELECT sum(x), max(s) FROM ids")
    counted = estimated(handler, "SELECT count(*) FROM ids")
    assert counted.bytes_read < one.bytes_read < two.bytes_read < everything.bytes_read <= everything.bytes
    assert everything.bytes_read > 0.95 * everything.bytes  # all but the file's few header bytes
    assert counted.bytes_read < 0.01 * everything.bytes  # the footer alone


def test_a_limit_with_nothing_past_it_reads_the_row_groups_that_hold_its_rows(handler):
    limited = estimated(handler, "SELECT id FROM ids LIMIT 50000 OFFSET 10")
    assert limited.row_groups_read == -(-50_010 // GROUP_ROWS) and limited.rows_read >= 50_010
    first = estimated(handler, "SELECT * FROM events LIMIT 5")
    assert (first.files_read, first.row_groups_read) == (1, 1)
    for sql in ("SELECT id FROM ids ORDER BY x LIMIT 10", "SELECT id FROM ids WHERE x = 3 LIMIT 10",
                "SELECT count(*) FROM ids LIMIT 1", "SELECT DISTINCT x FROM ids LIMIT 10"):
        assert estimated(handler, sql).row_groups_read == ROWS // GROUP_ROWS + 1, sql
    described = estimated(handler, "DESCRIBE ids")
    assert described.bytes_read < 0.01 * described.bytes


@pytest.mark.parametrize("sql", [
    "SELECT sum(x) FROM ids WHERE id % 2 = 0",  # no simple comparison
    "SELECT sum(x) FROM ids WHERE id < 1000 OR x > 5",  # not a top-level AND term
    "SELECT sum(x) FROM ids WHERE id < (SELECT 1000)",  # a subquery, not a constant
    "SELECT sum(a.x) FROM ids a JOIN ids b ON a.id = b.id WHERE a.id < 1000",  # a join: no one source
    "WITH ids AS (SELECT id + 100000 AS id, x FROM ids) SELECT sum(x) FROM ids WHERE id < 1000",  # a CTE
    "SELECT sum(x) FROM events WHERE day + 1 = DATE '2019-04-02'",  # an expression of the key
    "SELECT sum(x) FROM ids WHERE id < CAST('many' AS INTEGER)",  # a cast that fails (so would the query)
])
def test_a_query_the_estimate_cannot_prune_reads_everything(handler, sql):
    estimate = estimated(handler, sql)
    assert estimate.files_read == estimate.files
    assert estimate.row_groups_read == estimate.row_groups
    assert estimate.rows_read == estimate.rows == ROWS


def test_files_named_by_path_are_estimated_too_and_paths_outside_the_lake_refused(handler, lake):
    by_path = estimated(handler, "SELECT sum(x) FROM 'dataset/ids.parquet' WHERE id >= 180000")
    by_name = estimated(handler, "SELECT sum(x) FROM ids WHERE id >= 180000")
    assert by_path.name == f"{lake}/dataset/ids.parquet"
    assert dataclasses.replace(by_path, name=by_name.name) == by_name
    answer = handler(events.estimate_request("SELECT * FROM read_parquet('/etc/*.parquet')", {}))
    assert answer["error"]["type"] == "PermissionException"


def test_a_query_that_would_fail_fails_its_estimate_alike(handler):
    """The estimate binds the query (nothing runs): its errors are the query's, where they are in its text."""
    unknown_column = handler(events.estimate_request("SELECT sum(x)\nFROM ids WHERE nope > 1", {}))["error"]
    assert unknown_column["type"] == "BinderException" and unknown_column["position"] == len("SELECT sum(x)\nFROM ids WHERE ")
    unknown_table = handler(events.estimate_request("SELECT x FROM idz", {}))["error"]
    assert unknown_table["type"] == "CatalogException" and "did you mean ids" in unknown_table["message"]
    unbound = handler(events.estimate_request("SELECT sum(x) FROM ids WHERE id < $limit", {}))["error"]
    assert unbound["type"] == "InvalidInputException" and "limit" in unbound["message"]


def test_the_dry_run_shows_what_it_would_read_and_runs_nothing(ipython, lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(lake)!r}")
    shown = ipython.run_cell_magic("lakesql", "--dry-run", "SELECT sum(x) FROM events WHERE day >= '2019-04-09'")
    text = repr(shown)
    assert "nothing ran" in text and "Reads 2 of 10 files" in text and "2/10 files" in text
    assert "events" in shown._repr_html_() and "Runs in this kernel" in text
    with capture_output() as explained:
        ipython.run_cell_magic("lakesql", "--explain", "SELECT sum(x) FROM events WHERE day >= '2019-04-09'")
    assert "Fan-out over 2 tasks" in explained.stdout and "Reads 2 of 10 files" in explained.stdout
    assert not list(lake.rglob("_lakemagic/**/*.parquet"))  # no result was stored


def test_the_guard_refuses_a_query_over_its_limit_saying_how_much_and_how_to_lift_it(ipython, lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(lake)!r}")
    ipython.run_line_magic("config", "LakeMagic.max_scan_bytes = 100000")
    with pytest.raises(UsageError, match=r"would read about .* MB .*max_scan_bytes = \d+ \(0: no limit\)"):
        ipython.run_cell_magic("lakesql", "frame <<", "SELECT * FROM ids")
    assert "frame" not in ipython.user_ns
    ipython.run_cell_magic("lakesql", "frame <<", "SELECT count(*) AS n FROM events WHERE day = '2019-04-02'")
    assert ipython.user_ns["frame"]["n"][0] == ROWS // DAYS
    ipython.run_line_magic("config", "LakeMagic.max_scan_bytes = 0")
    ipython.run_cell_magic("lakesql", "frame <<", "SELECT * FROM ids")
    assert len(ipython.user_ns["frame"]) == ROWS


# --- against what S3 serves ------------------------------------------------------------------------

REAL_QUERIES = [
    "SELECT sum(x) FROM ids",
    "SELECT sum(x), max(s) FROM ids WHERE id >= 150000",
    "SELECT avg(r) FROM events WHERE day BETWEEN DATE '2019-04-03' AND '2019-04-05'",
    "SELECT id, s FROM ids WHERE id BETWEEN 100000 AND 101000",
    "SELECT * FROM events WHERE day = DATE '2019-04-08' AND id < 150000",
    "SELECT * FROM ids LIMIT 100",  # the scan stops in its first row group
    "SELECT id, s FROM events LIMIT 100 OFFSET 10",  # in its first file
    "DESCRIBE ids",  # the footer alone
]


@pytest.fixture(scope="module")
def s3_dryrun_lake(lake, aws_environment):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in lake.rglob("*.parquet"):
        if "_lakemagic" not in path.parts:
            s3.upload_file(str(path), BUCKET, path.relative_to(lake).as_posix())
    return f"s3://{BUCKET}"


@pytest.mark.parametrize("sql", REAL_QUERIES)
def test_the_estimate_is_within_its_factor_of_what_a_query_reads_from_s3(s3_dryrun_lake, moto_endpoint,
                                                                      aws_environment, sql):
    with S3Proxy(moto_endpoint) as proxy:
        environment = dict(aws_environment, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
        # A handler of its own for each: nothing of the files is cached from an earlier query, or from the estimate.
        # The function's default memory, as on Lambda: DuckDB's one thread then stops a LIMIT's scan where it is.
        fresh = LakeHandler(s3_dryrun_lake, Settings(environment=environment, memory_mb=FUNCTION_MB))
        try:
            proxy.reset()
            answer = fresh(events.query_request(sql, {}, 10, reuse=False))
            assert "error" not in answer, answer
            read = sum(size for (method, path), size in proxy.bytes.items()
                       if method == "GET" and path.endswith(".parquet"))
        finally:
            fresh.close()
        estimator = LakeHandler(s3_dryrun_lake, Settings(environment=environment, memory_mb=FUNCTION_MB))
        try:
            estimate = estimated(estimator, sql)
        finally:
            estimator.close()
    assert estimate.bytes_read / FACTOR <= read <= estimate.bytes_read * FACTOR, (read, estimate)


def test_on_lambda_the_dry_run_counts_the_fan_outs_invocations_and_prices_them(ipython, lambda_endpoint):
    ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
    whole = ipython.run_cell_magic("lakesql", "--dry-run", "SELECT payment_type, count(*) FROM partitioned GROUP BY 1")
    days = ipython.run_cell_magic("lakesql", "--dry-run", "SELECT payment_type, count(*) FROM partitioned "
                                  "WHERE date BETWEEN DATE '2019-04-03' AND DATE '2019-04-05' GROUP BY 1")
    alone = ipython.run_cell_magic("lakesql", "--dry-run --fanout 1", "SELECT count(*) FROM partitioned")
    assert days.reads.total("files_read") == 3 < whole.reads.total("files_read") == whole.reads.total("files")
    assert days.invocations == 1 + 3 and "Fans out" in repr(days)  # the listing, then a task per file
    assert whole.invocations == 1 + min(whole.reads.total("files"), 32)
    assert alone.invocations == 1 and "fan-out is off" in repr(alone)
    assert whole.reads.memory_mb == 2048  # the function's, as lakemagic serve gives it
    assert 0 < days.cost_usd < whole.cost_usd and "Costs about $" in repr(days)
