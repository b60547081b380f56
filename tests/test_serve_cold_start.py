"""`lakemagic serve` runs the handler as Lambda does: from the package's own files, with Lambda's imports.

A worker sees the package's folder, the standard library and the runtime's
boto3, nothing else; so DuckDB's binding finds no pandas to import on the
first statement with parameters (about 350 ms a Lambda container never
pays), and a cold start is reported as Lambda reports it: Init Duration,
then the invocation's own Duration.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re

import boto3
import duckdb
import pytest

from lakemagic.locallambda import FunctionSpec, LocalLambda
from lakemagic.locallambda.layout import LAKE_PACKAGES

FIXTURES = "lambda_fixture_handlers"
SQL = "SELECT count(*) AS n FROM taxi_2019_04 WHERE trip_distance > $distance"


@pytest.fixture(scope="module")
def packaged(s3_lake, aws_environment):
    env = dict(aws_environment, LAKEMAGIC_LAKE=s3_lake)
    spec = FunctionSpec(f"{FIXTURES}.lake_and_imports", env=env, max_workers=1, packages=(*LAKE_PACKAGES, FIXTURES))
    with LocalLambda({"packaged": spec}) as local:
        yield local


@pytest.fixture(scope="module")
def server_path(s3_lake, aws_environment):
    """Workers that import whatever this process can, pandas included (`lakemagic serve --server-path`)."""
    env = dict(aws_environment, LAKEMAGIC_LAKE=s3_lake)
    with LocalLambda({"packaged": FunctionSpec(f"{FIXTURES}.lake_and_imports", env=env, max_workers=1)}) as local:
        yield local


def _invoke(local: LocalLambda, sql: str = SQL, params: dict | None = None) -> tuple[dict, str]:
    client = boto3.client("lambda", endpoint_url=local.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    request = {"version": 1, "op": "query", "sql": sql, "params": {"distance": 2.5} if params is None else params,
               "page_size": 10, "reuse": False}
    response = client.invoke(FunctionName="packaged", Payload=json.dumps(request), LogType="Tail")
    assert "FunctionError" not in response
    return json.loads(response["Payload"].read()), base64.b64decode(response["LogResult"]).decode()


def test_a_worker_imports_only_the_package_the_standard_library_and_boto3(packaged, local_taxi_lake, tmp_path):
    report, _ = _invoke(packaged)
    answer = report["answer"]
    assert "error" not in answer, answer
    page = tmp_path / "page.parquet"
    page.write_bytes(base64.b64decode(answer["page"]["data"]))
    expected = duckdb.sql(f"SELECT count(*) FROM '{local_taxi_lake}/dataset/taxi_2019_04.parquet' "
                          "WHERE trip_distance > 2.5").fetchone()[0]
    assert duckdb.sql(f"SELECT n FROM '{page}'").fetchall() == [(expected,)]
    assert not report["pandas_importable"]
    assert importlib.util.find_spec("pandas") is not None  # while this process, the server's, has it
    assert report["imported"] == []  # nor boto3: a query over a dataset answered inline needs no boto3 client
    task, runtime = report["path"][0], report["path"][-1]
    assert task.endswith("/task") and runtime.endswith("/runtime")
    assert not any("site-packages" in entry for entry in report["path"]), report["path"]
    assert report["files"]["duckdb"].startswith(task) and report["files"]["lakelambda"].startswith(task)
    assert report["files"]["boto3"].startswith(runtime)


def test_a_cold_start_is_reported_as_lambda_reports_it(packaged):
    """REPORT: Init Duration (the runtime's start and the handler's import) on the first call only, and the
    invocation's own Duration beside it, as Lambda's log line has them."""
    packaged.recycle()
    _, cold = _invoke(packaged)
    _, warm = _invoke(packaged)
    report = re.search(r"REPORT RequestId: \S+\tDuration: ([0-9.]+) ms\t.*Init Duration: ([0-9.]+) ms", cold)
    assert report, cold
    duration_ms, init_ms = float(report[1]), float(report[2])
    assert init_ms > 0 and duration_ms > 0
    assert "Init Duration" not in warm


def test_the_handler_imports_no_pandas_where_it_could(server_path):
    """DuckDB's client imports pandas, where it can, the first time it binds a Python value to a statement:
    the handler's own statements bind none, so a cold query without parameters leaves pandas unimported."""
    server_path.recycle()
    report, _ = _invoke(server_path, "SELECT payment_type, count(*) AS trips FROM taxi_2019_04 GROUP BY 1", {})
    assert "error" not in report["answer"], report["answer"]
    assert report["answer"]["total_rows"] > 0
    assert report["pandas_importable"] and "pandas" not in report["imported"]
