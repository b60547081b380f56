"""The taxi month as an Iceberg table, written by pyiceberg: the demo lake's `taxi_iceberg`.

    <lake>/taxi_iceberg/metadata/            the table's metadata.json files, manifest list and manifest (Avro)
    <lake>/taxi_iceberg/data/pickup_at_day=2019-04-01/*.parquet    one file a day

One snapshot, partitioned by the day of `pickup_at` (Iceberg's `day` transform), with the columns and
rows of the month's Parquet file. pyiceberg writes through a catalog: a SqlCatalog over sqlite in
the build's scratch folder, dropped with it, since a lake's table is found by its folder.

An Iceberg table names its files by absolute path, as its readers will see them. The table is
built in a scratch folder but named where it will be read from (`location`: the lake's folder,
or its S3 URL when the lake is uploaded), by a FileIO that writes every file under that location
into the scratch copy: the build replaces the old table whole, or not at all, like the rest of the
lake. The rows, and their order in each day's file, are the month's (so the same seed gives the
same table); file names, snapshot IDs and timestamps are pyiceberg's own (random and the clock).

pyiceberg (the `notebooks` extra) is imported inside the functions, so importing this module is cheap
and needs none of it.
"""

from __future__ import annotations

import glob
import itertools
import os
import time
from typing import TYPE_CHECKING, Callable

from lakelambda.sql import quote_literal

if TYPE_CHECKING:
    import duckdb

TABLE = "taxi_iceberg"
# DuckDB's types of the month's columns (taxi.SCHEMA) as Iceberg's; Iceberg has no 8-bit integer.
_ICEBERG_TYPES = {"VARCHAR": "string", "TIMESTAMP": "timestamp", "TINYINT": "int", "INTEGER": "int", "FLOAT": "float"}


def pyiceberg_missing() -> str | None:
    """Why the table cannot be written here, or None: pyiceberg with pyarrow and SQLAlchemy is installed."""
    import importlib.util

    needed = ("pyiceberg", "pyarrow", "sqlalchemy")
    if all(importlib.util.find_spec(name) for name in needed):
        return None
    return ("pyiceberg is not installed, so the lake gets no Iceberg table taxi_iceberg "
            "(pip install 'lakemagic[notebooks]' adds it)")


def write_table(con: duckdb.DuckDBPyConnection, partitioned: str, schema: tuple[tuple[str, str], ...], location: str,
                staging: str, progress: Callable[[str], None] | None = None, every_s: float = 5.0) -> None:
    """Write the Hive-partitioned month in `partitioned` (date=*/ folders) as an Iceberg table in `staging`,
    its files named under `location`; `progress` is told, every `every_s`, how many days are written."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.io import load_file_io
    from pyiceberg.io.pyarrow import _dataframe_to_data_files
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import FloatType, IntegerType, NestedField, PrimitiveType, StringType, TimestampType

    from . import iceberg_staging

    types: dict[str, PrimitiveType] = {"string": StringType(), "timestamp": TimestampType(), "int": IntegerType(),
                                       "float": FloatType()}
    fields = [NestedField(number, name, types[_ICEBERG_TYPES[type_]], required=False)
              for number, (name, type_) in enumerate(schema, start=1)]
    pickup = next(field.field_id for field in fields if field.name == "pickup_at")
    spec = PartitionSpec(PartitionField(source_id=pickup, field_id=1000, transform=DayTransform(),
                                        name="pickup_at_day"))
    catalog_folder = os.path.join(staging, "_catalog")
    os.makedirs(catalog_folder)
    catalog = SqlCatalog("lakemagic", uri=f"sqlite:///{catalog_folder}/catalog.db",
                         warehouse=f"file://{catalog_folder}", **{
                             "py-io-impl": f"{iceberg_staging.__name__}.StagingFileIO",
                             iceberg_staging.LOCATION: location, iceberg_staging.STAGING: os.path.join(staging, TABLE)})
    try:
        catalog.create_namespace("lake")
        # Created and filled in one commit: the table's first metadata file already holds the month.
        transaction = catalog.create_table_transaction("lake.taxi", Schema(*fields), partition_spec=spec,
                                                       location=location)
        arrow_schema = transaction.table_metadata.schema().as_arrow()
        io = load_file_io(catalog.properties, location)
        columns = ", ".join(f'CAST("{name}" AS {"INTEGER" if type_ == "TINYINT" else type_}) AS "{name}"'
                            for name, type_ in schema)
        days = sorted(glob.glob(os.path.join(partitioned, "date=*")))
        started = last_told = time.monotonic()
        with transaction, transaction.update_snapshot().fast_append() as append:
            counter = itertools.count()
            for done, day in enumerate(days, start=1):
                # One day at a time, so a month never sits in memory whole; pyiceberg has no public way to append
                # several batches as one snapshot, so this is what its Transaction.append does per batch.
                rows = con.execute(f"SELECT {columns} FROM read_parquet({quote_literal(os.path.join(day, '*.parquet'))})")
                batch = rows.to_arrow_table().cast(arrow_schema)
                for data_file in _dataframe_to_data_files(table_metadata=transaction.table_metadata, df=batch,
                                                          io=io, write_uuid=append.commit_uuid, counter=counter):
                    append.append_data_file(data_file)
                if progress is not None and time.monotonic() - last_told >= every_s:
                    last_told = time.monotonic()
                    progress(f"  {done} of {len(days)} days after {last_told - started:.0f} s")
    finally:
        catalog.engine.dispose()
