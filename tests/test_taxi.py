"""Tests for lakemagic.taxi: the April 2019 taxi month in the local lake."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from lakemagic import taxi

ROWS = 20_000

EXPECTED_SCHEMA = [
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
]
COLUMNS = ", ".join(name for name, _ in EXPECTED_SCHEMA)


def sql_path(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def parquet(path: Path | str) -> str:
    return f"read_parquet({sql_path(path)})"


def partitioned(lake: Path) -> str:
    return f"read_parquet({sql_path(lake / 'partitioned' / '*' / '*.parquet')}, hive_partitioning = true)"


def describe(relation: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in duckdb.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def checksum(relation: str) -> tuple[int, int]:
    """Row count and an order-independent hash of all schema columns."""
    return duckdb.sql(
        f"SELECT count(*), sum(hash({COLUMNS})::HUGEINT) FROM {relation}"
    ).fetchone()


def leftovers(lake: Path) -> list[str]:
    return [p.name for p in lake.iterdir() if p.name.startswith(("_", "."))]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake_dir = tmp_path_factory.mktemp("lake")
    summary = taxi.build_lake(str(lake_dir), rows=ROWS, seed=0)
    assert summary["rows"] == ROWS
    assert summary["dataset"] == str(lake_dir / "dataset" / "taxi_2019_04.parquet")
    assert summary["partitioned"] == str(lake_dir / "partitioned")
    return lake_dir


@pytest.fixture(scope="module")
def trips(lake: Path) -> str:
    return parquet(lake / "dataset" / "taxi_2019_04.parquet")


def test_single_file_has_the_ursa_labs_schema(trips: str) -> None:
    assert describe(trips) == EXPECTED_SCHEMA
    assert duckdb.sql(f"SELECT count(*) FROM {trips}").fetchone() == (ROWS,)


def test_default_size_is_the_real_month() -> None:
    assert taxi.TAXI_MONTH_ROWS == 7_433_139


def test_same_seed_gives_identical_file_other_seed_differs(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a.parquet", "b.parquet", "c.parquet")]
    taxi.generate(str(paths[0]), 5_000, seed=7)
    taxi.generate(str(paths[1]), 5_000, seed=7)
    taxi.generate(str(paths[2]), 5_000, seed=8)

    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert digests[0] == digests[1]
    rows = [duckdb.sql(f"SELECT * FROM {parquet(p)}").fetchall() for p in paths]
    assert rows[0] == rows[1]
    assert len(rows[2]) == 5_000
    assert rows[2] != rows[0]
    assert checksum(parquet(paths[2])) != checksum(parquet(paths[0]))


def test_all_265_zones_with_a_clear_top(trips: str) -> None:
    for column in ("pickup_location_id", "dropoff_location_id"):
        zones, low, high = duckdb.sql(
            f"SELECT count(DISTINCT {column}), min({column}), max({column}) FROM {trips}"
        ).fetchone()
        assert (zones, low, high) == (265, 1, 265)

    top, median = duckdb.sql(
        f"""SELECT max(n), median(n) FROM (
                SELECT pickup_location_id, count(*) AS n FROM {trips} GROUP BY ALL)"""
    ).fetchone()
    assert top >= 5 * median


def test_pickups_in_april_with_a_daily_rhythm(trips: str) -> None:
    first, last, days = duckdb.sql(
        f"SELECT min(pickup_at), max(pickup_at), count(DISTINCT CAST(pickup_at AS DATE)) FROM {trips}"
    ).fetchone()
    assert datetime(2019, 4, 1) <= first and last < datetime(2019, 5, 1)
    assert days == 30

    by_hour = dict(duckdb.sql(f"SELECT hour(pickup_at), count(*) FROM {trips} GROUP BY ALL").fetchall())
    assert by_hour[18] > 3 * by_hour[4]
    assert min(by_hour, key=by_hour.get) in (3, 4, 5)


def test_trips_take_minutes_not_hours(trips: str) -> None:
    shortest, median, longest = duckdb.sql(
        f"SELECT min(dropoff_at - pickup_at), median(dropoff_at - pickup_at), max(dropoff_at - pickup_at) FROM {trips}"
    ).fetchone()
    assert shortest > timedelta(0)
    assert timedelta(minutes=3) < median < timedelta(minutes=30)
    assert longest < timedelta(hours=2)


def test_distances_fares_and_totals_are_plausible(trips: str) -> None:
    short_share, median_distance, long_trips = duckdb.sql(
        f"""SELECT avg(CASE WHEN trip_distance BETWEEN 0.5 AND 5 THEN 1 ELSE 0 END),
                   median(trip_distance), count(*) FILTER (trip_distance > 15) FROM {trips}"""
    ).fetchone()
    assert short_share > 0.7
    assert 1 < median_distance < 3
    assert long_trips > 0

    # metered fare: 2.50 flag drop + 2.50 a mile
    (metered_off,) = duckdb.sql(
        f"SELECT max(abs(fare_amount - (2.5 + 2.5 * trip_distance))) FROM {trips} WHERE rate_code_id = '1'"
    ).fetchone()
    assert metered_off <= 0.25 + 1e-4

    (total_off,) = duckdb.sql(
        f"""SELECT max(abs(total_amount - (fare_amount + extra + mta_tax + tip_amount + tolls_amount
                                           + improvement_surcharge + congestion_surcharge)))
            FROM {trips}"""
    ).fetchone()
    assert total_off < 0.01


def test_tips_come_from_card_payments(trips: str) -> None:
    tipped = dict(
        duckdb.sql(
            f"SELECT payment_type, avg(CASE WHEN tip_amount > 0 THEN 1 ELSE 0 END) FROM {trips} GROUP BY ALL"
        ).fetchall()
    )
    assert set(tipped) == {"1", "2", "3", "4"}
    assert tipped["1"] > 0.8
    assert all(share == 0 for payment, share in tipped.items() if payment != "1")


def test_passengers_one_to_six_mostly_one(trips: str) -> None:
    counts = dict(duckdb.sql(f"SELECT passenger_count, count(*) FROM {trips} GROUP BY ALL").fetchall())
    assert set(counts) == {1, 2, 3, 4, 5, 6}
    assert counts[1] > ROWS / 2


def test_partitioned_copy_has_the_same_rows(lake: Path, trips: str) -> None:
    folders = sorted(p.name for p in (lake / "partitioned").iterdir())
    assert folders == [f"date=2019-04-{day:02d}" for day in range(1, 31)]

    parts = partitioned(lake)
    assert describe(parts) == EXPECTED_SCHEMA + [("date", "DATE")]
    assert checksum(parts) == checksum(trips)

    per_day_single = duckdb.sql(
        f"SELECT CAST(pickup_at AS DATE) AS d, count(*) FROM {trips} GROUP BY d ORDER BY d"
    ).fetchall()
    per_day_parts = duckdb.sql(f"SELECT date, count(*) FROM {parts} GROUP BY date ORDER BY date").fetchall()
    assert per_day_parts == per_day_single
    assert per_day_parts[0][0] == date(2019, 4, 1)

    (misplaced,) = duckdb.sql(
        f"SELECT count(*) FROM {parts} WHERE date <> CAST(pickup_at AS DATE)"
    ).fetchone()
    assert misplaced == 0


def test_building_twice_replaces_cleanly(tmp_path: Path) -> None:
    other = tmp_path / "dataset" / "other.parquet"
    other.parent.mkdir()
    other.write_bytes(b"someone else's data")

    taxi.build_lake(str(tmp_path), rows=6_000, seed=1)
    # An older copy may have other partitions, e.g. the real file has trips dated March.
    stale = tmp_path / "partitioned" / "date=2019-03-31"
    stale.mkdir()
    shutil.copy(tmp_path / "partitioned" / "date=2019-04-01" / "data_0.parquet", stale)
    summary = taxi.build_lake(str(tmp_path), rows=4_000, seed=2)

    fresh = tmp_path / "fresh"
    taxi.generate(str(fresh), 4_000, seed=2)
    assert summary["rows"] == 4_000
    assert checksum(parquet(summary["dataset"])) == checksum(parquet(fresh))
    assert checksum(partitioned(tmp_path)) == checksum(parquet(fresh))
    assert not stale.exists()
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path / "dataset")) == ["other.parquet", "taxi_2019_04.parquet"]
    assert other.read_bytes() == b"someone else's data"


def test_failed_build_keeps_the_old_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taxi.build_lake(str(tmp_path), rows=3_000, seed=1)
    before = checksum(parquet(tmp_path / "dataset" / "taxi_2019_04.parquet"))

    def broken_generate(path: str, rows: int, seed: int) -> None:
        Path(path).write_bytes(b"half a parquet file")
        raise OSError("disk full")

    monkeypatch.setattr(taxi, "generate", broken_generate)
    with pytest.raises(OSError, match="disk full"):
        taxi.build_lake(str(tmp_path), rows=5_000, seed=2)

    assert checksum(parquet(tmp_path / "dataset" / "taxi_2019_04.parquet")) == before
    assert checksum(partitioned(tmp_path)) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("rows", [0, -5, 2.5, "100", True])
def test_rows_must_be_a_positive_int(tmp_path: Path, rows: object) -> None:
    with pytest.raises(ValueError, match="rows must be a positive int"):
        taxi.build_lake(str(tmp_path / "lake"), rows=rows)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rows must be a positive int"):
        taxi.generate(str(tmp_path / "x.parquet"), rows)  # type: ignore[arg-type]
    assert not (tmp_path / "lake").exists()
    assert not (tmp_path / "x.parquet").exists()


def test_unknown_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'generate' or 'download'"):
        taxi.build_lake(str(tmp_path), rows=10, source="s3")


def test_download_failure_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(taxi.TaxiDownloadError, match="--source generate") as info:
        taxi.build_lake(str(tmp_path), source="download")

    assert "yellow_tripdata_2019-04.parquet" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert os.listdir(tmp_path) == ["dataset"]  # no raw download, no staging folder
    assert os.listdir(tmp_path / "dataset") == []


def test_download_converts_tlc_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLC file's names and types (RatecodeID as DOUBLE, ids as BIGINT) map onto the schema."""
    tlc_file = tmp_path / "tlc.parquet"
    duckdb.sql(
        f"""COPY (SELECT 2::BIGINT AS VendorID,
                         TIMESTAMP '2019-04-03 08:15:00' AS tpep_pickup_datetime,
                         TIMESTAMP '2019-04-03 08:31:00' AS tpep_dropoff_datetime,
                         1.0::DOUBLE AS passenger_count, 2.3::DOUBLE AS trip_distance,
                         1.0::DOUBLE AS RatecodeID, 'N' AS store_and_fwd_flag,
                         237::BIGINT AS PULocationID, 161::BIGINT AS DOLocationID,
                         1::BIGINT AS payment_type, 11.5::DOUBLE AS fare_amount,
                         0.0::DOUBLE AS extra, 0.5::DOUBLE AS mta_tax, 2.96::DOUBLE AS tip_amount,
                         0.0::DOUBLE AS tolls_amount, 0.3::DOUBLE AS improvement_surcharge,
                         17.76::DOUBLE AS total_amount, 2.5::DOUBLE AS congestion_surcharge,
                         NULL::DOUBLE AS airport_fee)
            TO {sql_path(tlc_file)} (FORMAT parquet)"""
    )
    requested = []

    def fake_urlopen(url: str, timeout: float) -> io.BufferedReader:
        requested.append(url)
        return open(tlc_file, "rb")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    summary = taxi.build_lake(str(tmp_path / "lake"), source="download")

    assert requested == ["https://d37ci6vzurychx.cloudfront.net/trip-data/yellow_tripdata_2019-04.parquet"]
    assert summary["rows"] == 1
    assert describe(parquet(summary["dataset"])) == EXPECTED_SCHEMA
    row = duckdb.sql(
        f"SELECT vendor_id, rate_code_id, payment_type, pickup_location_id, passenger_count, date "
        f"FROM {partitioned(tmp_path / 'lake')}"
    ).fetchall()
    assert row == [("2", "1", "1", 237, 1, date(2019, 4, 3))]
    assert leftovers(tmp_path / "lake") == []
