"""Iceberg and Delta tables by name, on the embedded engine (a local lake) and on the Lambda path (the
function behind `lakemagic serve`'s Invoke API over a bucket on the local S3 server): every answer is
what DuckDB itself reads of the same table with the same extension, and a table's metadata cannot make
a read leave the lake."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import boto3
import pandas as pd
import pytest

from lakelambda import protocol
from lakelambda.errors import PermissionDenied
from lakelambda.formats import current_iceberg_metadata
from lakelambda.sandbox import check_query
from lakelambda.storage import open_storage
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError

from servers import FUNCTION, OTHER_BUCKET, start_function
from table_writers import delta_s3_options, reference, s3_secret, write_delta, write_iceberg

BUCKET = "formats-lake"
QUERIES = [
    "SELECT count(*) AS n, sum(id) AS ids, sum(tip) AS tips, min(pickup) AS first FROM {table}",
    "SELECT zone, count(*) AS n, sum(fare) AS fares FROM {table} GROUP BY zone ORDER BY zone",
    "SELECT id, zone, fare, tip FROM {table} WHERE id IN (2, 3, 4, 85) ORDER BY id",
]


class Lake:
    """A lake holding Iceberg table `trips` and Delta table `rides`, with what was written of them."""

    def __init__(self, root: str, snapshots: list[int], version: int, secret: str = ""):
        self.root, self.snapshots, self.version, self.secret = root, snapshots, version, secret

    @property
    def metadata(self) -> str:
        return current_iceberg_metadata(open_storage(self.root, boto3.client("s3") if self.secret else None), "trips")

    def reader(self, name: str, snapshot: int | None = None) -> str:
        if name == "trips":
            option = f", snapshot_from_id => {snapshot}" if snapshot else ""
            return f"iceberg_scan('{self.metadata}'{option})"
        return f"delta_scan('{self.root}/rides'{f', version => {snapshot}' if snapshot is not None else ''})"

    def expected(self, sql: str) -> list[tuple]:
        return reference(sql, self.secret)


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory) -> Lake:
    lake = tmp_path_factory.mktemp("formats-lake")
    snapshots = write_iceberg(f"file://{lake}", "trips", tmp_path_factory.mktemp("iceberg-catalog"))
    return Lake(str(lake), snapshots, write_delta(str(lake / "rides")))


@pytest.fixture(scope="module")
def listener():
    """A TCP listener on 127.0.0.1 that records every connection it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections: list = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()
    for connection in connections:
        connection.close()


@pytest.fixture(scope="module")
def s3_lake(aws_environment, moto_endpoint, tmp_path_factory, listener) -> Lake:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=OTHER_BUCKET) if OTHER_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]] else None
    snapshots = write_iceberg(f"s3://{BUCKET}", "trips", tmp_path_factory.mktemp("iceberg-catalog"),
                              s3={"endpoint": moto_endpoint})
    version = write_delta(f"s3://{BUCKET}/rides", delta_s3_options(moto_endpoint))
    # What an attacker left in the lake before the function first lists it: a table whose data files are in
    # another bucket, and Delta logs that add files there.
    s3.put_object(Bucket=OTHER_BUCKET, Key="data/secret.parquet", Body=b"PAR1")
    write_iceberg(f"s3://{BUCKET}", "stolen", tmp_path_factory.mktemp("iceberg-catalog"),
                  s3={"endpoint": moto_endpoint}, data_path=f"s3://{OTHER_BUCKET}/data")
    S3_ATTACKS["rides_elsewhere_host"] = f"s3://{BUCKET}/rides/x.parquet?s3_endpoint=127.0.0.1:{listener[0]}"
    for name, bad in S3_ATTACKS.items():
        for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="rides/")["Contents"]:
            s3.copy_object(Bucket=BUCKET, Key=name + item["Key"][len("rides"):],
                           CopySource={"Bucket": BUCKET, "Key": item["Key"]})
        action = {"add": {"path": bad, "partitionValues": {"zone": "0"}, "size": 4, "modificationTime": 0,
                          "dataChange": True}}
        s3.put_object(Bucket=BUCKET, Key=f"{name}/_delta_log/{version + 1:020d}.json", Body=json.dumps(action).encode())
    # An Iceberg table whose newest metadata file sends the manifest list's read to another host.
    metadata = current_iceberg_metadata(open_storage(f"s3://{BUCKET}", s3), "trips")
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=metadata.split("/", 3)[3])["Body"].read())
    for item in document["snapshots"]:
        item["manifest-list"] = f"s3://{BUCKET}/trips/x.avro?s3_endpoint=127.0.0.1:{listener[0]}"
    s3.put_object(Bucket=BUCKET, Key="hijacked/metadata/99999-tampered.metadata.json", Body=json.dumps(document).encode())
    return Lake(f"s3://{BUCKET}", snapshots, version, s3_secret(moto_endpoint))


S3_ATTACKS = {"rides_elsewhere": f"s3://{OTHER_BUCKET}/data/secret.parquet",
              "rides_up": f"s3://{BUCKET}/../{OTHER_BUCKET}/data/secret.parquet"}


@pytest.fixture(scope="module")
def formats_function(s3_lake, aws_environment):
    """The function over the formats lake, with AWS_ENDPOINT_URL_LAMBDA pointing at it while the module runs."""
    local = start_function(s3_lake.root, aws_environment)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
        yield local
    local.stop()


@pytest.fixture(params=["local", "lambda"])
def engine_and_lake(request, local_lake):
    if request.param == "local":
        return EmbeddedEngine(local_lake.root), local_lake
    function = request.getfixturevalue("formats_function")
    assert function is not None
    return LambdaEngine(FUNCTION), request.getfixturevalue("s3_lake")


def answer(engine, sql: str):
    return client.run_query(engine, sql, page_size=1000).to_dataframe()


def rows(frame) -> list[tuple]:
    return list(frame.itertuples(index=False, name=None))


def same(frame, expected) -> None:
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("table", ["trips", "rides"])
def test_a_table_by_name_reads_what_duckdb_reads(engine_and_lake, query, table):
    engine, lake = engine_and_lake
    frame = answer(engine, query.format(table=table.upper() if table == "rides" else table))
    same(frame, lake.expected(query.format(table=lake.reader(table))))
    assert len(frame) > 0


def test_the_current_snapshot_has_the_delete_and_the_new_column(engine_and_lake):
    engine, lake = engine_and_lake
    for table in ("trips", "rides"):
        frame = answer(engine, f"SELECT count(*), count(*) FILTER (id = 3), count(tip) FROM {table}")
        assert rows(frame) == [(99, 0, 20)]


def test_time_travel_reads_an_earlier_snapshot(engine_and_lake):
    engine, lake = engine_and_lake
    metadata = lake.metadata.rpartition("/trips/")[2]
    sql = f"SELECT count(*), sum(id) FROM iceberg_scan('trips/{metadata}', snapshot_from_id => {lake.snapshots[0]})"
    same(answer(engine, sql), lake.expected(f"SELECT count(*), sum(id) FROM {lake.reader('trips', lake.snapshots[0])}"))
    assert rows(answer(engine, sql))[0][0] == 40
    sql = "SELECT count(*), sum(id) FROM delta_scan('rides', version => 1)"
    same(answer(engine, sql), lake.expected(f"SELECT count(*), sum(id) FROM {lake.reader('rides', 1)}"))
    snapshots = answer(engine, f"SELECT snapshot_id FROM iceberg_snapshots('trips/{metadata}') ORDER BY sequence_number")
    assert snapshots["snapshot_id"].tolist() == lake.snapshots


def test_the_catalog_tells_kind_partitions_files_rows_and_snapshot_from_metadata(engine_and_lake):
    engine, lake = engine_and_lake
    tables = {table.name: table for table in client.tables(engine)}
    trips, rides = tables["trips"], tables["rides"]
    assert (trips.kind, trips.partition_keys, trips.snapshot) == ("iceberg", ("zone", "month(pickup)"),
                                                                  str(lake.snapshots[-1]))
    assert trips.location == lake.metadata
    assert (rides.kind, rides.partition_keys, rides.snapshot) == ("delta", ("zone",), str(lake.version))
    for table in (trips, rides):
        assert table.rows == rows(lake.expected(f"SELECT count(*) FROM {lake.reader(table.name)}"))[0][0]
        files = rows(lake.expected(
            f"SELECT count(*) FROM iceberg_metadata('{lake.metadata}') WHERE status <> 'DELETED'" if table is trips
            else f"SELECT count(DISTINCT filename) FROM delta_scan('{lake.root}/rides', filename => true)"))[0][0]
        assert table.files == files and table.bytes > 0
    described = answer(engine, "DESCRIBE trips")
    wanted = lake.expected(f"DESCRIBE SELECT * FROM {lake.reader('trips')}")
    assert rows(described[["column_name", "column_type"]]) == rows(wanted[["column_name", "column_type"]])


def test_show_tables_lists_them(engine_and_lake):
    engine, _ = engine_and_lake
    listed = answer(engine, "SHOW TABLES")
    assert set(rows(listed[["name", "kind"]])) >= {("trips", "iceberg"), ("rides", "delta")}


def test_a_query_over_a_table_format_fans_out_over_its_data_files_through_the_function(formats_function, s3_lake):
    """Both tables had a column added and a row deleted (rewritten, no delete file or deletion vector): each
    data file read alone gives what the format's reader gives, the older ones NULL for the new column."""
    from lakemagic.fanout import runner

    engine = LambdaEngine(FUNCTION)
    explained = runner.explain(engine, "SELECT zone, count(*) FROM trips GROUP BY zone", (), 8)
    assert explained.startswith("Fan-out over 8 tasks") and "month(pickup)=" in explained, explained
    for table in ("trips", "rides"):
        sql = "SELECT zone, count(*) AS n, count(tip) AS tips, sum(fare) AS fares FROM {table} GROUP BY zone ORDER BY zone"
        result = runner.run(engine, sql.format(table=table), {}, 50, (), 4)
        assert result.stats.fanout.tasks == 4 and result.stats.fanout.not_split is None
        same(result.to_dataframe(), s3_lake.expected(sql.format(table=s3_lake.reader(table))))


# --- the sandbox -----------------------------------------------------------------


@pytest.mark.parametrize("sql, problem", [
    ("SELECT * FROM iceberg_scan('/etc/x/metadata/v1.metadata.json')", "outside the lake"),
    ("SELECT * FROM iceberg_scan('trips/../../x')", "'..'"),
    ("SELECT * FROM iceberg_scan('trips', allow_moved_paths => true)", "option allow_moved_paths is not allowed"),
    ("SELECT * FROM iceberg_scan('trips', snapshot_from_id => (SELECT 1))", "must be a whole number"),
    ("SELECT * FROM delta_scan('rides/*')", "no wildcards"),
    ("SELECT * FROM delta_scan('rides', version => 1, log_tail => 'x')", "option log_tail is not allowed"),
    ("SELECT * FROM delta_scan(['rides', 'trips'])", "exactly one path"),
    ("SELECT * FROM iceberg_scan('s3://other/t?s3_endpoint=127.0.0.1:9')", "outside the lake"),
    ("SELECT * FROM iceberg_catalogs()", "not available"),
])
def test_the_sandbox_admits_table_formats_only_inside_the_lake(sql, problem):
    with pytest.raises(PermissionDenied, match=problem.replace("(", r"\(").replace(".", r"\.")):
        check_query(sql, "/lake")


# --- hostile metadata ------------------------------------------------------------


def _refused(engine, sql: str, *named: str) -> str:
    with pytest.raises(LakeQueryError) as raised:
        client.run_query(engine, sql)
    for name in named:
        assert name in raised.value.message
    return raised.value.message


def _tampered_delta_commit(path: Path, bad: str, version: int) -> None:
    """A next commit that adds a file at `bad` (as the log's `add.path`)."""
    action = {"add": {"path": bad, "partitionValues": {"zone": "0"}, "size": 1, "modificationTime": 0,
                      "dataChange": True, "stats": json.dumps({"numRecords": 1})}}
    (path / "_delta_log" / f"{version + 1:020d}.json").write_text(json.dumps(action) + "\n")


def test_local_metadata_that_points_outside_the_lake_is_refused(local_lake, tmp_path, listener):
    port, connections = listener
    lake = tmp_path / "lake"
    outside = tmp_path / "outside"
    shutil.copytree(local_lake.root, lake)
    engine = EmbeddedEngine(str(lake))
    secret = outside / "secret.parquet"
    outside.mkdir()
    reference(f"COPY (SELECT 42 AS id) TO '{secret}'")
    # Delta: an added file in another folder, up the tree, or on another host.
    for bad in (str(secret), f"file://{secret}", "../outside/secret.parquet", f"s3://lake/x.parquet?s3_endpoint=127.0.0.1:{port}"):
        shutil.rmtree(lake / "rides")
        shutil.copytree(Path(local_lake.root) / "rides", lake / "rides")
        _tampered_delta_commit(lake / "rides", bad, local_lake.version)
        _refused(engine, "SELECT count(*) FROM rides", "_delta_log", bad.replace("file://", "")[:40])
    # Iceberg: a table whose metadata is in the lake and whose data files are not (pyiceberg's write.data.path).
    write_iceberg(f"file://{lake}", "stolen", tmp_path, data_path=f"file://{outside}/data")
    _refused(engine, "SELECT count(*) FROM stolen", "will not read", f"{outside}/data")
    # Iceberg: a current metadata file whose manifest list is elsewhere.
    metadata = Path(current_iceberg_metadata(open_storage(str(lake)), "trips"))
    document = json.loads(metadata.read_text())
    for item in document["snapshots"]:
        item["manifest-list"] = f"s3://lake/x.avro?s3_endpoint=127.0.0.1:{port}"
    (metadata.parent / "99999-tampered.metadata.json").write_text(json.dumps(document))
    _refused(engine, "SELECT count(*) FROM trips", "99999-tampered.metadata.json", "s3_endpoint")
    assert connections == []


def test_s3_metadata_that_points_at_another_bucket_or_host_is_refused(s3_lake, formats_function, listener):
    engine = LambdaEngine(FUNCTION)
    _refused(engine, "SELECT count(*) FROM stolen", "will not read", f"s3://{OTHER_BUCKET}/data")
    for name, bad in S3_ATTACKS.items():
        _refused(engine, f"SELECT count(*) FROM {name}", "_delta_log", bad)
    _refused(engine, "SELECT count(*) FROM hijacked", "99999-tampered.metadata.json", "s3_endpoint")
    metadata = f"s3://{BUCKET}/hijacked/metadata/99999-tampered.metadata.json"
    _refused(engine, f"SELECT count(*) FROM iceberg_scan('{metadata}')", "s3_endpoint")
    _refused(engine, f"SELECT * FROM iceberg_metadata('{metadata}')", "s3_endpoint")
    assert listener[1] == []


def test_missing_or_corrupt_metadata_names_the_file(local_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(local_lake.root, lake)
    engine = EmbeddedEngine(str(lake))
    write_iceberg(f"file://{lake}", "broken", tmp_path)  # in this lake: the copied tables name the first one's files
    broken = json.loads(Path(current_iceberg_metadata(open_storage(str(lake)), "broken")).read_text())
    manifest_list = next(item["manifest-list"] for item in broken["snapshots"]
                         if item["snapshot-id"] == broken["current-snapshot-id"]).removeprefix("file://")
    Path(manifest_list).write_bytes(b"not avro at all")
    _refused(engine, "SELECT count(*) FROM broken", manifest_list, "could not be read")
    metadata = Path(current_iceberg_metadata(open_storage(str(lake)), "trips"))
    metadata.write_text("{not json")
    _refused(engine, "SELECT count(*) FROM trips", str(metadata), "not valid JSON")
    (lake / "trips" / "metadata" / "version-hint.text").write_text("77")
    _refused(engine, "SELECT count(*) FROM trips", "version-hint.text", "77")
    commit = lake / "rides" / "_delta_log" / f"{local_lake.version:020d}.json"
    commit.write_text("{oops\n")
    _refused(engine, "SELECT count(*) FROM rides", str(commit))


def test_each_format_loads_its_extensions_at_its_first_query_and_parquet_none(local_lake):
    from lakelambda.handler import LakeHandler

    handler = LakeHandler(local_lake.root)
    query = lambda sql: handler({"version": 1, "op": "query", "sql": sql, "params": {}, "page_size": 10})  # noqa: E731
    try:
        assert "error" not in query("SELECT 42") and handler.table_formats == set()
        assert "error" not in query("SELECT count(*) FROM rides") and handler.table_formats == {"delta"}
        assert "error" not in query("SELECT count(*) FROM trips JOIN rides USING (id)")
        assert handler.table_formats == {"delta", "iceberg"}
    finally:
        handler.close()


def test_the_tables_answer_carries_the_snapshot():
    table = protocol.TableInfo("t", "iceberg", "/l/t/metadata/1-a.metadata.json", ("zone",), 1, 2, 3, "123")
    assert protocol.parse_answer(protocol.encode(protocol.TablesAnswer((table,)))).tables[0].snapshot == "123"


def test_table_format_folders_share_the_resolver_with_every_other_table(local_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(local_lake.root, lake)
    reference(f"COPY (SELECT 1 AS x, 2 AS day) TO '{lake}/Trips' (FORMAT parquet, PARTITION_BY (day))")
    engine = EmbeddedEngine(str(lake))
    message = _refused(engine, "SELECT count(*) FROM TRIPS", "ambiguous", f"{lake}/trips", f"{lake}/Trips")
    assert "iceberg" in message and "partitioned" in message
    shutil.rmtree(lake / "Trips")
    (lake / "dataset").mkdir()
    reference(f"COPY (SELECT 7 AS id) TO '{lake}/dataset/rides.parquet'")  # a dataset file comes first
    assert rows(answer(engine, "SELECT id FROM Rides")) == [(7,)]
    with pytest.raises(LakeQueryError, match="already has a table named TRIPS: trips \\(iceberg"):
        client.materialize(engine, "SELECT 1 AS x", "dashboard/TRIPS.parquet")


def test_the_magic_lists_describes_and_completes_them(ipython, local_lake):
    from IPython.core.completer import provisionalcompleter
    from IPython.utils.capture import capture_output

    ipython.run_line_magic("config", f"LakeMagic.lake = {local_lake.root!r}")
    with capture_output():
        listed = ipython.run_line_magic("lakesql", "--tables")
        columns = ipython.run_line_magic("lakesql", "--columns rides")
    kinds = dict(zip(listed["name"], zip(listed["kind"], listed["partition keys"], listed["snapshot"])))
    assert kinds["trips"] == ("iceberg", "zone, month(pickup)", str(local_lake.snapshots[-1]))
    assert kinds["rides"] == ("delta", "zone", str(local_lake.version))
    wanted = local_lake.expected(f"DESCRIBE SELECT * FROM {local_lake.reader('rides')}")
    assert rows(columns) == rows(wanted[["column_name", "column_type"]])
    cell = "%%lakesql\nSELECT * FROM ri"
    deadline = time.monotonic() + 30
    while True:
        with provisionalcompleter():
            offered = [(found.text, found.type) for found in ipython.Completer.completions(cell, len(cell))]
        if ("rides", "table") in offered or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ("rides", "table") in offered
