"""S3 requests per warm query: the handler makes no more than DuckDB+httpfs itself does for the same SQL.

Counted at a proxy on 127.0.0.1 in front of the session's moto S3 server;
these counts do not depend on timing, so they are asserted here (the
timings are in benchmarks/lambda_path.py).
"""

from __future__ import annotations

import duckdb
import pytest

from lakelambda import protocol
from lakelambda.database import Settings, httpfs_path
from lakelambda.handler import LakeHandler
from lakemagic.locallambda.s3proxy import S3Proxy

from servers import BUCKET, CREDENTIALS

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
    con.execute(f"LOAD '{httpfs_path()}'")
    host = proxy.endpoint_url.split("://", 1)[1]
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{CREDENTIALS['AWS_ACCESS_KEY_ID']}', "
                f"SECRET '{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}', REGION 'us-east-1', ENDPOINT '{host}', "
                "URL_STYLE 'path', USE_SSL false)")
    return con


def requests_of(proxy: S3Proxy, run) -> int:
    proxy.reset()
    run()
    return proxy.count()


@pytest.mark.parametrize("name", QUERIES)
def test_a_warm_query_makes_no_more_s3_requests_than_duckdb(proxy, handler, raw, name):
    ours, theirs = QUERIES[name]

    def query():
        answer = handler(protocol.query_request(ours, {}, 50))
        assert "error" not in answer, answer["error"]
        assert answer["result_id"] is None  # small: inline, never uploaded

    query()  # warm: the catalog is listed once per container, then reused
    raw.sql(theirs).fetchall()
    handler_requests = requests_of(proxy, query)
    duckdb_requests = requests_of(proxy, lambda: raw.sql(theirs).fetchall())
    assert handler_requests <= duckdb_requests, (name, handler_requests, duckdb_requests, dict(proxy.requests))


def test_the_first_query_of_a_container_lists_the_catalog_once(proxy, aws_environment):
    environment = dict(aws_environment, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
    fresh = LakeHandler(f"s3://{BUCKET}", Settings(environment=environment))
    sql = "SELECT count(*) AS n FROM taxi_2019_04"
    proxy.reset()
    fresh(protocol.query_request(sql, {}, 1))
    cold = dict(proxy.requests)
    proxy.reset()
    fresh(protocol.query_request(sql, {}, 1))
    assert proxy.requests["GET"] < cold["GET"]  # the listings (GETs with ?list-type=2) are not repeated
