"""The lake's catalog: the `tables` operation, SHOW TABLES, unknown table names, and the magic's
--tables and --columns, on the embedded engine and on the Lambda path (real local servers)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import boto3
import duckdb
import pytest
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.errors import ProtocolError
from lakelambda.handler import LakeHandler
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError
from lakemagic.locallambda.s3proxy import S3Proxy

from servers import FUNCTION
import events

CATALOG_BUCKET = "catalog-lake"


def write(con, sql: str, path: Path, partition_by: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = f", PARTITION_BY ({partition_by})" if partition_by else ""
    con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet{options})")


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory) -> Path:
    """Every kind of table, a materialized view shadowed by a dataset, and folders that are no table."""
    lake = tmp_path_factory.mktemp("catalog-lake")
    con = duckdb.connect()
    write(con, "SELECT range AS trip_id, range % 7 AS zone FROM range(1000)", lake / "dataset" / "trips.parquet")
    write(con, "SELECT range AS n, range % 3 AS day, range % 2 AS hour FROM range(600)", lake / "events",
          partition_by="day, hour")
    write(con, "SELECT 1 AS zone, 10 AS trips", lake / "dashboard" / "top_zones.parquet")
    write(con, "SELECT 'not this' AS shadowed", lake / "dashboard" / "trips.parquet")
    write(con, "SELECT 1 AS x", lake / "_lakemagic" / "results" / "abc.parquet")
    (lake / "notes").mkdir()
    (lake / "notes" / "readme.txt").write_text("no table here")
    return lake


def expected_catalog(lake: Path, root: str) -> list[tuple]:
    """What the catalog must say, as DuckDB itself counts the files' rows."""
    con = duckdb.connect()

    def rows(pattern: str) -> int:
        return con.execute(f"SELECT count(*) FROM read_parquet('{lake}/{pattern}')").fetchone()[0]

    return [
        ("events", "partitioned", f"{root}/events", ("day", "hour"), 6, rows("events/*/*/*.parquet")),
        ("top_zones", "materialized view", f"{root}/dashboard/top_zones.parquet", (), 1, rows("dashboard/top_zones.parquet")),
        ("trips", "file", f"{root}/dataset/trips.parquet", (), 1, rows("dataset/trips.parquet")),
    ]


def listed(tables) -> list[tuple]:
    return [(t.name, t.kind, t.location, t.partition_keys, t.files, t.rows) for t in tables]


def file_bytes(lake: Path, table: protocol.TableInfo) -> int:
    relative = table.location.split("/", 3)[3] if table.location.startswith("s3://") else table.location
    path = lake / relative if table.location.startswith("s3://") else Path(relative)
    return sum(file.stat().st_size for file in ([path] if path.is_file() else path.rglob("*.parquet")))


@pytest.fixture(scope="module")
def s3_small_lake(small_lake, aws_environment) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=CATALOG_BUCKET)
    for path in small_lake.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), CATALOG_BUCKET, path.relative_to(small_lake).as_posix())
    return f"s3://{CATALOG_BUCKET}"


@pytest.fixture(params=["local", "s3"])
def lake_handler(request, small_lake):
    """The handler over the small lake: a local folder, or the same files on the S3 server."""
    root = str(small_lake) if request.param == "local" else request.getfixturevalue("s3_small_lake")
    handler = LakeHandler(root)
    yield handler, root
    handler.close()


def call(handler, request: dict):
    return protocol.parse_answer(json.loads(json.dumps(handler(json.loads(json.dumps(request)), None))))


def test_the_tables_request_takes_no_fields():
    assert isinstance(protocol.parse_request(events.tables_request()), protocol.TablesRequest)
    with pytest.raises(ProtocolError, match="unknown field"):
        protocol.parse_request({"version": 1, "op": "tables", "prefix": "../other"})


def test_an_answer_with_an_unknown_table_kind_is_refused():
    wire = protocol.encode(protocol.TablesAnswer((protocol.TableInfo("t", "file", "/x", (), 1, 2, 3),)))
    assert protocol.parse_answer(wire).tables[0].rows == 3
    wire["tables"][0]["kind"] = "secret"
    with pytest.raises(ProtocolError):
        protocol.parse_answer(wire)


def test_the_catalog_lists_every_table_with_its_files_bytes_and_rows(lake_handler, small_lake):
    handler, root = lake_handler
    answer = call(handler, events.tables_request())
    assert isinstance(answer, protocol.TablesAnswer)
    assert listed(answer.tables) == expected_catalog(small_lake, root)
    for table in answer.tables:
        assert table.bytes == file_bytes(small_lake, table)


def test_show_tables_lists_the_lake_in_any_spelling(lake_handler, small_lake):
    handler, root = lake_handler
    for sql in ("SHOW TABLES", "show all tables;", "  Show\n Tables  "):
        answer = call(handler, events.query_request(sql, {}, 50))
        assert isinstance(answer, protocol.PageAnswer), answer
        frame = client.Page(answer.page.offset, answer.page.row_count, answer.page.data, answer.result.columns).frame()
        assert [(row.name, row.kind, tuple(row.partition_keys), row.files, row.rows) for row in frame.itertuples()] == [
            (name, kind, keys, files, rows) for name, kind, _, keys, files, rows in expected_catalog(small_lake, root)]


@pytest.mark.parametrize("sql", [
    "SHOW DATABASES", "SHOW SCHEMAS", "SHOW VARIABLES", "SHOW TABLES FROM main", "SHOW TABLES FROM information_schema",
    "SELECT * FROM (SHOW TABLES)", "SELECT name FROM (SHOW ALL TABLES) WHERE name LIKE 'duckdb%'",
    "WITH t AS (FROM (SHOW TABLES)) SELECT * FROM t", "DESCRIBE pg_settings", "SUMMARIZE FROM duckdb_secrets()",
    "SHOW duckdb_views", "DESCRIBE (SELECT * FROM duckdb_settings())",
])
def test_other_show_forms_stay_refused(lake_handler, sql):
    handler, _ = lake_handler
    answer = call(handler, events.query_request(sql, {}, 50))
    assert isinstance(answer, protocol.ErrorAnswer) and answer.type == "PermissionException", answer


@pytest.mark.parametrize("sql, missing, suggested", [
    ("SELECT * FROM trip", "trip", "trips"),
    ("SELECT count(*) FROM evnts", "evnts", "events"),
    ("DESCRIBE top_zone", "top_zone", "top_zones"),
    ("SELECT * FROM trips JOIN Event USING (zone)", "Event", "events"),
])
def test_an_unknown_table_is_met_with_the_closest_lake_tables(lake_handler, sql, missing, suggested):
    handler, _ = lake_handler
    answer = call(handler, events.query_request(sql, {}, 50))
    assert isinstance(answer, protocol.ErrorAnswer), answer
    assert answer.message == f"no table {missing} in the lake; did you mean {suggested}?"
    assert answer.position == sql.index(missing)
    assert "pg_" not in answer.message


def test_the_views_a_query_carries_are_suggested_too(lake_handler):
    handler, _ = lake_handler
    views = (protocol.View("zone_counts", "SELECT zone, count(*) AS n FROM trips GROUP BY 1"),)
    answer = call(handler, events.query_request("SELECT * FROM zone_count JOIN zone_counts USING (zone)", {}, 50, views))
    assert answer.message == "no table zone_count in the lake; did you mean zone_counts?"
    broken = (protocol.View("broken", "SELECT * FROM tripz"),)
    answer = call(handler, events.query_request("SELECT * FROM broken", {}, 50, broken))
    assert answer.message == "in view broken: no table tripz in the lake; did you mean trips?"


def test_a_name_like_nothing_in_the_lake_points_to_show_tables(lake_handler):
    handler, _ = lake_handler
    answer = call(handler, events.query_request("SELECT * FROM qqqqqq", {}, 50))
    assert answer.message == "no table qqqqqq in the lake; SHOW TABLES lists the lake's tables"


def test_a_warm_container_lists_an_s3_lake_once_per_catalog_lifetime(s3_small_lake, aws_environment, moto_endpoint):
    with S3Proxy(moto_endpoint) as proxy:  # every request, DuckDB's and boto3's, goes through it
        environment = dict(aws_environment, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
        s3 = boto3.client("s3", endpoint_url=proxy.endpoint_url)
        handler = LakeHandler(s3_small_lake, Settings(environment=environment), s3=s3)
        first = call(handler, events.tables_request())
        cold = dict(proxy.requests)
        proxy.reset()
        again = call(handler, events.tables_request())
        assert again.tables == first.tables
        assert proxy.count() == 0, dict(proxy.requests)
        assert cold["GET"] >= 1 + len(first.tables)  # the folder listing, each table's listing or footers
        handler.close()


def test_a_new_table_is_in_the_catalog_of_the_container_that_wrote_it(small_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(small_lake, lake)
    engine = EmbeddedEngine(str(lake))
    before = {table.name for table in client.tables(engine)}
    client.materialize(engine, "SELECT zone, count(*) AS n FROM trips GROUP BY 1", "dashboard/zone_counts.parquet")
    after = {table.name: table for table in client.tables(engine)}
    assert set(after) - before == {"zone_counts"}
    assert after["zone_counts"].kind == "materialized view" and after["zone_counts"].rows == 7


# --- the magic, on both engines ---------------------------------------------------


@pytest.fixture
def shell(shell_on_both_engines):
    return shell_on_both_engines


def run(shell, cell: str):
    with capture_output() as captured:
        outcome = shell.run_cell(cell)
    return outcome, captured


def test_tables_lists_the_lake_and_the_saved_views(shell, local_taxi_lake):
    outcome, _ = run(shell, "%%lakesql --save busy_zones\nSELECT pickup_location_id, count(*) AS trips FROM taxi_2019_04 GROUP BY 1")
    outcome.raise_error()
    outcome, _ = run(shell, "%lakesql --tables")
    outcome.raise_error()
    frame = outcome.result
    # the demo lake's month three ways: Hive-partitioned, one file, and an Iceberg table read from its metadata
    assert frame["name"].tolist() == ["partitioned", "taxi_2019_04", "taxi_iceberg", "busy_zones"]
    assert frame["kind"].tolist() == ["partitioned", "file", "iceberg", "saved view"]
    assert frame["partition keys"].tolist() == ["date", "", "day(pickup_at)", ""]
    assert frame["snapshot"].tolist()[2]
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM '{local_taxi_lake}/dataset/taxi_2019_04.parquet'").fetchone()[0]
    files = con.execute(f"SELECT count(*) FROM glob('{local_taxi_lake}/partitioned/*/*.parquet')").fetchone()[0]
    assert frame["rows"].tolist()[:3] == [rows, rows, rows]
    assert frame["files"].tolist()[:3] == [files, 1, files]
    shown, _ = shell.display_formatter.format(frame)  # the result table's look in every front end: HTML and text
    assert "<table class='lakemagic-table'" in shown["text/html"] and "taxi_2019_04" in shown["text/plain"]
    size = frame["bytes"].tolist()[1]
    assert f"{size:,}" not in shown["text/plain"] and re.search(r"\b[\d.]+ [kMG]?B\b", shown["text/plain"])
    assert f"{rows:,}" in shown["text/plain"]  # counts grouped by thousands
    for form in shown.values():
        assert "<NA>" not in form and "None" not in form and "nan" not in form  # a saved view has no files: blank
        assert frame["location"].tolist()[1] in form  # whole, however long


def test_show_tables_in_a_cell_lists_the_lake(shell):
    outcome, _ = run(shell, "%%lakesql tables <<\nSHOW TABLES")
    outcome.raise_error()
    assert shell.user_ns["tables"]["name"].tolist() == ["partitioned", "taxi_2019_04", "taxi_iceberg"]


def test_columns_are_what_describe_says(shell, local_taxi_lake):
    outcome, _ = run(shell, "%lakesql --columns partitioned")
    outcome.raise_error()
    con = duckdb.connect()
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{local_taxi_lake}/partitioned/*/*.parquet', "
                            "hive_partitioning = true)").fetchall()
    assert list(outcome.result.itertuples(index=False, name=None)) == [(name, kind) for name, kind, *_ in described]
    run(shell, "%%lakesql --save fares\nSELECT fare_amount::DOUBLE * 2 AS double_fare, date FROM partitioned")
    outcome, _ = run(shell, "%lakesql --columns fares")
    assert list(outcome.result.itertuples(index=False, name=None)) == [("double_fare", "DOUBLE"), ("date", "DATE")]


def test_an_unknown_table_in_a_cell_names_the_lake_table(shell):
    outcome, _ = run(shell, "%%lakesql\nSELECT count(*) FROM taxi_2019_4")
    assert isinstance(outcome.error_in_exec, LakeQueryError)
    assert outcome.error_in_exec.message == "no table taxi_2019_4 in the lake; did you mean taxi_2019_04?"
    outcome, _ = run(shell, "%lakesql --columns taxi_2019_4")
    assert "did you mean taxi_2019_04?" in outcome.error_in_exec.message


def test_the_lambda_catalog_is_the_embedded_one(lambda_endpoint, local_taxi_lake):
    on_lambda = client.tables(LambdaEngine(FUNCTION))
    embedded = client.tables(EmbeddedEngine(str(local_taxi_lake)))
    strip = lambda tables: [(t.name, t.kind, t.partition_keys, t.files, t.bytes, t.rows) for t in tables]  # noqa: E731
    assert strip(on_lambda) == strip(embedded)
    assert on_lambda[0].location == "s3://lake/partitioned"


def test_a_misspelt_saved_view_is_suggested_though_the_function_never_saw_it(shell):
    run(shell, "%%lakesql --save trips_by_zone\nSELECT pickup_location_id, count(*) AS n FROM taxi_2019_04 GROUP BY 1")
    outcome, _ = run(shell, "%%lakesql\nSELECT * FROM taxi_2019_04 JOIN trips_by_zon USING (pickup_location_id)")
    assert outcome.error_in_exec.message == "no table trips_by_zon in the lake; did you mean trips_by_zone?"
    assert outcome.error_in_exec.position == outcome.error_in_exec.sql.index("trips_by_zon")
    outcome, _ = run(shell, '%lakesql --columns trips_by_zne')
    assert outcome.error_in_exec.message == "no table trips_by_zne in the lake; did you mean trips_by_zone?"
    outcome, _ = run(shell, "%%lakesql\nSELECT trips_by_zon(1)")  # a function, not a table: DuckDB's own words
    assert outcome.error_in_exec.message.startswith("Scalar Function with name trips_by_zon does not exist")


def test_the_catalog_options_take_no_sql(ipython, local_taxi_lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(local_taxi_lake)!r}")
    for cell in ("%lakesql --tables SELECT 1", "%%lakesql --columns taxi_2019_04\nSELECT 1"):
        outcome, captured = run(ipython, cell)
        assert not outcome.success and "take no SQL" in captured.stderr + captured.stdout
