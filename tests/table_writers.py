"""Iceberg and Delta tables written by the formats' own writers (pyiceberg with a SQL catalog over sqlite,
deltalake), into a local lake folder or a bucket on the local S3 server: several snapshots, a schema change,
a delete, partitions; and tables whose deletes are read at query time (Iceberg position and equality delete
files, Delta deletion vectors), which neither writer makes itself. What DuckDB itself reads of them is the
reference the tests compare with."""

from __future__ import annotations

import datetime
import json
import struct
import time
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

EXTENSIONS = ("avro", "iceberg", "delta")  # all of them: a reference reads both formats


def _trips(first: int, count: int, tip: bool = False) -> pa.Table:
    rows = range(first, first + count)
    columns = {"id": pa.array(rows, pa.int64()), "zone": pa.array([i % 3 for i in rows], pa.int32()),
               "fare": pa.array([i * 1.5 for i in rows], pa.float64()),
               "pickup": pa.array([datetime.datetime(2019, 1 + i % 4, 1 + i % 28) for i in rows], pa.timestamp("us"))}
    if tip:
        columns["tip"] = pa.array([i / 10 for i in rows], pa.float64())
    return pa.table(columns)


def _catalog(warehouse: str, catalog_folder: Path, s3: dict | None):
    """pyiceberg's SQL catalog over sqlite in `catalog_folder`, its namespace `lake` made, writing under
    `warehouse` (on the moto server `s3` names, where given)."""
    from pyiceberg.catalog.sql import SqlCatalog

    properties = {"uri": f"sqlite:///{catalog_folder}/catalog.db", "warehouse": warehouse}
    if s3:
        properties.update({"s3.endpoint": s3["endpoint"], "s3.access-key-id": "testing",
                           "s3.secret-access-key": "testing", "s3.region": "us-east-1"})
    catalog = SqlCatalog("tests", **properties)
    catalog.create_namespace_if_not_exists("lake")
    return catalog


def write_iceberg(warehouse: str, name: str, catalog_folder: Path, s3: dict | None = None,
                  data_path: str | None = None) -> list[int]:
    """Table `name` under `warehouse` (`file:///...` or `s3://bucket`), partitioned by zone and the pickup's
    month: two appends, a new column, a third append, a delete. Its snapshot ids, oldest first.
    `data_path`: where its data files go instead of the table's folder (pyiceberg's write.data.path)."""
    from pyiceberg.expressions import EqualTo
    from pyiceberg.transforms import MonthTransform
    from pyiceberg.types import DoubleType

    catalog = _catalog(warehouse, catalog_folder, s3)
    table = catalog.create_table(f"lake.{name}", schema=_trips(0, 1).schema, location=f"{warehouse}/{name}",
                                 properties={"write.data.path": data_path} if data_path else {})
    with table.update_spec() as spec:
        spec.add_identity("zone")
        spec.add_field("pickup", MonthTransform(), "pickup_month")
    table.append(_trips(0, 40))
    table.append(_trips(40, 40))
    with table.update_schema() as schema:
        schema.add_column("tip", DoubleType())
    table = catalog.load_table(f"lake.{name}")
    table.append(_trips(80, 20, tip=True))
    table.delete(EqualTo("id", 3))
    catalog.engine.dispose()
    return [item.snapshot_id for item in catalog.load_table(f"lake.{name}").snapshots()]


def write_delta(location: str, storage_options: dict | None = None) -> int:
    """A Delta table at `location`, partitioned by zone: two appends, a new column, a delete. Its last version."""
    from deltalake import DeltaTable, write_deltalake

    options = {"storage_options": storage_options} if storage_options else {}
    write_deltalake(location, _trips(0, 40), partition_by=["zone"], **options)
    write_deltalake(location, _trips(40, 40), mode="append", **options)
    write_deltalake(location, _trips(80, 20, tip=True), mode="append", schema_mode="merge", **options)
    table = DeltaTable(location, **options)
    table.delete("id = 3")
    return DeltaTable(location, **options).version()


# What the merge-on-read builders delete: ids divisible by 7 by position (Iceberg position deletes, Delta
# deletion vectors), ids divisible by 5 by value (Iceberg equality deletes on id).
POSITION_DIVISOR, EQUALITY_DIVISOR = 7, 5
# Iceberg's reserved field ids of a position delete file's columns (the spec's "Position Delete Files").
_FILE_PATH_ID, _POS_ID = 2147483546, 2147483545


def write_iceberg_deletes(warehouse: str, name: str, catalog_folder: Path, kind: str,
                          s3: dict | None = None, file_format: str = "parquet") -> list[int]:
    """Iceberg v2 table `name` under `warehouse`, partitioned by zone: two appends of 40 rows each (six data
    files), then a merge-on-read delete that adds one delete file per data file and rewrites none: `kind`
    "position" (the positions of ids divisible by POSITION_DIVISOR) or "equality" (ids divisible by
    EQUALITY_DIVISOR, on column id), in delete files of `file_format` ("parquet", or "orc", which DuckDB
    does not read deletes from). Its snapshot ids, oldest first; the last one holds the deletes.
    pyiceberg 0.12 writes no delete file (its delete() rewrites files), so the files are written here with
    pyarrow and committed with pyiceberg's own manifest writer and snapshot producer."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

    catalog = _catalog(warehouse, catalog_folder, s3)
    table = catalog.create_table(f"lake.{name}", schema=_trips(0, 1).schema, location=f"{warehouse}/{name}",
                                 properties={"format-version": "2", "write.delete.mode": "merge-on-read"})
    with table.update_spec() as spec:
        spec.add_identity("zone")
    table.append(_trips(0, 40))
    table.append(_trips(40, 40))
    table = catalog.load_table(f"lake.{name}")
    id_field = table.schema().find_field("id").field_id
    deletes = []
    for task in table.scan().plan_files():
        with table.io.new_input(task.file.file_path).open() as stream:
            ids = pq.read_table(stream, columns=["id"]).column("id").to_pylist()
        if kind == "position":
            rows = pa.table([pa.array([task.file.file_path] * len(ids), pa.string()),
                             pa.array(range(len(ids)), pa.int64())],
                            schema=pa.schema([_field("file_path", pa.string(), _FILE_PATH_ID),
                                              _field("pos", pa.int64(), _POS_ID)]))
            rows = rows.filter(pa.array([i % POSITION_DIVISOR == 0 for i in ids]))
        else:
            rows = pa.table([pa.array([i for i in ids if i % EQUALITY_DIVISOR == 0], pa.int64())],
                            schema=pa.schema([_field("id", pa.int64(), id_field)]))
        path = table.location_provider().new_data_location(f"{kind}-deletes-{uuid.uuid4()}.{file_format}")
        with table.io.new_output(path).create() as stream:
            if file_format == "parquet":
                pq.write_table(rows, stream)
            else:
                orc.write_table(rows, stream)
        delete = DataFile.from_args(
            content=DataFileContent.POSITION_DELETES if kind == "position" else DataFileContent.EQUALITY_DELETES,
            file_path=path, file_format=FileFormat[file_format.upper()], partition=task.file.partition,
            record_count=rows.num_rows, file_size_in_bytes=len(table.io.new_input(path)),
            equality_ids=[id_field] if kind == "equality" else None)
        delete.spec_id = task.file.spec_id
        deletes.append(delete)
    with table.transaction() as transaction:
        producer = _row_delta(transaction, table.io)
        for delete in deletes:
            producer.append_data_file(delete)
        producer.commit()
    catalog.engine.dispose()
    return [item.snapshot_id for item in catalog.load_table(f"lake.{name}").snapshots()]


def _field(name: str, kind: pa.DataType, field_id: int) -> pa.Field:
    return pa.field(name, kind, nullable=False, metadata={"PARQUET:field_id": str(field_id)})


def _row_delta(transaction, io):
    """A snapshot producer that adds delete files: pyiceberg's fast append (which keeps every manifest of the
    parent snapshot) with its new manifest written as a delete manifest (content `deletes`). Both classes
    are pyiceberg 0.12's own; _FastAppendFiles is private to it, so a pyiceberg upgrade may move it."""
    from pyiceberg.manifest import ManifestContent, ManifestWriterV2
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self) -> ManifestContent:
            return ManifestContent.DELETES

        @property
        def _meta(self) -> dict[str, str]:
            return {**super()._meta, "content": "deletes"}

    class RowDelta(_FastAppendFiles):
        def new_manifest_writer(self, spec):
            return DeleteManifestWriter(spec, self.schema(), self.new_manifest_output(), self._snapshot_id,
                                        self._compression)

    return RowDelta(operation=Operation.DELETE, transaction=transaction, io=io)


_DV_MAGIC = 1681511377  # the Delta protocol's RoaringBitmapArray format


def write_delta_deletion_vectors(location: str, storage_options: dict | None = None) -> int:
    """A Delta table at `location` with table feature deletionVectors (as deltalake writes the protocol),
    partitioned by zone: two appends of 40 rows (six files), then a commit that gives each file a deletion
    vector of the positions of ids divisible by POSITION_DIVISOR, in one file-based ("u") vector file
    each, per the Delta protocol: deltalake 1.6.6 writes none (its delete rewrites files). Its last version."""
    from deltalake import DeltaTable, write_deltalake
    from pyroaring import BitMap
    from zmq.utils import z85  # the protocol's encoding of a vector file's UUID (pyzmq comes with ipykernel)

    options = {"storage_options": storage_options} if storage_options else {}
    write_deltalake(location, _trips(0, 40), partition_by=["zone"],
                    configuration={"delta.enableDeletionVectors": "true"}, **options)
    write_deltalake(location, _trips(40, 40), mode="append", **options)
    version = DeltaTable(location, **options).version()
    files, root = _filesystem(location, storage_options or {})
    actions = []
    for number in range(version + 1):
        with files.open_input_stream(f"{root}/_delta_log/{number:020d}.json") as stream:
            added = [json.loads(line)["add"] for line in stream.read().decode().splitlines() if '"add"' in line]
        for add in added:
            with files.open_input_file(f"{root}/{add['path']}") as stream:
                ids = pq.read_table(stream, columns=["id"]).column("id").to_pylist()
            positions = [row for row, i in enumerate(ids) if i % POSITION_DIVISOR == 0]
            # One 64-bit bitmap: the magic, one 32-bit bitmap (key 0) in Roaring's portable format.
            vector = struct.pack("<IQI", _DV_MAGIC, 1, 0) + BitMap(positions).serialize()
            name = uuid.uuid4()
            with files.open_output_stream(f"{root}/deletion_vector_{name}.bin") as stream:
                # The file: format version 1, then each vector as its size, bytes, and CRC-32, both big-endian.
                stream.write(b"\x01" + struct.pack(">I", len(vector)) + vector + struct.pack(">I", zlib.crc32(vector)))
            # The file with its vector, then the file without: a remove matches an add by path and deletion
            # vector, and the order of a commit's actions does not matter (delta-rs writes adds first).
            now = int(time.time() * 1000)
            actions.append({"add": dict(add, modificationTime=now, deletionVector={
                "storageType": "u", "pathOrInlineDv": z85.encode(name.bytes).decode(), "offset": 1,
                "sizeInBytes": len(vector), "cardinality": len(positions)})})
            actions.append({"remove": {"path": add["path"], "deletionTimestamp": now, "dataChange": True,
                                       "extendedFileMetadata": True, "partitionValues": add["partitionValues"],
                                       "size": add["size"]}})
    with files.open_output_stream(f"{root}/_delta_log/{version + 1:020d}.json") as stream:
        stream.write("".join(json.dumps(action) + "\n" for action in actions).encode())
    return version + 1


def _filesystem(location: str, storage_options: dict):
    """pyarrow's file system for a Delta table's location (a folder, or s3:// with deltalake's options), and
    the table's path in it."""
    from pyarrow import fs

    if not location.startswith("s3://"):
        return fs.LocalFileSystem(), location
    scheme, endpoint = storage_options["AWS_ENDPOINT_URL"].split("://", 1)
    return fs.S3FileSystem(access_key=storage_options["AWS_ACCESS_KEY_ID"],
                           secret_key=storage_options["AWS_SECRET_ACCESS_KEY"], region=storage_options["AWS_REGION"],
                           endpoint_override=endpoint, scheme=scheme), location[len("s3://"):]


def reference(sql: str, secret: str = ""):
    """What DuckDB itself answers, as a DataFrame, with the same extensions (and, for S3, a secret for the local server)."""
    import duckdb

    from lakelambda.database import extension_path

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for extension in EXTENSIONS:
        con.execute(f"LOAD '{extension_path(extension)}'")
    if secret:
        con.execute(f"LOAD '{extension_path('httpfs')}'")
        con.execute(secret)
    con.execute("SET TimeZone = 'UTC'")
    frame = con.execute(sql).df()
    con.close()
    return frame


def s3_secret(endpoint: str) -> str:
    host = endpoint.split("://", 1)[1]
    return ("CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
            f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)")


def delta_s3_options(endpoint: str) -> dict:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
            "AWS_S3_ADDRESSING_STYLE": "path"}

