"""Iceberg and Delta tables whose deletes are applied when they are read (Iceberg v2 position and equality
delete files, merge-on-read; Delta deletion vectors), by name on the embedded engine (a local lake) and on
the Lambda path (a bucket on the local S3 server): every answer is what DuckDB itself reads of the same
table with the same extension, the deleted rows are gone, such a table runs in one invocation, and a
delete DuckDB cannot read says so."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import boto3
import pytest

from lakelambda.formats import current_iceberg_metadata
from lakelambda.storage import open_storage
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine

from servers import FUNCTION, start_function
from table_writers import (EQUALITY_DIVISOR, POSITION_DIVISOR, delta_s3_options, reference, s3_secret,
                           write_delta_deletion_vectors, write_iceberg_deletes)
from test_table_formats import _refused, answer, rows, same

BUCKET = "deletes-lake"
WRITTEN = range(80)  # the ids every builder writes, in two appends of 40
# Each table, the divisor of the ids its deletes take out.
TABLES = {"trips_position": POSITION_DIVISOR, "trips_equality": EQUALITY_DIVISOR, "rides_vectors": POSITION_DIVISOR}
QUERIES = [
    "SELECT count(*) AS n, sum(id) AS ids, sum(fare) AS fares, min(pickup) AS first FROM {table}",
    "SELECT zone, count(*) AS n, avg(fare) AS mean, max(id) AS top FROM {table} GROUP BY zone ORDER BY zone",
    "SELECT id, zone, fare FROM {table} WHERE id BETWEEN 9 AND 31 AND zone <> 2 ORDER BY id",
]


class DeletesLake:
    """A lake holding the three tables, with the snapshot ids (Iceberg) and last version (Delta) written."""

    def __init__(self, root: str, written: dict, secret: str = ""):
        self.root, self.written, self.secret = root, written, secret

    def metadata(self, name: str) -> str:
        return current_iceberg_metadata(open_storage(self.root, boto3.client("s3") if self.secret else None), name)

    def reader(self, name: str) -> str:
        """How DuckDB itself reads the table."""
        if name.startswith("trips"):
            return f"iceberg_scan('{self.metadata(name)}')"
        return f"delta_scan('{self.root}/{name}')"

    def before_deletes(self, name: str) -> str:
        """The table function, on a path relative to the lake, that reads the snapshot before the deletes."""
        if name.startswith("trips"):
            metadata = self.metadata(name).rpartition(f"/{name}/")[2]
            return f"iceberg_scan('{name}/{metadata}', snapshot_from_id => {self.written[name][-2]})"
        return f"delta_scan('{name}', version => {self.written[name] - 1})"

    def expected(self, sql: str):
        return reference(sql, self.secret)


def _tables(warehouse: str, delta_root: str, tmp_path_factory, s3: dict | None = None,
            delta_options: dict | None = None) -> dict:
    """The three tables (Iceberg under `warehouse`, Delta under `delta_root`): what each builder returns."""
    written = {name: write_iceberg_deletes(warehouse, name, tmp_path_factory.mktemp("iceberg-catalog"), kind, s3=s3)
               for name, kind in (("trips_position", "position"), ("trips_equality", "equality"))}
    written["rides_vectors"] = write_delta_deletion_vectors(f"{delta_root}/rides_vectors", delta_options)
    return written


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory) -> DeletesLake:
    lake = tmp_path_factory.mktemp("deletes-lake")
    return DeletesLake(str(lake), _tables(f"file://{lake}", str(lake), tmp_path_factory))


@pytest.fixture(scope="module")
def s3_deletes_lake(aws_environment, moto_endpoint, tmp_path_factory) -> DeletesLake:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    written = _tables(f"s3://{BUCKET}", f"s3://{BUCKET}", tmp_path_factory, s3={"endpoint": moto_endpoint},
                      delta_options=delta_s3_options(moto_endpoint))
    return DeletesLake(f"s3://{BUCKET}", written, s3_secret(moto_endpoint))


@pytest.fixture(scope="module")
def deletes_function(s3_deletes_lake, aws_environment):
    """The function over the bucket, with AWS_ENDPOINT_URL_LAMBDA pointing at it while the module runs."""
    local = start_function(s3_deletes_lake.root, aws_environment)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
        yield local
    local.stop()


@pytest.fixture(params=["local", "lambda"])
def engine_and_lake(request, local_lake):
    if request.param == "local":
        return EmbeddedEngine(local_lake.root), local_lake
    request.getfixturevalue("deletes_function")
    return LambdaEngine(FUNCTION), request.getfixturevalue("s3_deletes_lake")


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("table", TABLES)
def test_a_table_with_deletes_reads_what_duckdb_reads(engine_and_lake, query, table):
    engine, lake = engine_and_lake
    frame = answer(engine, query.format(table=table))
    same(frame, lake.expected(query.format(table=lake.reader(table))))
    assert len(frame) > 0


def test_the_deleted_rows_are_gone_and_the_snapshot_before_has_them(engine_and_lake):
    engine, lake = engine_and_lake
    for table, divisor in TABLES.items():
        kept = [i for i in WRITTEN if i % divisor]
        sql = f"SELECT count(*), count(*) FILTER (id % {divisor} = 0), sum(id) FROM {{}}"
        assert rows(answer(engine, sql.format(table))) == [(len(kept), 0, sum(kept))], table
        assert rows(answer(engine, sql.format(lake.before_deletes(table)))) == \
            [(len(WRITTEN), len(WRITTEN) - len(kept), sum(WRITTEN))], table


def test_the_catalog_counts_rows_less_deletes_from_metadata(engine_and_lake):
    engine, lake = engine_and_lake
    tables = {table.name: table for table in client.tables(engine)}
    for name in ("trips_position", "rides_vectors"):  # position deletes and vectors are counted in metadata
        assert tables[name].rows == rows(lake.expected(f"SELECT count(*) FROM {lake.reader(name)}"))[0][0], name
    # Equality deletes are not: which rows they match only a scan can tell (the README says so).
    assert tables["trips_equality"].rows == len(WRITTEN)
    # Iceberg's files are its data and delete files (six each), Delta's its data files.
    assert [tables[name].files for name in TABLES] == [12, 12, 6]
    assert (tables["trips_position"].kind, tables["rides_vectors"].kind) == ("iceberg", "delta")
    assert tables["rides_vectors"].snapshot == str(lake.written["rides_vectors"])


def test_the_tables_hold_read_time_deletes_that_the_writers_own_readers_apply(local_lake):
    """The builders' files are what the formats define, not rewrites: DuckDB lists the delete files next to
    the untouched data files, pyiceberg applies the position deletes, deltalake decodes the vectors."""
    from deltalake import DeltaTable
    from pyiceberg.table import StaticTable

    for name, content in (("trips_position", "POSITION_DELETES"), ("trips_equality", "EQUALITY_DELETES")):
        metadata = local_lake.metadata(name)
        listed = local_lake.expected(f"SELECT content, count(*) AS n, count(DISTINCT file_path) AS paths "
                                     f"FROM iceberg_metadata('{metadata}') GROUP BY content ORDER BY content")
        assert rows(listed) == sorted([(content, 6, 6), ("EXISTING", 6, 6)]), name
    scanned = StaticTable.from_metadata(local_lake.metadata("trips_position")).scan().to_arrow()
    kept = [i for i in WRITTEN if i % POSITION_DIVISOR]
    assert sorted(scanned.column("id").to_pylist()) == kept
    vectors = DeltaTable(f"{local_lake.root}/rides_vectors").deletion_vectors().read_all()
    selections = vectors.column("selection_vector").to_pylist()
    assert len(selections) == 6 and sum(row.count(False) for row in selections) == len(WRITTEN) - len(kept)


def test_the_magic_reads_them(ipython, local_lake):
    from IPython.utils.capture import capture_output

    ipython.run_line_magic("config", f"LakeMagic.lake = {local_lake.root!r}")
    for table in TABLES:
        with capture_output():
            outcome = ipython.run_cell(f"%%lakesql frame <<\n{QUERIES[1].format(table=table)}")
        assert outcome.success
        same(ipython.user_ns["frame"], local_lake.expected(QUERIES[1].format(table=local_lake.reader(table))))


# --- the fan-out -----------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_a_table_with_deletes_runs_in_one_invocation(s3_deletes_lake, deletes_function, capsys, table):
    from lakemagic.fanout import runner

    sql = f"SELECT zone, count(*) AS n, sum(id) AS ids FROM {table} GROUP BY zone ORDER BY zone"
    capsys.readouterr()
    result = runner.run(LambdaEngine(FUNCTION), sql, {}, 50, (), 8)
    assert result.stats.fanout.not_split
    same(result.to_dataframe(), s3_deletes_lake.expected(sql.replace(table, s3_deletes_lake.reader(table))))
    time.sleep(0.5)  # each invocation's log line is written just after its answer is sent
    calls = [line for line in capsys.readouterr().err.splitlines() if line.startswith("local-lambda ")]
    assert len(calls) == 1, calls  # the query ran in the call that asked for the listing


@pytest.mark.parametrize("table", TABLES)
def test_the_reason_it_is_not_split_names_the_deletes(deletes_function, table):
    from lakemagic.fanout import runner

    reason = runner.explain(LambdaEngine(FUNCTION), f"SELECT zone, count(*) FROM {table} GROUP BY zone", (), 8)
    assert reason.startswith("Runs on one invocation") and re.search("delet", reason), reason


# --- what cannot be read ---------------------------------------------------------


def test_a_delete_duckdb_cannot_read_says_so(local_lake, tmp_path):
    lake = tmp_path / "lake"
    write_iceberg_deletes(f"file://{lake}", "orc_deletes", tmp_path, "position", file_format="orc")
    shutil.copytree(Path(local_lake.root) / "rides_vectors", lake / "rides")
    log = lake / "rides" / "_delta_log"
    first = (log / f"{0:020d}.json").read_text().splitlines()
    protocol = next(json.loads(line) for line in first if '"protocol"' in line)
    protocol["protocol"]["readerFeatures"].append("rowTeleportation")  # a reader feature no reader knows
    protocol["protocol"]["writerFeatures"].append("rowTeleportation")
    (log / f"{local_lake.written['rides_vectors'] + 1:020d}.json").write_text(json.dumps(protocol) + "\n")
    engine = EmbeddedEngine(str(lake))
    _refused(engine, "SELECT count(*) FROM orc_deletes", "'ORC' not supported for deletes")
    _refused(engine, "SELECT count(*) FROM rides", "'rowTeleportation' is not supported")


def test_a_missing_or_corrupt_deletion_vector_names_its_file(local_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(Path(local_lake.root) / "rides_vectors", lake / "rides_vectors")
    engine = EmbeddedEngine(str(lake))
    vector = sorted((lake / "rides_vectors").glob("deletion_vector_*.bin"))[0]
    data = vector.read_bytes()
    vector.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the checksum no longer matches
    _refused(engine, "SELECT count(*) FROM rides_vectors", str(vector), "checksum")
    vector.unlink()
    _refused(engine, "SELECT count(*) FROM rides_vectors", str(vector), "not found")
