"""The attacker's view of Iceberg and Delta tables, beyond test_table_formats: a Delta log whose remove
does not match its add the way Delta's reader matches them, an added path that parses as a URL, log files
this reader does not replay, and the database reopened with the formats' extensions, on both engines."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import boto3
import pytest

from lakelambda.database import Settings, open_database
from lakelambda.errors import PermissionDenied
from lakelambda.format_calls import pin_calls
from lakelambda.formats import current_iceberg_metadata
from lakelambda.lake import Lake
from lakelambda.sandbox import check_query
from lakelambda.storage import open_storage
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError

from servers import FUNCTION, OTHER_BUCKET, start_function
from table_writers import delta_s3_options, reference, write_delta, write_iceberg
from test_table_formats import _refused

BUCKET = "attacks-lake"
# A deletion vector stored beside the table (storageType "u"): a remove that carries it is, for Delta's
# reader, the remove of another add than one without it.
VECTOR = {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 1, "sizeInBytes": 36,
          "cardinality": 1}


def _add(path: str, size: int, vector: dict | None = None) -> dict:
    action = {"path": path, "partitionValues": {"zone": "0"}, "size": size, "modificationTime": 0,
              "dataChange": True, "stats": json.dumps({"numRecords": 1})}
    return {"add": dict(action, deletionVector=vector) if vector else action}


def _remove(path: str, vector: dict | None = None) -> dict:
    action = {"path": path, "deletionTimestamp": 0, "dataChange": True}
    return {"remove": dict(action, deletionVector=vector) if vector else action}


def _commits(write, version: int, *actions: dict) -> None:
    """Each action as the next commit of the log, through `write(name, text)`."""
    for number, action in enumerate(actions, start=version + 1):
        write(f"_delta_log/{number:020d}.json", json.dumps(action) + "\n")


@pytest.fixture(scope="module")
def rides(tmp_path_factory) -> tuple[Path, int]:
    """A Delta table as delta-rs writes it, and its last version."""
    folder = tmp_path_factory.mktemp("delta") / "rides"
    return folder, write_delta(str(folder))


@pytest.fixture
def local(rides, tmp_path):
    """A fresh lake holding a copy of `rides`, a secret Parquet file outside it with the table's columns,
    the embedded engine over the lake and a writer of the copy's files."""
    lake, secret = tmp_path / "lake", tmp_path / "outside" / "secret.parquet"
    shutil.copytree(rides[0], lake / "rides")
    secret.parent.mkdir()
    reference(f"COPY (SELECT 4242 AS id, 0 AS zone, 0.0 AS fare, TIMESTAMP '2020-01-01' AS pickup, 0.0 AS tip) "
              f"TO '{secret}'")
    write = lambda name, text: (lake / "rides" / name).write_text(text)  # noqa: E731
    return EmbeddedEngine(str(lake)), lake, secret, write


@pytest.mark.parametrize("add_vector, remove_vector", [(None, VECTOR), (VECTOR, None)])
def test_an_add_that_a_remove_does_not_cancel_for_delta_is_checked(local, rides, add_vector, remove_vector):
    engine, lake, secret, write = local
    size = secret.stat().st_size
    _commits(write, rides[1], _add(str(secret), size, add_vector), _remove(str(secret), remove_vector))
    if add_vector is None:  # DuckDB's own delta_scan still reads the removed add: the attack is real
        assert 4242 in reference(f"SELECT id FROM delta_scan('{lake}/rides')")["id"].tolist()
    _refused(engine, "SELECT count(*) FROM rides", "_delta_log", str(secret), "will not read")
    _refused(engine, f"SELECT count(*) FROM delta_scan('{lake}/rides')", str(secret), "will not read")


@pytest.mark.parametrize("written", ["file:{secret}", "FILE:{secret}", "file:%2F{rest}", "%66ile:{secret}"])
def test_an_added_path_that_parses_as_a_url_is_checked_as_one(local, rides, written):
    engine, lake, secret, write = local
    path = written.format(secret=secret, rest=str(secret)[1:])
    _commits(write, rides[1], _add(path, secret.stat().st_size))
    _refused(engine, "SELECT count(*) FROM rides", "_delta_log", "will not read")


def test_log_files_this_reader_does_not_replay_are_refused(local, rides):
    engine, lake, secret, write = local
    # A compacted log file stands for commits 1 to the last one to a reader that uses it; this one adds the secret.
    write(f"_delta_log/{1:020d}.{rides[1]:020d}.compacted.json", json.dumps(_add(str(secret), 1)) + "\n")
    _refused(engine, "SELECT count(*) FROM rides", "compacted commits", "does not read yet")


@pytest.mark.parametrize("vector, problem", [
    (["p", "{secret}"], "holds a commit this reader does not understand"),
    ({"storageType": "P", "pathOrInlineDv": "{secret}"}, "deletion vector this reader does not understand"),
    ({"storageType": "u", "pathOrInlineDv": "../../outside/ab^-aqEH.-t@S}K{vb[*k^"}, "no plain folder"),
    ({"storageType": "u", "pathOrInlineDv": 7}, "no plain folder"),
])
def test_a_deletion_vector_of_no_known_shape_is_refused_clearly(local, rides, vector, problem):
    engine, lake, secret, write = local
    action = _add("zone=0/x.parquet", 1, json.loads(json.dumps(vector).replace("{secret}", str(secret))))
    _commits(write, rides[1], action)
    _refused(engine, "SELECT count(*) FROM rides", "_delta_log", problem)


def test_the_database_reopened_for_table_formats_is_sandboxed_and_locked_as_the_first(tmp_path):
    """A test-only probe: both databases' settings, side by side; the formats' own settings stay locked."""
    (tmp_path / "lake").mkdir()
    lake = Lake(str(tmp_path / "lake"))
    found = []
    for formats in (frozenset(), frozenset({"iceberg", "delta"})):
        settings = Settings(scratch=str(tmp_path / f"scratch-{len(found)}"))
        con = open_database(lake, settings, formats)
        try:
            found.append(dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall()))
            for name, value in (("unsafe_enable_version_guessing", "true"), ("enable_external_access", "true"),
                                ("allowed_directories", "['/']"), ("delta_kernel_logging", "true")):
                with pytest.raises(Exception, match="locked"):
                    con.execute(f"SET {name} = {value}")
        finally:
            con.close()
    plain, formats = found
    own = {name for name in plain if "directory" in name or "directories" in name}  # each has its scratch folder
    # Delta's extension flips one internal setting of DuckDB's as it loads; nothing else of the first changes.
    assert {name for name in plain if name not in own and plain[name] != formats[name]} <= \
        {"__delta_only_variant_encoding_enabled"}
    assert formats["lock_configuration"] == "true" and formats["enable_external_access"] == "false"
    assert formats["allowed_directories"].count(str(tmp_path / "lake")) == 1
    assert formats["unsafe_enable_version_guessing"] == "false"


def test_s3_neither_a_log_nor_a_version_hint_reaches_another_bucket_or_host(aws_environment, moto_endpoint, rides,
                                                                           tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))  # must hear nothing
    listener.settimeout(0.5)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    if OTHER_BUCKET not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=OTHER_BUCKET)
    version = write_delta(f"s3://{BUCKET}/rides", delta_s3_options(moto_endpoint))
    secret = f"s3://{BUCKET}/../{OTHER_BUCKET}/data/secret.parquet"  # DuckDB's outer layer admits it
    write = lambda name, text: s3.put_object(Bucket=BUCKET, Key=f"rides/{name}", Body=text.encode())  # noqa: E731
    _commits(write, version, _add(secret, 4), _remove(secret, VECTOR))
    write_iceberg(f"s3://{BUCKET}", "trips", tmp_path, s3={"endpoint": moto_endpoint})
    # A hint whose query string would send the metadata file's signed request to the listener.
    hint = f"1?s3_endpoint=127.0.0.1:{listener.getsockname()[1]}&x="
    s3.put_object(Bucket=BUCKET, Key="trips/metadata/version-hint.text", Body=hint.encode())
    function = start_function(f"s3://{BUCKET}", aws_environment)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ENDPOINT_URL_LAMBDA", function.endpoint_url)
            engine = LambdaEngine(FUNCTION)
            _refused(engine, "SELECT count(*) FROM rides", "_delta_log", secret, "will not read")
            _refused(engine, "SELECT count(*) FROM delta_scan('rides')", secret, "will not read")
            for sql in ("SELECT * FROM iceberg_snapshots('trips')", "SELECT * FROM iceberg_scan('trips')",
                        "SELECT * FROM trips"):
                _refused(engine, sql, "version-hint.text", "s3_endpoint")
        with pytest.raises(OSError):
            listener.accept()[0].close()
    finally:
        function.stop()
        listener.close()


@pytest.fixture
def trips(local, tmp_path) -> Path:
    """An Iceberg table as pyiceberg writes it, in the `local` lake, given a version hint; its current metadata file."""
    lake = local[1]
    write_iceberg(f"file://{lake}", "trips", tmp_path)
    metadata = Path(current_iceberg_metadata(open_storage(str(lake)), "trips"))
    version = int(metadata.name.split("-")[0])
    (metadata.parent / "version-hint.text").write_text(str(version))
    return metadata.rename(metadata.parent / f"v{version}.metadata.json")


def test_a_version_hint_the_check_refuses_is_never_followed(local, trips):
    engine, lake, secret, write = local
    hint = trips.parent / "version-hint.text"
    (secret.parent / "evil.metadata.json").write_text(trips.read_text())
    assert len(client.run_query(engine, "SELECT * FROM iceberg_snapshots('trips')").to_dataframe()) == 4
    hint.write_text("../../../outside/evil")
    for sql in ("SELECT * FROM iceberg_snapshots('trips')", "SELECT count(*) FROM iceberg_scan('trips')"):
        _refused(engine, sql, "version-hint.text", "../../../outside/evil")


def test_a_call_runs_pinned_to_the_snapshot_it_checked(local, rides):
    """What a query calls itself runs at the version checked: a commit written between the check and the
    read (here, after the pin) is not read, and an error still points where the query was written."""
    engine, lake, secret, write = local
    settings = Settings(scratch=str(lake.parent / "scratch"))
    con = open_database(Lake(str(lake)), settings, frozenset({"delta"}))
    try:
        checked = pin_calls(con, Lake(str(lake)), check_query("SELECT max(id) AS top FROM delta_scan('rides')",
                                                               str(lake)))
        assert f"version => {rides[1]}" in checked.text
        _commits(write, rides[1], _add(str(secret), secret.stat().st_size))  # a commit the check never saw
        assert 4242 in reference(f"SELECT id FROM delta_scan('{lake}/rides')")["id"].tolist()
        assert con.execute(checked.text).fetchone()[0] < 4242
    finally:
        con.close()
    sql = "SELECT id FROM delta_scan('rides') WHERE nosuch = 1"
    (lake / "rides" / "_delta_log" / f"{rides[1] + 1:020d}.json").unlink()
    with pytest.raises(LakeQueryError) as raised:
        client.run_query(engine, sql)
    assert "nosuch" in raised.value.message and raised.value.position == sql.index("nosuch")


@pytest.mark.parametrize("sql, problem", [
    ("SELECT * FROM delta_scan('rides', version => 1, VERSION => 3)", "option VERSION is given twice"),
    ("SELECT * FROM iceberg_scan('trips', snapshot_from_id = 1, snapshot_from_id => 2)", "given twice"),
    ("SELECT * FROM (SELECT 'rides' AS p) t, LATERAL delta_scan(t.p)", "a string literal"),
    ("SELECT * FROM delta_scan($p)", "a string literal"),
    ("SELECT * FROM delta_scan('ri' || 'des')", "a string literal"),
    ("WITH t AS (SELECT * FROM (SELECT 1) WHERE EXISTS (SELECT * FROM delta_scan(concat('rides')))) FROM t",
     "a string literal"),
    ("SELECT * FROM delta_scan(path => 'rides')", "option path is not allowed"),
    ("SELECT * FROM iceberg_scan('trips', metadata_compression_codec => 'gzip')", "not allowed"),
    ("SELECT * FROM iceberg_scan('trips', version => '1')", "option version is not allowed"),
    ("SELECT * FROM iceberg_scan('trips', snapshot_from_timestamp => TIMESTAMP '2020-01-01')", "not allowed"),
    ("SELECT * FROM delta_scan('rides/../../etc')", "'..'"),
    ("SELECT * FROM delta_scan('FILE:///etc/x')", "outside the lake"),
    ("SELECT * FROM delta_scan('rides%2F..%2F..%2Fetc')", "cannot contain ?, #, %"),
    ("SELECT * FROM iceberg_scan('trips?s3_endpoint=127.0.0.1:9')", "cannot contain ?"),
    ("SELECT * FROM iceberg_scan('_lakemagic/results')", "bookkeeping"),
])
def test_the_sandbox_takes_a_table_format_call_only_as_one_literal_path_and_whole_number_options(sql, problem):
    with pytest.raises(PermissionDenied, match=re.escape(problem)):
        check_query(sql, "/lake")


@pytest.mark.parametrize("where", ["iceberg metadata", "delta commit", "delta stats"])
def test_metadata_nested_deeper_than_python_reads_is_a_clear_refusal(local, rides, trips, where):
    engine, lake, secret, write = local
    bomb = "[" * 200_000 + "]" * 200_000
    if where == "iceberg metadata":
        trips.write_text(bomb)
        _refused(engine, "SELECT count(*) FROM trips", str(trips), "not valid JSON")
    else:
        action = bomb if where == "delta commit" else json.dumps(_add("zone=0/x.parquet", 1)).replace(
            json.dumps(json.dumps({"numRecords": 1})), json.dumps(bomb))
        write(f"_delta_log/{rides[1] + 1:020d}.json", action + "\n")
        _refused(engine, "SELECT count(*) FROM rides", "_delta_log")


def test_a_table_file_rewritten_in_place_after_a_query_is_checked_again(local, rides, trips):
    """The view a table's name reads is kept while its snapshot's file is the same; rewritten in place
    (same name, other contents), that file is checked again before the next read. Here it names a file
    DuckDB's outer layer admits (inside the lake) that another caller's result could be."""
    engine, lake, secret, write = local
    stored = lake / "_lakemagic" / "results" / "other-caller.parquet"
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(secret, stored)
    both = "SELECT (SELECT count(*) FROM trips) AS trips, (SELECT count(*) FROM rides) AS rides"
    assert client.run_query(engine, both).to_dataframe()["rides"][0] > 0  # both views made, in one database
    commit = lake / "rides" / "_delta_log" / f"{rides[1]:020d}.json"
    commit.write_text(commit.read_text().rstrip("\n") + "\n" + json.dumps(_add(str(stored), stored.stat().st_size)) + "\n")
    _refused(engine, "SELECT max(id) FROM rides", "_delta_log", str(stored), "will not read")
    document = json.loads(trips.read_text())
    for item in document["snapshots"]:
        item["manifest-list"] = str(stored)
    trips.write_text(json.dumps(document))
    _refused(engine, "SELECT count(*) FROM trips", str(trips), str(stored), "will not read")
