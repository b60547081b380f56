"""End to end with no mocks: magic → boto3 → Lambda Invoke API → handler → DuckDB/httpfs → S3 API."""

from __future__ import annotations

import boto3
import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError
from lakemagic.engines.aws_lambda import LambdaEngine

from kept import kept
from servers import BUCKET, FUNCTION, OTHER_BUCKET, start_function

QUERIES = [
    "SELECT pickup_location_id, count(*) AS trips FROM taxi_2019_04 GROUP BY 1 ORDER BY 2 DESC, 1",
    "SELECT date, count(*) AS trips, sum(total_amount) AS revenue FROM partitioned GROUP BY 1 ORDER BY 1",
    "SELECT * FROM taxi_2019_04 ORDER BY pickup_at, dropoff_at, total_amount, pickup_location_id",
    "SELECT payment_type, avg(tip_amount) AS tip FROM read_parquet('s3://lake/dataset/taxi_2019_04.parquet') GROUP BY 1 ORDER BY 1",
]


@pytest.fixture
def shell(ipython, lambda_endpoint):
    ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
    ipython.run_line_magic("config", f"LakeMagic.function_name = {FUNCTION!r}")
    return ipython


@pytest.mark.parametrize("sql", QUERIES)
def test_magic_on_lambda_returns_what_the_embedded_engine_returns(shell, local_taxi_lake, sql):
    with capture_output():
        outcome = shell.run_cell(f"%%lakesql df <<\n{sql}")
    outcome.raise_error()
    on_lambda = shell.user_ns["df"]
    local_sql = sql.replace("s3://lake", str(local_taxi_lake))
    embedded = client.run_query(EmbeddedEngine(str(local_taxi_lake)), local_sql).to_dataframe()
    pd.testing.assert_frame_equal(on_lambda, embedded)
    assert len(on_lambda) > 0


def test_widget_pages_come_from_the_function(shell):
    with capture_output() as captured:
        shell.run_cell(f"%%lakesql --page-size 20\n{QUERIES[2]}")
    (table,) = kept(captured.outputs)
    html = table.data["text/html"]
    assert "showing rows 1–20 of 20,000" in html
    assert "billed" in html  # the Lambda's own figures are in the footer


@pytest.fixture(scope="module")
def storing_function(s3_lake, aws_environment):
    """The handler with every result stored, as big results are, however small."""
    local = start_function(s3_lake, aws_environment, env={"LAKEMAGIC_INLINE_RESULT_BYTES": "0"})
    yield local
    local.stop()


def test_pages_are_found_after_the_warm_worker_is_gone(storing_function, local_taxi_lake, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", storing_function.endpoint_url)
    result = client.run_query(LambdaEngine(FUNCTION), QUERIES[2], page_size=50)
    storing_function.recycle()
    page = result.page(15_000, 50)
    assert result.last_call.engine.cold is True  # served by a fresh container
    embedded = client.run_query(EmbeddedEngine(str(local_taxi_lake)), QUERIES[2], page_size=50)
    pd.testing.assert_frame_equal(page.frame(), embedded.rows(15_000, 50)[1])


def test_the_table_s_footer_times_the_query_and_the_page_the_function_sent(storing_function, monkeypatch):
    """The query's figures stay; a later page, a call to the function, is timed as 'these rows'."""
    from lakemagic.display.widget import ResultTable

    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", storing_function.endpoint_url)
    table = ResultTable(client.run_query(LambdaEngine(FUNCTION), QUERIES[2], page_size=50), page_size=50)
    query = f"query: engine {table.result.stats.engine.engine_ms:,.0f} ms · round trip {table.result.stats.round_trip_ms:,.0f} ms"
    assert query in table.footer.value and "billed" in table.footer.value and "these rows" not in table.footer.value
    table.pager._handle_custom_msg({"kind": "page", "to": "next"}, [])  # a click on Next, as its front end sends it
    page = table.result.last_call
    warmth = "cold start" if page.engine.cold else "warm"
    assert query in table.footer.value
    assert (f"these rows: round trip {page.round_trip_ms:,.0f} ms, {warmth} · billed {page.lambda_figures.billed_ms:,} ms"
            in table.footer.value)


def results_in_the_lake() -> set[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="_lakemagic/results/")
    return {item["Key"] for item in listing.get("Contents", [])}


def test_a_small_result_comes_whole_and_is_never_stored(lambda_endpoint, s3_lake):
    before = results_in_the_lake()
    result = client.run_query(LambdaEngine(FUNCTION), "SELECT 42 AS answer")
    assert result.inline and result.to_dataframe()["answer"].tolist() == [42]
    assert results_in_the_lake() == before


def test_stored_results_are_in_the_lake_results_prefix(storing_function, s3_lake, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", storing_function.endpoint_url)
    result = client.run_query(LambdaEngine(FUNCTION), "SELECT 42 AS answer")
    assert f"_lakemagic/results/{result.result_id}.parquet" in results_in_the_lake()


HOSTILE = {
    "another bucket": (f"SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv')", "PermissionException"),
    "local files": ("SELECT * FROM read_text('/proc/self/environ')", "PermissionException"),
    "the deployment package": ("SELECT * FROM glob('/var/task/**')", "PermissionException"),
    "other results in /tmp": ("SELECT * FROM glob('/tmp/**')", "PermissionException"),
    "a URL": ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "PermissionException"),
    "install an extension": ("INSTALL spatial", "UnsupportedStatement"),
    "load an extension": ("LOAD httpfs", "UnsupportedStatement"),
    "change a setting": ("SET enable_external_access = true", "UnsupportedStatement"),
    "reset a setting": ("RESET allowed_directories", "UnsupportedStatement"),
    "attach a database": ("ATTACH 's3://lake/x.db' AS x", "UnsupportedStatement"),
    "leave a view behind": ("CREATE VIEW leftover AS SELECT 1", "UnsupportedStatement"),
    "leave a macro behind": ("CREATE MACRO leftover() AS 1", "UnsupportedStatement"),
    "leave a secret behind": ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "UnsupportedStatement"),
    "write to the lake": ("COPY (SELECT 1) TO 's3://lake/dataset/evil.parquet'", "UnsupportedStatement"),
    "two statements": ("SELECT 1; SET threads = 1", "UnsupportedStatement"),
    "read the credentials": ("SELECT * FROM duckdb_secrets()", "PermissionException"),
    "see which secret applies": ("SELECT which_secret('s3://lake/x', 's3')", "PermissionException"),
    "unredacted secrets": ("SELECT * FROM duckdb_secrets(redact := false)", "PermissionException"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_queries_are_refused_with_a_clear_error(lambda_endpoint, name):
    sql, error_type = HOSTILE[name]
    with pytest.raises(LakeQueryError) as refused:
        client.run_query(LambdaEngine(FUNCTION), sql)
    assert refused.value.error_type == error_type, str(refused.value)
    assert refused.value.message


def test_no_object_survives_for_the_next_caller(lambda_endpoint):
    """A view one caller sends, and the lake tables its query used, are gone for the next caller of the container."""
    engine = LambdaEngine(FUNCTION)
    mine = (protocol.View("only_mine", "SELECT 42 AS answer"),)
    assert client.run_query(engine, "SELECT * FROM only_mine, taxi_2019_04 LIMIT 1", views=mine).total_rows == 1
    for name in ("only_mine", "main.only_mine", "temp.only_mine"):
        with pytest.raises(LakeQueryError) as gone:
            client.run_query(engine, f"SELECT * FROM {name}")
        assert gone.value.error_type in ("CatalogException", "PermissionException"), str(gone.value)
    with pytest.raises(LakeQueryError) as gone:
        client.run_query(engine, "SELECT * FROM temp.taxi_2019_04")
    assert gone.value.error_type in ("CatalogException", "PermissionException")


def test_the_time_budget_interrupts_a_slow_query(s3_lake, aws_environment, monkeypatch):
    local = start_function(s3_lake, aws_environment, timeout_s=4.0)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
        with pytest.raises(LakeQueryError) as slow:
            client.run_query(LambdaEngine(FUNCTION), "SELECT count(*) FROM range(100000000000) AS t(a) WHERE a % 7 = 3")
        assert slow.value.error_type == "QueryTimeout"
        assert "time budget" in slow.value.message
    finally:
        local.stop()


def test_an_engine_invokes_through_the_lambda_client_it_is_given(lambda_endpoint, monkeypatch):
    given = boto3.client("lambda", endpoint_url=lambda_endpoint.endpoint_url, region_name="us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9")  # a client made by the engine reaches nothing
    result = client.run_query(LambdaEngine(FUNCTION, client=given), "SELECT 42 AS answer")
    assert result.to_dataframe()["answer"].tolist() == [42]


RELATIVE = [
    ("SELECT payment_type, count(*) AS trips FROM '{root}/dataset/taxi_2019_04.parquet' GROUP BY 1 ORDER BY 1"),
    ("SELECT date, count(*) AS trips FROM read_parquet('{root}/partitioned/*/*.parquet', hive_partitioning = true) "
     "GROUP BY 1 ORDER BY 1"),
]


@pytest.mark.parametrize("sql", RELATIVE)
def test_a_lake_relative_path_reads_what_the_full_path_reads_on_both_engines(lambda_endpoint, local_taxi_lake, sql):
    engines = {"s3://lake": LambdaEngine(FUNCTION), str(local_taxi_lake): EmbeddedEngine(str(local_taxi_lake))}
    for root, engine in engines.items():
        full = client.run_query(engine, sql.format(root=root)).to_dataframe()
        relative = client.run_query(engine, sql.replace("{root}/", "")).to_dataframe()
        pd.testing.assert_frame_equal(relative, full)
        assert len(full) > 0


@pytest.mark.parametrize("path", ["../lake-other/x.parquet", "_lakemagic/results/x.parquet",
                                  "dataset/../../etc/passwd", "dataset/taxi_2019_04.parquet?s3_endpoint=127.0.0.1:9"])
def test_a_hostile_lake_relative_path_is_refused_on_both_engines(lambda_endpoint, local_taxi_lake, path):
    engines = {"s3://lake": LambdaEngine(FUNCTION), str(local_taxi_lake): EmbeddedEngine(str(local_taxi_lake))}
    for root, engine in engines.items():
        for sql in (f"SELECT * FROM '{path}'", f"SELECT * FROM '{root}/{path}'"):
            with pytest.raises(LakeQueryError) as refused:
                client.run_query(engine, sql)
            assert refused.value.error_type == "PermissionException", str(refused.value)
            assert path in refused.value.message


def test_an_error_after_a_lake_relative_path_points_where_it_was_written(lambda_endpoint, local_taxi_lake):
    sql = "SELECT * FROM 'dataset/taxi_2019_04.parquet' WHERE no_such_column > 1"
    for engine in (LambdaEngine(FUNCTION), EmbeddedEngine(str(local_taxi_lake))):
        with pytest.raises(LakeQueryError) as failed:
            client.run_query(engine, sql)
        assert failed.value.position == sql.index("no_such_column"), str(failed.value)
