"""The fan-out's operations at the handler's edge: listing a partitioned table, and hostile task requests.

A task names its table and its files; everything in it is hostile. Each test
sends events to the real LakeHandler over a moto S3 server on 127.0.0.1 (a
bucket of its own, so that the odd files planted here reach no other test),
and over a local lake folder.
"""

from __future__ import annotations

import boto3
import pytest

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.handler import LakeHandler
from lakelambda.storage import S3Bucket
from lakemagic.locallambda.s3proxy import S3Proxy
from servers import OTHER_BUCKET
import events

FANOUT_BUCKET = "fanout-lake"
TABLE = "partitioned"  # the taxi lake's Hive-partitioned table, by date
COUNT = "SELECT count(*) AS trips, sum(trip_distance) AS miles FROM partitioned"
# A key a hostile writer of the lake might have created inside the table's own folder.
PLANTED = "partitioned/date=2019-04-01/x?s3_endpoint=127.0.0.1:9.parquet"


@pytest.fixture(scope="module", params=["s3", "local"])
def lake(request, aws_environment, local_taxi_lake, tmp_path_factory):
    """(handler, the table's listing): the taxi lake on S3 or as a local folder."""
    scratch = str(tmp_path_factory.mktemp(f"fanout-{request.param}"))
    if request.param == "local":
        handler = LakeHandler(str(local_taxi_lake), Settings(scratch=scratch))
    else:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=FANOUT_BUCKET)
        for path in local_taxi_lake.rglob("*.parquet"):
            if "_lakemagic" not in path.parts:
                s3.upload_file(str(path), FANOUT_BUCKET, path.relative_to(local_taxi_lake).as_posix())
        handler = LakeHandler(f"s3://{FANOUT_BUCKET}", Settings(scratch=scratch, environment=aws_environment))
    answer = protocol.parse_answer(handler(events.partitions_request([TABLE])))
    yield handler, answer.tables[0]
    handler.close()


def task(listed: protocol.PartitionedTable, share: list[str], sql: str = COUNT, /, **fields) -> dict:
    """A task event over `share` of the table, with `fields` of the event replaced."""
    event = events.task_request(sql, {}, 100, TABLE, share, {c.name: c.type for c in listed.key_types})
    event.update(fields)
    return event


def answered(handler, event) -> protocol.Answer:
    return protocol.parse_answer(handler(event))


def error_of(handler, event) -> protocol.ErrorAnswer:
    answer = answered(handler, event)
    assert isinstance(answer, protocol.ErrorAnswer), answer
    return answer


def real_files(table: protocol.PartitionedTable) -> list[str]:
    return [file.path for file in table.files]


def test_the_listing_has_every_partition_file_with_its_size_values_and_key_types(lake, local_taxi_lake):
    handler, table = lake
    on_disk = sorted(path.relative_to(local_taxi_lake).as_posix()
                     for path in (local_taxi_lake / TABLE).rglob("*.parquet"))
    assert real_files(table) == on_disk
    assert [(c.name, c.type) for c in table.key_types] == [("date", "DATE")]
    first = table.files[0]
    assert first.bytes == (local_taxi_lake / first.path).stat().st_size
    assert first.partition == (("date", first.path.split("/")[1].split("=")[1]),)


def test_the_listing_leaves_out_what_is_not_a_partitioned_table(lake):
    handler, _ = lake
    answer = answered(handler, events.partitions_request(["taxi_2019_04", "no_such_table", "dataset"]))
    assert answer.tables == ()


def test_tasks_over_shares_add_up_to_the_whole_table(lake):
    handler, table = lake
    whole = answered(handler, events.query_request(COUNT, {}, 10))
    files = real_files(table)
    shares = [files[:7], files[7:19], files[19:]]
    answers = [answered(handler, task(table, share)) for share in shares]
    assert all(isinstance(answer, protocol.PageAnswer) for answer in answers), answers
    from lakemagic.client import Page  # the notebook's decoder, as the runner reads partials
    totals = [Page(a.page.offset, a.page.row_count, a.page.data, a.result.columns).frame() for a in answers]
    expected = Page(whole.page.offset, whole.page.row_count, whole.page.data, whole.result.columns).frame()
    assert sum(int(frame.trips[0]) for frame in totals) == int(expected.trips[0])
    assert sum(frame.miles[0] for frame in totals) == pytest.approx(expected.miles[0], rel=1e-9)


@pytest.mark.parametrize("path", [
    "dataset/taxi_2019_04.parquet",  # the lake's, but not the table's
    "partitioned/../dataset/taxi_2019_04.parquet",
    "partitioned/date=2019-04-01/../../dataset/taxi_2019_04.parquet/..",
    "partitioned/date=2019-04-01/data_0.parquet?s3_endpoint=127.0.0.1:9",
    "partitioned/date=2019-04-01/data_0.parquet#x",
    "partitioned/date=2019-04-01//data_0.parquet",
    "./partitioned/date=2019-04-01/data_0.parquet",
    "partitioned/date=2019-04-01/*.parquet",
    "partitioned/**/*.parquet",
    "s3://lake/partitioned/date=2019-04-01/data_0.parquet",
    f"s3://{OTHER_BUCKET}/secret.csv",
    f"../{OTHER_BUCKET}/secret.csv",
    "/etc/passwd",
    "file:///etc/passwd",
    "http://127.0.0.1:9/x.parquet",
    "PARTITIONED/date=2019-04-01/data_0.parquet",
    "partitioned/date=2019-04-01/data_0.parquet\x00",
    # Refused by name alone: no file is listed to check them against.
    "partitioned/date=2019-04-0[1-9]/data_0.parquet",
    "partitioned/date={2019-04-01,2019-04-02}/data_0.parquet",
    "partitioned/date=2019-04-01/data_?.parquet",
    "partitioned/date=2019-04-01/%2e%2e/%2e%2e/dataset/taxi_2019_04.parquet",
    "partitioned/date=2019-04-01\\..\\..\\dataset/taxi_2019_04.parquet",
    "partitioned/date=2019-04-01/user@host.parquet",
    "partitioned/data_0.parquet",
    "partitioned/not-a-key/data_0.parquet",
    "partitioned/=2019-04-01/data_0.parquet",
    "partitioned/date=2019-04-01/.hidden.parquet",
    "partitioned/date=2019-04-01/_SUCCESS.parquet",
    "partitioned/date=2019-04-01/data_0.csv",
    "partitioned",
    "_lakemagic/results/x.parquet",
    "partitioned/date=2019-04-01/../../_lakemagic/results/x.parquet",
])
def test_a_file_that_is_not_one_of_the_tables_own_is_refused(lake, path):
    handler, table = lake
    error = error_of(handler, task(table, [real_files(table)[0], path]))
    assert error.type == "PermissionException" and "not one of the files of partitioned" in error.message


def test_a_planted_key_in_the_tables_folder_is_refused_by_the_sandbox(lake, aws_environment, tmp_path):
    handler, table = lake
    if not isinstance(handler.lake.storage, S3Bucket):
        pytest.skip("a local file name cannot hold what an S3 key can")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=FANOUT_BUCKET, Key=PLANTED, Body=b"PAR1 not really")
    fresh = LakeHandler(f"s3://{FANOUT_BUCKET}", Settings(scratch=str(tmp_path), environment=aws_environment))
    try:
        listed = protocol.parse_answer(fresh(events.partitions_request([TABLE])))
        assert PLANTED in [file.path for file in listed.tables[0].files]  # the table's key, but no reader may name it
        error = error_of(fresh, task(listed.tables[0], [PLANTED]))
        assert error.type == "PermissionException" and "cannot contain ?" in error.message, error
    finally:
        s3.delete_object(Bucket=FANOUT_BUCKET, Key=PLANTED)
        fresh.close()


def test_a_task_in_a_fresh_container_reads_its_file_and_lists_nothing(lake, moto_endpoint, aws_environment, tmp_path):
    """Its files are checked by name: no LIST of the lake or the table (three in a fresh container
    when they were checked against the table's listing), only the reads of the file itself, bound
    once (a HEAD more when the reader was a view, bound when made too)."""
    handler, table = lake
    if not isinstance(handler.lake.storage, S3Bucket):
        pytest.skip("S3 requests are counted on the S3 lake")
    with S3Proxy(moto_endpoint) as proxy:
        fresh = LakeHandler(f"s3://{FANOUT_BUCKET}", Settings(scratch=str(tmp_path), environment=dict(
            aws_environment, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)))
        try:
            assert "error" not in fresh(events.query_request("SELECT 1", {}, 1))
            proxy.reset()
            answer = answered(fresh, task(table, real_files(table)[:1]))
            assert isinstance(answer, protocol.PageAnswer), answer
            requests = dict(proxy.objects)
        finally:
            fresh.close()
    assert {path for _, path in requests} == {f"/{FANOUT_BUCKET}/{real_files(table)[0]}"}, requests
    assert requests[("HEAD", f"/{FANOUT_BUCKET}/{real_files(table)[0]}")] == 1, requests  # the query's one bind


def test_another_table_cannot_be_named_over_this_tables_files(lake):
    handler, table = lake
    error = error_of(handler, task(table, real_files(table)[:1], table="taxi_2019_04"))
    assert error.type == "PermissionException" and "not one of the files of taxi_2019_04" in error.message


@pytest.mark.parametrize("folder", ["dataset", "Dashboard"])
def test_the_single_file_tables_folders_are_no_partitioned_table(lake, folder):
    handler, table = lake
    error = error_of(handler, task(table, [f"{folder}/date=2019-04-01/taxi_2019_04.parquet"], table=folder))
    assert error.type == "PermissionException" and "not a Hive-partitioned table" in error.message


@pytest.mark.parametrize("table_name, path", [
    (TABLE, "partitioned/date=2019-04-01/no_such_file.parquet"),
    ("taxi_2019_04", "taxi_2019_04/date=2019-04-01/data_0.parquet"),  # a dataset's name has no such folder
])
def test_a_file_that_does_not_exist_fails_the_task_naming_it(lake, table_name, path):
    handler, table = lake
    share = [*real_files(table)[:1], path] if table_name == TABLE else [path]
    error = error_of(handler, task(table, share, f"SELECT count(*) AS trips FROM {table_name}", table=table_name))
    assert error.type in ("HTTPException", "IOException") and path in error.message, error


def test_the_tasks_sql_is_sandboxed_like_any_query(lake):
    handler, table = lake
    for sql in (f"SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv')",
                "SELECT count(*) FROM partitioned, read_text('/etc/passwd')",
                "SELECT current_setting('s3_secret_access_key') FROM partitioned"):
        assert error_of(handler, task(table, real_files(table)[:1], sql)).type == "PermissionException", sql


@pytest.mark.parametrize("change, complaint", [
    ({"files": []}, "'files' must be a list"),
    ({"files": "partitioned/date=2019-04-01/data_0.parquet"}, "'files' must be a list"),
    ({"files": [f"partitioned/date=2019-04-01/f{n}.parquet" for n in range(protocol.MAX_TASK_FILES + 1)]},
     "'files' must be a list of 1 to"),
    ({"files": ["x" * (protocol.MAX_FILE_PATH_CHARS + 1)]}, "at most"),
    ({"files": [7]}, "'files[0]' must be a path"),
    ({"table": "../dataset"}, "not a lake table's name"),
    ({"table": "_lakemagic"}, "not a lake table's name"),
    ({"key_types": {"date": "DATE'}, x := read_csv('/etc/passwd'"}}, "not a type name"),
    ({"key_types": ["date"]}, "'key_types' must be an object"),
    ({"views": [{"name": "Partitioned", "sql": "SELECT 1"}]}, "may not be named partitioned"),
    ({"paths": ["/etc/passwd"]}, "unknown field(s) paths"),
])
def test_malformed_task_requests_are_refused_at_the_edge(lake, change, complaint):
    handler, table = lake
    error = error_of(handler, task(table, real_files(table)[:2], **change))
    assert error.type == "ProtocolError" and complaint in error.message, error


def test_duplicate_files_are_refused(lake):
    handler, table = lake
    first = real_files(table)[0]
    error = error_of(handler, task(table, [first, first]))
    assert error.type == "ProtocolError" and "twice" in error.message


def test_key_types_must_type_exactly_the_partition_keys(lake):
    handler, table = lake
    for key_types in ({}, {"date": "DATE", "hour": "BIGINT"}, {"Date ": "DATE"}):
        error = error_of(handler, task(table, real_files(table)[:1], key_types=key_types))
        assert error.type == "ProtocolError" and "partition keys" in error.message, key_types


def test_a_partitions_request_is_bounded(lake):
    handler, _ = lake
    for tables in ([], ["x"] * (protocol.MAX_LISTED_TABLES + 1), ["../etc"], [3], "partitioned"):
        error = error_of(handler, {"version": 1, "op": "partitions", "tables": tables})
        assert error.type == "ProtocolError", tables


def test_a_task_naming_more_than_a_query_s_worth_of_file_names_is_refused_at_the_edge(lake):
    """The handler turns a task's file names into SQL, so together they are bounded as a query's SQL is."""
    handler, listed = lake
    long_names = [f"{TABLE}/date=2019-04-01/{'0' * 500}{number}.parquet" for number in range(
        protocol.MAX_TASK_FILE_CHARS // 500 + 1)]
    refused = error_of(handler, task(listed, long_names))
    assert refused.type == "ProtocolError" and "'files' together are longer than" in refused.message
