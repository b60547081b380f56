"""S3 requests per warm query: the handler makes no more than DuckDB+httpfs itself does for the same SQL.

Counted at a proxy on 127.0.0.1 in front of the session's moto S3 server;
these counts do not depend on timing, so they are asserted here (the
timings are in benchmarks/lambda_path.py).
"""

from __future__ import annotations

import secrets

import duckdb
import pytest

from lakelambda.database import Settings, extension_path
from lakelambda.handler import LakeHandler
from lakemagic.locallambda.s3proxy import S3Proxy

from servers import BUCKET, CREDENTIALS
import events

QUERIES = {
    "single file aggregate": (
        "SELECT payment_type, count(*) AS trips FROM taxi_2019_04 GROUP BY 1 ORDER BY 1",
        "SELECT payment_type, count(*) AS trips FROM read_parquet('s3://lake/dataset/taxi_2019_04.parquet') "
        "GROUP BY 1 ORDER BY 1",
    ),
    "partition-pruned Hive table": (
        "SELECT count(*) AS trips FROM partitioned WHERE date = DATE '2019-04-02'",
        "SELECT count(*) AS trips FROM read_parquet('s3://lake/partitioned/*=*/**/*.parquet', hive_partitioning = true) "
        "WHERE date = DATE '2019-04-02'",
    ),
    "SELECT * LIMIT 10": (
        "SELECT * FROM taxi_2019_04 LIMIT 10",
        "SELECT * FROM read_parquet('s3://lake/dataset/taxi_2019_04.parquet') LIMIT 10",
    ),
}


@pytest.fixture(scope="module")
def proxy(s3_lake, moto_endpoint):
    with S3Proxy(moto_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def handler(proxy, aws_environment):
    environment = dict(aws_environment, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
    return LakeHandler(f"s3://{BUCKET}", Settings(environment=environment))


@pytest.fixture(scope="module")
def raw(proxy):
    """DuckDB with httpfs in this process, reading the same objects through the same proxy."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{extension_path('httpfs')}'")
    host = proxy.endpoint_url.split("://", 1)[1]
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{CREDENTIALS['AWS_ACCESS_KEY_ID']}', "
                f"SECRET '{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}', REGION 'us-east-1', ENDPOINT '{host}', "
                "URL_STYLE 'path', USE_SSL false)")
    return con


def requests_of(proxy: S3Proxy, run) -> int:
    proxy.reset()
    run()
    return proxy.count()


# What a reuse check costs before a query runs: the versions of its input files, read afresh
# (one HEAD for a single file, one LIST for a partitioned table's folder).
VERSION_CHECKS = {"single file aggregate": 1, "partition-pruned Hive table": 1, "SELECT * LIMIT 10": 1}
SCOPE = secrets.token_hex(32)  # the scope these queries are reused within


def query_on(handler, sql: str, reuse: bool) -> dict:
    answer = handler(events.query_request(sql, {}, 50, reuse=reuse, reuse_scope=SCOPE))
    assert "error" not in answer, answer["error"]
    assert answer["result_id"] is None  # small: inline, never uploaded
    return answer


@pytest.mark.parametrize("name", QUERIES)
def test_a_warm_query_makes_no_more_s3_requests_than_duckdb(proxy, handler, raw, name):
    ours, theirs = QUERIES[name]
    fresh = f"{ours}\n-- not reused"  # never run with reuse: nothing to reuse
    query_on(handler, fresh, reuse=False)  # warm: the catalog is listed once per container, then reused
    raw.sql(theirs).fetchall()
    handler_requests = requests_of(proxy, lambda: query_on(handler, fresh, reuse=False))
    duckdb_requests = requests_of(proxy, lambda: raw.sql(theirs).fetchall())
    assert handler_requests <= duckdb_requests, (name, handler_requests, duckdb_requests, dict(proxy.requests))


@pytest.mark.parametrize("name", QUERIES)
def test_a_reused_answer_makes_no_more_s3_requests_than_duckdb(proxy, handler, raw, name):
    ours, theirs = QUERIES[name]
    query_on(handler, ours, reuse=True)
    raw.sql(theirs).fetchall()
    proxy.reset()
    assert query_on(handler, ours, reuse=True)["reused_from"] is not None
    handler_requests = proxy.count()
    duckdb_requests = requests_of(proxy, lambda: raw.sql(theirs).fetchall())
    assert handler_requests <= duckdb_requests, (name, handler_requests, duckdb_requests, dict(proxy.requests))


@pytest.mark.parametrize("name", QUERIES)
def test_a_first_run_with_reuse_costs_only_its_version_checks_more(proxy, handler, raw, name):
    """The price of reuse on a query never seen: its inputs' versions, read before it runs, so
    that the result it leaves is keyed by what it read. The reuse index is listed with the
    catalog (once per CATALOG_TTL_SECONDS), and an inline result writes nothing."""
    ours, theirs = QUERIES[name]
    query_on(handler, f"{ours}\n-- warm-up", reuse=True)
    raw.sql(theirs).fetchall()
    handler_requests = requests_of(proxy, lambda: query_on(handler, f"{ours}\n-- first run", reuse=True))
    duckdb_requests = requests_of(proxy, lambda: raw.sql(theirs).fetchall())
    assert handler_requests <= duckdb_requests + VERSION_CHECKS[name], (name, handler_requests, duckdb_requests)


def test_the_first_query_of_a_container_lists_the_catalog_once(proxy, aws_environment):
    environment = dict(aws_environment, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
    fresh = LakeHandler(f"s3://{BUCKET}", Settings(environment=environment))
    sql = "SELECT count(*) AS n FROM taxi_2019_04"
    proxy.reset()
    fresh(events.query_request(sql, {}, 1))
    cold = dict(proxy.requests)
    proxy.reset()
    fresh(events.query_request(sql, {}, 1))
    assert proxy.requests["GET"] < cold["GET"]  # the listings (GETs with ?list-type=2) are not repeated
