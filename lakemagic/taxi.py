"""The NYC yellow-taxi month April 2019 as a local Parquet lake.

The demo lake uses the schema of the Ursa Labs copy of the TLC yellow-cab data
(about 7.4M trips for April 2019). The real file needs the internet, so the
same month can also be generated offline: deterministic, plausible data with
that schema, built in DuckDB SQL so millions of rows never sit in Python.

The lake built by `build_lake`::

    <lake_dir>/dataset/taxi_2019_04.parquet          one file
    <lake_dir>/partitioned/date=2019-04-01/*.parquet  same rows, Hive-partitioned

DuckDB and urllib are imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from itertools import accumulate
from typing import TYPE_CHECKING, TypedDict

from lakelambda.lake import DATASET_FOLDER, S3_SCHEME, split_s3_path
from lakelambda.sql import quote_literal

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

# Relative trips per hour of day (NYC shape: quiet at 4am, peak at 6-7pm).
_HOUR_WEIGHTS = (
    3.0, 2.0, 1.4, 1.0, 0.8, 1.0, 2.3, 3.7, 4.4, 4.5, 4.4, 4.6,
    4.9, 4.9, 5.2, 5.3, 5.0, 5.8, 6.6, 6.3, 5.6, 5.5, 5.3, 4.3,
)

# TLC zone ids 1..265 by popularity: the busiest Manhattan zones and the
# airports first (as in the real data), then the rest in id order.
_BUSIEST_ZONES = (
    237, 161, 236, 162, 230, 186, 170, 48, 142, 234,
    163, 239, 68, 79, 107, 141, 138, 132, 164, 140,
)
_ZONES_BY_POPULARITY = _BUSIEST_ZONES + tuple(
    zone for zone in range(1, 266) if zone not in _BUSIEST_ZONES
)

# One independent uniform draw per random decision of a trip.
_DRAWS = (
    "vendor", "day", "hour", "second", "pu_mix", "pu_rank", "do_mix", "do_rank",
    "dist_r", "dist_theta", "speed", "passengers", "rate", "flag", "payment",
    "tip_skip", "tip_pct", "toll", "congestion",
)


class TaxiDownloadError(RuntimeError):
    """The TLC file could not be fetched; raised instead of a network traceback."""


class LakeSummary(TypedDict):
    """What `build_lake` wrote, for the caller to print or register as tables."""

    dataset: str
    partitioned: str
    rows: int


def generate(path: str, rows: int = TAXI_MONTH_ROWS, seed: int = 0) -> None:
    """Write `rows` synthetic April 2019 trips to one zstd Parquet file at `path`.

    Every value is a function of (row number, seed) via DuckDB's `hash`, so the
    same seed and rows give the same file (for a given DuckDB version, whose
    `hash` may change between releases). Rows are computed and written by
    DuckDB in parallel; only their row numbers are held in memory (8 bytes each).
    """
    import duckdb

    _check_rows(rows)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    with duckdb.connect() as con:
        # DuckDB runs range() on one thread but scans a table in parallel.
        con.execute(f"CREATE TEMP TABLE trip_ids AS SELECT range AS i FROM range({rows})")
        _copy_to_parquet(con, _generator_sql(seed), path)


def download(path: str, month: str = "2019-04") -> None:
    """Fetch the public TLC yellow-cab file for `month` and write it to `path` in SCHEMA.

    The raw file (~100 MB) is streamed to a temporary file next to `path`, so
    it never has to fit in memory, and removed afterwards. Rows are kept as
    published, including the few the TLC dates outside the month.
    """
    import http.client
    import urllib.request

    import duckdb

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
        with duckdb.connect() as con:
            _copy_to_parquet(con, f"SELECT * FROM read_parquet({quote_literal(raw)})", path, _FROM_TLC)
    finally:
        os.remove(raw)


def build_lake(
    lake_dir: str, rows: int = TAXI_MONTH_ROWS, source: str = "generate", seed: int = 0
) -> LakeSummary:
    """Write the taxi month into `lake_dir` as one file and as a date-partitioned copy.

    `source` is "generate" (offline, `rows` trips from `seed`) or "download"
    (the real TLC file; `rows` and `seed` do not apply). Everything is built in
    a `_taxi_build_*` folder inside `lake_dir` and renamed into place, so an
    older copy is replaced whole and a failure never leaves a half-written
    dataset. Returns the paths and the row count.
    """
    import duckdb

    _check_rows(rows)
    if source not in ("generate", "download"):
        raise ValueError(f"source must be 'generate' or 'download', got {source!r}")

    dataset_file = os.path.join(lake_dir, DATASET_FOLDER, DATASET_FILE)
    partitioned_dir = os.path.join(lake_dir, "partitioned")
    os.makedirs(os.path.dirname(dataset_file), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="_taxi_build_", dir=lake_dir)
    try:
        new_file = os.path.join(staging, DATASET_FILE)
        new_partitioned = os.path.join(staging, "partitioned")
        if source == "generate":
            generate(new_file, rows, seed)
        else:
            download(new_file)
        with duckdb.connect() as con:
            con.execute(
                f"COPY (SELECT *, CAST(pickup_at AS DATE) AS \"date\" "
                f"FROM read_parquet({quote_literal(new_file)})) "
                f"TO {quote_literal(new_partitioned)} "
                f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (\"date\"))"
            )
            (written,) = con.execute(
                f"SELECT count(*) FROM read_parquet({quote_literal(new_file)})"
            ).fetchone()
        # A directory cannot be renamed over a non-empty one: move the old copy
        # into staging (deleted below), then move the new one in.
        if os.path.exists(partitioned_dir):
            os.replace(partitioned_dir, os.path.join(staging, "old_partitioned"))
        os.replace(new_partitioned, partitioned_dir)
        os.replace(new_file, dataset_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"dataset": dataset_file, "partitioned": partitioned_dir, "rows": written}


def load_lake(lake: str, rows: int = TAXI_MONTH_ROWS, source: str = "generate", seed: int = 0, s3=None) -> LakeSummary:
    """Put the taxi month into a lake: a local folder, or `s3://bucket[/prefix]`.

    An S3 lake is built in a local folder first and uploaded with the boto3
    client `s3` (by default one made as boto3 finds credentials and endpoint).
    Each object is put whole, and partition files of an earlier load that the
    new one does not have are removed.
    """
    if not lake.startswith(S3_SCHEME):
        return build_lake(os.path.expanduser(lake), rows, source, seed)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    bucket, prefix = split_s3_path(lake)
    prefix = f"{prefix}/" if prefix else ""
    with tempfile.TemporaryDirectory(prefix="lakemagic-load-") as folder:
        summary = build_lake(folder, rows, source, seed)
        uploaded = set()
        for root, _, files in os.walk(folder):
            for name in files:
                relative = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
                if relative.startswith((f"{DATASET_FOLDER}/", "partitioned/")):
                    s3.upload_file(os.path.join(root, name), bucket, prefix + relative)
                    uploaded.add(prefix + relative)
    stale = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "partitioned/")
        for item in page.get("Contents", [])
        if item["Key"] not in uploaded
    ]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in stale[start : start + 1000]]})
    root = f"{S3_SCHEME}{bucket}/{prefix}"
    return {"dataset": f"{root}{DATASET_FOLDER}/{DATASET_FILE}", "partitioned": root + "partitioned", "rows": summary["rows"]}


def _check_rows(rows: int) -> None:
    if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
        raise ValueError(f"rows must be a positive int, got {rows!r}")


def _copy_to_parquet(
    con: duckdb.DuckDBPyConnection, query: str, path: str, columns: dict[str, str] | None = None
) -> None:
    """Write `query` to `path` as zstd Parquet, cast to SCHEMA in its column order.

    `columns` maps each SCHEMA column to an expression over `query`; by default
    `query` already has the SCHEMA column names.
    """
    columns = columns or {name: f'"{name}"' for name, _ in SCHEMA}
    select = ", ".join(f'CAST({columns[name]} AS {type_}) AS "{name}"' for name, type_ in SCHEMA)
    con.execute(
        f"COPY (SELECT {select} FROM ({query})) TO {quote_literal(path)} (FORMAT parquet, COMPRESSION zstd)"
    )


def _generator_sql(seed: int) -> str:
    """SELECT producing one plausible trip per row `i` of table trip_ids, with the SCHEMA names."""
    draws = ",\n".join(
        # hash(i, seed) XOR k, hashed again: DuckDB combines hash(a, b, k) by XOR,
        # which would make draws for different k mere bit flips of each other.
        f"((hash(xor(key, {k}::UBIGINT)) >> 11)::DOUBLE + 0.5) / 9007199254740992.0 AS u_{name}"
        for k, name in enumerate(_DRAWS, start=1)
    )
    total = sum(_HOUR_WEIGHTS)
    hour = " ".join(
        f"WHEN u_hour < {cumulative / total!r} THEN {h}"
        for h, cumulative in enumerate(accumulate(_HOUR_WEIGHTS[:-1]))
    )

    zones = "[" + ", ".join(map(str, _ZONES_BY_POPULARITY)) + "]"

    def location(mix: str, rank: str) -> str:
        # 90% Zipf (s=1) over popularity ranks 1..265, 10% uniform so every zone occurs.
        popularity = (
            f"CASE WHEN {mix} < 0.9 THEN least(CAST(floor(exp({rank} * ln(266))) AS INTEGER), 265) "
            f"ELSE CAST(floor({rank} * 265) AS INTEGER) + 1 END"
        )
        return f"{zones}[{popularity}]"

    return f"""
WITH keys AS (
    SELECT hash(i, {seed}) AS key FROM trip_ids
),
draws AS (
    SELECT {draws} FROM keys
),
trips AS (
    SELECT
        *,
        CASE {hour} ELSE 23 END AS hour,
        CAST(floor(u_day * 30) AS BIGINT) AS day,
        -- log-normal distance: median 1.7 miles, ~85% between 0.5 and 5
        round(least(exp(ln(1.7) + 0.85 * sqrt(-2 * ln(u_dist_r)) * cos(2 * pi() * u_dist_theta)), 80), 2)
            AS trip_distance,
        CASE WHEN u_rate < 0.972 THEN '1' WHEN u_rate < 0.994 THEN '2' ELSE '5' END AS rate_code_id,
        CASE WHEN u_payment < 0.72 THEN '1' WHEN u_payment < 0.99 THEN '2'
             WHEN u_payment < 0.996 THEN '3' ELSE '4' END AS payment_type
    FROM draws
),
fares AS (
    SELECT
        *,
        TIMESTAMP '2019-04-01' + to_seconds(
            day * 86400 + hour * 3600 + CAST(floor(u_second * 3600) AS BIGINT)
        ) AS pickup_at,
        -- 2 minutes to get going, then 7-17 mph, faster on long (highway) trips
        120 + CAST(round(trip_distance / ((7 + 10 * u_speed) * (1 + trip_distance / 15)) * 3600) AS BIGINT)
            AS duration_s,
        CASE WHEN rate_code_id = '2' THEN 52.0  -- JFK flat fare
             ELSE round((2.5 + 2.5 * trip_distance) * 2) / 2 END AS fare_amount,
        -- rush hour on weekdays (April 1st 2019 was a Monday), overnight every day
        CASE WHEN hour BETWEEN 16 AND 19 AND day % 7 < 5 THEN 1.0
             WHEN hour >= 20 OR hour < 6 THEN 0.5 ELSE 0.0 END AS extra,
        0.5 AS mta_tax,
        0.3 AS improvement_surcharge,
        CASE WHEN trip_distance > 8 AND u_toll < 0.5 THEN 5.76 ELSE 0.0 END AS tolls_amount,
        CASE WHEN u_congestion < 0.9 THEN 2.5 ELSE 0.0 END AS congestion_surcharge
    FROM trips
),
tipped AS (
    SELECT
        *,
        -- only card tips are recorded
        CASE WHEN payment_type = '1' AND u_tip_skip >= 0.1
             THEN round(fare_amount * (0.15 + 0.15 * u_tip_pct), 2) ELSE 0.0 END AS tip_amount
    FROM fares
)
SELECT
    CASE WHEN u_vendor < 0.35 THEN '1' ELSE '2' END AS vendor_id,
    pickup_at,
    pickup_at + to_seconds(duration_s) AS dropoff_at,
    CASE WHEN u_passengers < 0.70 THEN 1 WHEN u_passengers < 0.84 THEN 2 WHEN u_passengers < 0.88 THEN 3
         WHEN u_passengers < 0.90 THEN 4 WHEN u_passengers < 0.96 THEN 5 ELSE 6 END AS passenger_count,
    trip_distance,
    rate_code_id,
    CASE WHEN u_flag < 0.01 THEN 'Y' ELSE 'N' END AS store_and_fwd_flag,
    {location("u_pu_mix", "u_pu_rank")} AS pickup_location_id,
    {location("u_do_mix", "u_do_rank")} AS dropoff_location_id,
    payment_type,
    fare_amount,
    extra,
    mta_tax,
    tip_amount,
    tolls_amount,
    improvement_surcharge,
    round(fare_amount + extra + mta_tax + tip_amount + tolls_amount + improvement_surcharge
          + congestion_surcharge, 2) AS total_amount,
    congestion_surcharge
FROM tipped
"""
