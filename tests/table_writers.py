"""Iceberg and Delta tables written by the formats' own writers (pyiceberg with a SQL catalog over sqlite,
deltalake), into a local lake folder or a bucket on the local S3 server: several snapshots, a schema change,
a delete, partitions. What DuckDB itself reads of them is the reference the tests compare with."""

from __future__ import annotations

import datetime
from pathlib import Path

import pyarrow as pa

EXTENSIONS = ("avro", "iceberg", "delta")  # all of them: a reference reads both formats


def _trips(first: int, count: int, tip: bool = False) -> pa.Table:
    rows = range(first, first + count)
    columns = {"id": pa.array(rows, pa.int64()), "zone": pa.array([i % 3 for i in rows], pa.int32()),
               "fare": pa.array([i * 1.5 for i in rows], pa.float64()),
               "pickup": pa.array([datetime.datetime(2019, 1 + i % 4, 1 + i % 28) for i in rows], pa.timestamp("us"))}
    if tip:
        columns["tip"] = pa.array([i / 10 for i in rows], pa.float64())
    return pa.table(columns)


def write_iceberg(warehouse: str, name: str, catalog_folder: Path, s3: dict | None = None,
                  data_path: str | None = None) -> list[int]:
    """Table `name` under `warehouse` (`file:///...` or `s3://bucket`), partitioned by zone and the pickup's
    month: two appends, a new column, a third append, a delete. Its snapshot ids, oldest first.
    `data_path`: where its data files go instead of the table's folder (pyiceberg's write.data.path)."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import EqualTo
    from pyiceberg.transforms import MonthTransform
    from pyiceberg.types import DoubleType

    properties = {"uri": f"sqlite:///{catalog_folder}/catalog.db", "warehouse": warehouse}
    if s3:
        properties.update({"s3.endpoint": s3["endpoint"], "s3.access-key-id": "testing",
                           "s3.secret-access-key": "testing", "s3.region": "us-east-1"})
    catalog = SqlCatalog("tests", **properties)
    catalog.create_namespace_if_not_exists("lake")
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

