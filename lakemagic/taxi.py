"""The NYC yellow-taxi month April 2019 as a local Parquet lake.

The demo lake uses the schema of the Ursa Labs copy of the TLC yellow-cab data
(about 7.4M trips for April 2019). The real file needs the internet, so the
same month can also be generated offline: deterministic, plausible data with
that schema, built in DuckDB SQL so millions of rows never sit in Python.

The lake built by `build_lake`::

    <lake_dir>/dataset/taxi_2019_04.parquet          one file
    <lake_dir>/partitioned/date=2019-04-01/*.parquet  same rows, Hive-partitioned
    <lake_dir>/taxi_iceberg/                          same rows, an Iceberg table (taxi_iceberg.py),
                                                      where pyiceberg is installed

DuckDB and urllib are imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Callable, TypedDict

from lakelambda.lake import DATASET_FOLDER
from lakelambda.storage import S3_SCHEME, split_s3_path
from lakelambda.sql import quote_literal

from .taxi_iceberg import TABLE as ICEBERG_TABLE
from .taxi_iceberg import pyiceberg_missing, write_table
from .taxi_model import generator_sql

if TYPE_CHECKING:
    import duckdb

TAXI_MONTH_ROWS = 7_433_139
"""Rows of the real April 2019 file; the default size of a generated month."""

SCHEMA: tuple[tuple[str, str], ...] = (
    ("vendor_id", "VARCHAR"),
    ("pickup_at", "TIMESTAMP"),
    ("dropoff_at", "TIMESTAMP"),
    ("passenger_count", "TINYINT"),
    ("trip_distance", "FLOAT"),
    ("rate_code_id", "VARCHAR"),
    ("store_and_fwd_flag", "VARCHAR"),
    ("pickup_location_id", "INTEGER"),
    ("dropoff_location_id", "INTEGER"),
    ("payment_type", "VARCHAR"),
    ("fare_amount", "FLOAT"),
    ("extra", "FLOAT"),
    ("mta_tax", "FLOAT"),
    ("tip_amount", "FLOAT"),
    ("tolls_amount", "FLOAT"),
    ("improvement_surcharge", "FLOAT"),
    ("total_amount", "FLOAT"),
    ("congestion_surcharge", "FLOAT"),
)
"""Column names and DuckDB types, in file order (the Ursa Labs schema)."""

Progress = Callable[[str], None]
"""Told, one line at a time, which step of a load starts and how far a long one is (`print` will do)."""

# How often a long step says how far it is: a month takes tens of seconds to generate.
PROGRESS_EVERY_S = 5.0

# Where the lake holds the Iceberg table, from its root.
ICEBERG_FOLDER = ICEBERG_TABLE  # a table folder of the lake, beside the partitioned ones

TLC_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data/yellow_tripdata_{month}.parquet"
DATASET_FILE = "taxi_2019_04.parquet"

# How the public TLC columns map onto SCHEMA. Integer codes the TLC stores as
# DOUBLE (RatecodeID) go through BIGINT so they become '1', not '1.0'.
_FROM_TLC: dict[str, str] = {
    "vendor_id": 'CAST("VendorID" AS BIGINT)',
    "pickup_at": '"tpep_pickup_datetime"',
    "dropoff_at": '"tpep_dropoff_datetime"',
    "passenger_count": '"passenger_count"',
    "trip_distance": '"trip_distance"',
    "rate_code_id": 'CAST("RatecodeID" AS BIGINT)',
    "store_and_fwd_flag": '"store_and_fwd_flag"',
    "pickup_location_id": '"PULocationID"',
    "dropoff_location_id": '"DOLocationID"',
    "payment_type": 'CAST("payment_type" AS BIGINT)',
    "fare_amount": '"fare_amount"',
    "extra": '"extra"',
    "mta_tax": '"mta_tax"',
    "tip_amount": '"tip_amount"',
    "tolls_amount": '"tolls_amount"',
    "improvement_surcharge": '"improvement_surcharge"',
    "total_amount": '"total_amount"',
    "congestion_surcharge": '"congestion_surcharge"',
}


class TaxiDownloadError(RuntimeError):
    """The TLC file could not be fetched; raised instead of a network traceback."""


class LakeSummary(TypedDict):
    """What `build_lake` wrote, for the caller to print or register as tables."""

    dataset: str
    partitioned: str
    iceberg: str | None  # the Iceberg table's folder; None where pyiceberg is not installed
    rows: int


def generate(path: str, rows: int = TAXI_MONTH_ROWS, seed: int = 0, progress: Progress | None = None) -> None:
    """Write `rows` synthetic April 2019 trips to one zstd Parquet file at `path`.

    The trips have the structure of the real month: pickups by hour of day
    with weekday and weekend shapes (busy Friday and Saturday nights, quiet at
    4-5am), a few Manhattan zones carrying much of the traffic over a heavy
    tail of the other zones, log-normal distances by kind of trip (longer at
    night, at weekends and to the airports), durations from distance and the
    hour's street speed (slow in rush hours), the metered fare from distance
    and slow time, JFK's $52 flat fare (rate code 2) and Newark's surcharge
    (rate code 3), the time-of-day extras, tolls (mostly airport trips), the
    congestion surcharge on trips touching Manhattan, recorded tips only on
    card payments (mostly the screen's 20/25/30%), and a few zero-distance
    trips. total_amount is the sum of its parts.

    Every value is a function of (row number, seed) via DuckDB's `hash`, so the
    same seed and rows give the same file (for a given DuckDB version, whose
    `hash` may change between releases). Rows are computed and written by
    DuckDB in parallel; only their row numbers are held in memory (8 bytes each).
    """
    _check_rows(rows)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    with _database() as con:
        # DuckDB runs range() on one thread but scans a table in parallel.
        con.execute(f"CREATE TEMP TABLE trip_ids AS SELECT range AS i FROM range({rows})")
        _copy_to_parquet(con, generator_sql(seed), path, progress=progress)


def download(path: str, month: str = "2019-04") -> None:
    """Fetch the public TLC yellow-cab file for `month` and write it to `path` in SCHEMA.

    The raw file (~100 MB) is streamed to a temporary file next to `path`, so
    it never has to fit in memory, and removed afterwards. Rows are kept as
    published, including the few the TLC dates outside the month.
    """
    import http.client
    import urllib.request

    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError(f"month must look like '2019-04', got {month!r}")
    url = TLC_URL.format(month=month)
    fd, raw = tempfile.mkstemp(suffix=".parquet", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, out, 1 << 20)
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                raise TaxiDownloadError(
                    f"Downloading {url} failed ({exc}). "
                    "Use source='generate' (--source generate) to build the month offline."
                ) from None
        with _database() as con:
            _copy_to_parquet(con, f"SELECT * FROM read_parquet({quote_literal(raw)})", path, _FROM_TLC)
    finally:
        os.remove(raw)


def build_lake(
    lake_dir: str, rows: int = TAXI_MONTH_ROWS, source: str = "generate", seed: int = 0,
    progress: Progress | None = None, lake_location: str | None = None,
) -> LakeSummary:
    """Write the taxi month into `lake_dir` as one file, a date-partitioned copy and an Iceberg table.

    `source` is "generate" (offline, `rows` trips from `seed`) or "download"
    (the real TLC file; `rows` and `seed` do not apply). Everything is built in
    a `_taxi_build_*` folder inside `lake_dir` and renamed into place, so an
    older copy is replaced whole and a failure never leaves a half-written
    dataset. Returns the paths and the row count. `progress`, if given, is
    told each step and, every PROGRESS_EVERY_S, DuckDB's percent done. The Iceberg table names
    its files under `lake_location`, the lake as its readers find it (by default `lake_dir`).
    """
    _check_rows(rows)
    if source not in ("generate", "download"):
        raise ValueError(f"source must be 'generate' or 'download', got {source!r}")

    dataset_file = os.path.join(lake_dir, DATASET_FOLDER, DATASET_FILE)
    partitioned_dir = os.path.join(lake_dir, "partitioned")
    iceberg_dir = os.path.join(lake_dir, *ICEBERG_FOLDER.split("/"))
    iceberg_location = f"{(lake_location or os.path.abspath(lake_dir)).rstrip('/')}/{ICEBERG_FOLDER}"
    os.makedirs(os.path.dirname(dataset_file), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="_taxi_build_", dir=lake_dir)
    try:
        new_file = os.path.join(staging, DATASET_FILE)
        new_partitioned = os.path.join(staging, "partitioned")
        if source == "generate":
            _tell(progress, f"generating {rows:,} trips...")
            generate(new_file, rows, seed, progress=progress)
        else:
            _tell(progress, f"downloading {TLC_URL.format(month='2019-04')}...")
            download(new_file)
        _tell(progress, "writing them again partitioned by date...")
        with _database() as con:
            _execute(con, progress,
                     f"COPY (SELECT *, CAST(pickup_at AS DATE) AS \"date\" "
                     f"FROM read_parquet({quote_literal(new_file)})) "
                     f"TO {quote_literal(new_partitioned)} "
                     f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (\"date\"))")
            (written,) = con.execute(
                f"SELECT count(*) FROM read_parquet({quote_literal(new_file)})"
            ).fetchone()
            missing = pyiceberg_missing()
            if missing:
                _tell(progress, f"note: {missing}")
            else:
                _tell(progress, f"writing them again as the Iceberg table {ICEBERG_TABLE}, partitioned by day of pickup...")
                write_table(con, new_partitioned, SCHEMA, iceberg_location, staging, progress, PROGRESS_EVERY_S)
        # A directory cannot be renamed over a non-empty one: move the old copy
        # into staging (deleted below), then move the new one in. An old Iceberg
        # table goes even where no new one is written: it would hold other rows.
        for old, new in ((partitioned_dir, new_partitioned), (iceberg_dir, os.path.join(staging, ICEBERG_TABLE))):
            if os.path.exists(old):
                os.replace(old, os.path.join(staging, f"old_{os.path.basename(old)}"))
            if os.path.exists(new):
                os.replace(new, old)
        os.replace(new_file, dataset_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"dataset": dataset_file, "partitioned": partitioned_dir, "iceberg": None if missing else iceberg_dir,
            "rows": written}


def _bucket_must_exist(s3, bucket: str) -> None:
    """Asked before the month is built, so a missing bucket costs one request, not a build and a traceback."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        problem = "does not exist" if code in ("404", "NoSuchBucket") else f"cannot be read ({code or exc})"
        raise ValueError(f"the lake's bucket {bucket} {problem}: create it (lakemagic deploy --create-bucket "
                         "makes it with the function) or name another with --lake") from None


def load_lake(lake: str, rows: int = TAXI_MONTH_ROWS, source: str = "generate", seed: int = 0, s3=None,
              progress: Progress | None = None) -> LakeSummary:
    """Put the taxi month into a lake: a local folder, or `s3://bucket[/prefix]`.

    An S3 lake is built in a local folder first and uploaded with the boto3
    client `s3` (by default one made as boto3 finds credentials and endpoint).
    Each object is put whole, and the files of an earlier load's partitioned
    copy and Iceberg table that the new one does not have are removed; the
    Iceberg table's metadata goes last, once the files it names are there.
    `progress` is told each step (see `build_lake`).
    """
    if not lake.startswith(S3_SCHEME):
        return build_lake(os.path.expanduser(lake), rows, source, seed, progress)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    bucket, prefix = split_s3_path(lake)
    _bucket_must_exist(s3, bucket)
    prefix = f"{prefix}/" if prefix else ""
    root = f"{S3_SCHEME}{bucket}/{prefix}"
    iceberg = f"{ICEBERG_FOLDER}/"
    with tempfile.TemporaryDirectory(prefix="lakemagic-load-") as folder:
        summary = build_lake(folder, rows, source, seed, progress, lake_location=root)
        _tell(progress, f"uploading to {lake}...")
        files = sorted(
            os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
            for parent, _, names in os.walk(folder) for name in names)
        files = [relative for relative in files if relative.startswith((f"{DATASET_FOLDER}/", "partitioned/", iceberg))]
        metadata = [relative for relative in files if relative.startswith(f"{iceberg}metadata/")]
        for relative in [relative for relative in files if relative not in metadata]:
            s3.upload_file(os.path.join(folder, relative), bucket, prefix + relative)
        uploaded = {prefix + relative for relative in files}
        stale = [
            item["Key"]
            for replaced in ("partitioned/", iceberg)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + replaced)
            for item in page.get("Contents", [])
            if item["Key"] not in uploaded
        ]
        for start in range(0, len(stale), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in stale[start : start + 1000]]})
        for relative in metadata:
            s3.upload_file(os.path.join(folder, relative), bucket, prefix + relative)
    return {"dataset": f"{root}{DATASET_FOLDER}/{DATASET_FILE}", "partitioned": root + "partitioned",
            "iceberg": f"{root}{iceberg}".rstrip("/") if summary["iceberg"] else None, "rows": summary["rows"]}


def _check_rows(rows: int) -> None:
    if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
        raise ValueError(f"rows must be a positive int, got {rows!r}")


def _copy_to_parquet(
    con: duckdb.DuckDBPyConnection, query: str, path: str, columns: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> None:
    """Write `query` to `path` as zstd Parquet, cast to SCHEMA in its column order.

    `columns` maps each SCHEMA column to an expression over `query`; by default
    `query` already has the SCHEMA column names.
    """
    columns = columns or {name: f'"{name}"' for name, _ in SCHEMA}
    select = ", ".join(f'CAST({columns[name]} AS {type_}) AS "{name}"' for name, type_ in SCHEMA)
    _execute(con, progress,
             f"COPY (SELECT {select} FROM ({query})) TO {quote_literal(path)} (FORMAT parquet, COMPRESSION zstd)")


def _tell(progress: Progress | None, line: str) -> None:
    if progress is not None:
        progress(line)


def _execute(con: duckdb.DuckDBPyConnection, progress: Progress | None, sql: str) -> None:
    """`con.execute(sql)`; meanwhile `progress` is told DuckDB's percent done every PROGRESS_EVERY_S."""
    if progress is None:
        con.execute(sql)
        return
    con.execute("SET enable_progress_bar = true")  # DuckDB keeps count only then
    con.execute("SET enable_progress_bar_print = false")  # and prints nothing of its own
    started, done = time.monotonic(), threading.Event()

    def report() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            percent = con.query_progress()  # made to be asked from another thread while the query runs
            if percent >= 0:
                progress(f"  {percent:.0f}% after {time.monotonic() - started:.0f} s")

    reporter = threading.Thread(target=report, name="lakemagic-load-progress", daemon=True)
    reporter.start()
    try:
        con.execute(sql)
    finally:
        done.set()
        reporter.join()


def _database() -> duckdb.DuckDBPyConnection:
    """A database for building the lake, without DuckDB's progress bar: in a notebook that bar is an ipywidget,
    left in an executed notebook as a `FloatProgress(...)` text (the `progress` callback reports instead)."""
    import duckdb  # here, so importing lakemagic does not load DuckDB

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con
