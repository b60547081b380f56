"""Tests for lakemagic.taxi: the April 2019 taxi month in the local lake."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import boto3
import duckdb
import pytest

from lakelambda.database import extension_path
from lakemagic import taxi, taxi_model
from servers import FAKE_KEYS

ROWS = 20_000
MONTH_ROWS = 200_000
"""Rows of the generated month the tests of its structure look at."""

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


def iceberg_reader() -> duckdb.DuckDBPyConnection:
    """DuckDB with the avro and iceberg extensions the Lambda package ships, loaded from their wheels."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("avro", "iceberg"):
        con.execute(f"LOAD {sql_path(extension_path(name))}")
    return con


def current_metadata(table: Path) -> Path:
    """The table's one metadata file: a build writes the table in one commit, replacing any older table."""
    (found,) = (table / "metadata").glob("*.metadata.json")
    return found


def leftovers(lake: Path) -> list[str]:
    return [p.name for p in lake.iterdir() if p.name.startswith(("_", "."))]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake_dir = tmp_path_factory.mktemp("lake")
    summary = taxi.build_lake(str(lake_dir), rows=ROWS, seed=0)
    assert summary["rows"] == ROWS
    assert summary["dataset"] == str(lake_dir / "dataset" / "taxi_2019_04.parquet")
    assert summary["partitioned"] == str(lake_dir / "partitioned")
    assert summary["iceberg"] == str(lake_dir / taxi.ICEBERG_FOLDER)
    return lake_dir


@pytest.fixture(scope="module")
def trips(lake: Path) -> str:
    return parquet(lake / "dataset" / "taxi_2019_04.parquet")


@pytest.fixture(scope="module")
def month_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("month") / "month.parquet"
    taxi.generate(str(path), MONTH_ROWS, seed=0)
    return path


@pytest.fixture(scope="module")
def month(month_file: Path) -> str:
    """A bigger generated month, for its averages and shapes."""
    return parquet(month_file)


def one(query: str) -> tuple:
    return duckdb.sql(query).fetchone()


def by_key(query: str) -> dict:
    """The first column of each row mapped to the second (or to the rest)."""
    return {row[0]: row[1] if len(row) == 2 else row[1:] for row in duckdb.sql(query).fetchall()}


MINUTES = "(epoch(dropoff_at - pickup_at) / 60)"
WEEKEND = "dayofweek(pickup_at) IN (0, 6)"


def test_single_file_has_the_ursa_labs_schema(trips: str) -> None:
    assert describe(trips) == EXPECTED_SCHEMA
    assert duckdb.sql(f"SELECT count(*) FROM {trips}").fetchone() == (ROWS,)


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

    # the meter: 2.50 flag drop + 2.50 a mile + 50 cents a minute of slow
    # traffic (beyond 5 minutes a mile), in 50-cent steps
    (metered_off,) = duckdb.sql(
        f"""SELECT max(abs(fare_amount - (2.5 + 2.5 * trip_distance + 0.5 * greatest(
                       epoch(dropoff_at - pickup_at) / 60 - 5 * trip_distance, 0))))
            FROM {trips} WHERE rate_code_id = '1'"""
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


def test_schema_is_the_declared_tlc_schema(month: str) -> None:
    assert [(name, type_) for name, type_ in taxi.SCHEMA] == EXPECTED_SCHEMA
    assert list(taxi._FROM_TLC) == [name for name, _ in EXPECTED_SCHEMA]
    assert describe(month) == EXPECTED_SCHEMA


def test_same_seed_gives_the_same_month(tmp_path: Path, month_file: Path, month: str) -> None:
    again = tmp_path / "again.parquet"
    taxi.generate(str(again), MONTH_ROWS, seed=0)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(month_file.read_bytes()).digest()
    aggregate = (
        "SELECT pickup_location_id, count(*), sum(total_amount), sum(trip_distance) FROM {} GROUP BY 1 ORDER BY 1"
    )
    assert duckdb.sql(aggregate.format(parquet(again))).fetchall() == duckdb.sql(aggregate.format(month)).fetchall()


def test_values_are_valid(month: str) -> None:
    low_distance, low_fare, low_amount, negative_time, passengers, zero_share, far = one(
        f"""SELECT min(trip_distance), min(fare_amount),
                   least(min(extra), min(mta_tax), min(tip_amount), min(tolls_amount),
                         min(improvement_surcharge), min(congestion_surcharge), min(total_amount)),
                   count(*) FILTER (dropoff_at <= pickup_at),
                   list_sort(list_distinct(list(passenger_count))),
                   avg(CASE WHEN trip_distance = 0 THEN 1 ELSE 0 END),
                   max(trip_distance)
            FROM {month}"""
    )
    assert low_distance == 0 and 0 < zero_share < 0.02  # a few odd zero-distance trips, as in the real data
    assert low_fare >= 2.5 and low_amount >= 0 and negative_time == 0
    assert passengers == [1, 2, 3, 4, 5, 6]
    assert 20 < far <= 60
    (moved,) = one(
        f"SELECT count(*) FROM {month} WHERE trip_distance = 0 AND dropoff_location_id <> pickup_location_id"
    )
    assert moved == 0

    (total_off,) = one(
        f"""SELECT max(abs(total_amount - (fare_amount + extra + mta_tax + tip_amount + tolls_amount
                                           + improvement_surcharge + congestion_surcharge))) FROM {month}"""
    )
    assert total_off < 0.01


def test_fares_follow_distance_and_time(month: str) -> None:
    metered = f"(SELECT *, {MINUTES} AS minutes FROM {month} WHERE rate_code_id = '1')"
    per_mile = by_key(
        f"""SELECT CASE WHEN trip_distance < 5 THEN 'short' WHEN trip_distance < 10 THEN 'medium' ELSE 'long' END,
                   sum(fare_amount) / sum(trip_distance)
            FROM {metered} WHERE trip_distance >= 2 AND trip_distance < 20 GROUP BY 1"""
    )
    assert all(2.5 < rate < 4.5 for rate in per_mile.values()), per_mile
    assert max(per_mile.values()) < 1.5 * min(per_mile.values())

    short, long = one(
        f"""SELECT avg(fare_amount) FILTER (trip_distance < 2), avg(fare_amount) FILTER (trip_distance > 10)
            FROM {metered}"""
    )
    assert long > 5 * short

    # the same distance costs more when the trip takes longer
    quick, slow = one(
        f"""SELECT avg(fare_amount) FILTER (minutes < q[1]), avg(fare_amount) FILTER (minutes > q[2])
            FROM {metered}, (SELECT quantile_cont({MINUTES}, [0.25, 0.75]) AS q
                             FROM {month} WHERE rate_code_id = '1' AND trip_distance BETWEEN 1.5 AND 2.5)
            WHERE trip_distance BETWEEN 1.5 AND 2.5"""
    )
    assert slow > quick + 2


def test_fare_correlates_with_distance_and_jfk_pickups_cost_more(month: str) -> None:
    correlation, overall = one(f"SELECT corr(fare_amount, trip_distance), avg(fare_amount) FROM {month}")
    assert correlation > 0.8
    (jfk,) = one(f"SELECT avg(fare_amount) FROM {month} WHERE pickup_location_id = {taxi_model.JFK}")
    assert jfk > 2.5 * overall


def test_trips_take_longer_when_longer_and_in_rush_hour(month: str) -> None:
    short, medium = one(
        f"""SELECT avg({MINUTES}) FILTER (trip_distance BETWEEN 1 AND 2),
                   avg({MINUTES}) FILTER (trip_distance BETWEEN 5 AND 10) FROM {month}"""
    )
    assert medium > 2.5 * short

    mph = by_key(
        f"""SELECT CASE WHEN hour(pickup_at) IN (8, 17) THEN 'rush' WHEN hour(pickup_at) IN (3, 4) THEN 'night' END,
                   avg(trip_distance / ({MINUTES} / 60))
            FROM {month}
            WHERE trip_distance BETWEEN 1 AND 3 AND NOT {WEEKEND} AND hour(pickup_at) IN (3, 4, 8, 17)
            GROUP BY 1"""
    )
    assert mph["rush"] < 0.7 * mph["night"]
    assert 5 < mph["rush"] < 15 and mph["night"] < 30


def test_tips_depend_on_payment_type(month: str) -> None:
    by_payment = by_key(
        f"""SELECT payment_type, count(*) / sum(count(*)) OVER (), max(tip_amount),
                   sum(tip_amount) / sum(fare_amount), avg(tip_amount / fare_amount),
                   avg(CASE WHEN tip_amount = 0 THEN 1 ELSE 0 END),
                   median(tip_amount / fare_amount) FILTER (tip_amount > 0)
            FROM {month} GROUP BY 1"""
    )
    share = {payment: values[0] for payment, values in by_payment.items()}
    assert 0.6 < share["1"] < 0.8 and 0.2 < share["2"] < 0.35 and share["3"] + share["4"] < 0.02

    _, cash_max_tip, *_ = by_payment["2"]
    assert cash_max_tip == 0
    assert by_payment["3"][1] == by_payment["4"][1] == 0

    _, _, card_rate, card_mean_rate, card_untipped, card_median_rate = by_payment["1"]
    assert 0.10 < card_rate < 0.30 and 0.10 < card_mean_rate < 0.30
    assert 0.02 < card_untipped < 0.2
    assert 0.15 <= card_median_rate <= 0.25
    # the most common card tip is the payment screen's 20%
    (usual,) = one(
        f"SELECT mode(round(tip_amount / fare_amount, 2)) FROM {month} WHERE payment_type = '1' AND tip_amount > 0"
    )
    assert usual == pytest.approx(0.20)


def test_airport_trips_are_long_and_expensive(month: str) -> None:
    overall_fare, overall_distance, overall_tolled = one(
        f"SELECT avg(fare_amount), avg(trip_distance), avg(CASE WHEN tolls_amount > 0 THEN 1 ELSE 0 END) FROM {month}"
    )
    by_pickup = by_key(
        f"""SELECT pickup_location_id, avg(fare_amount), avg(trip_distance),
                   avg(CASE WHEN tolls_amount > 0 THEN 1 ELSE 0 END)
            FROM {month} WHERE pickup_location_id IN ({taxi_model.JFK}, {taxi_model.LAGUARDIA}) GROUP BY 1"""
    )
    jfk_fare, jfk_distance, jfk_tolled = by_pickup[taxi_model.JFK]
    assert jfk_fare > 3 * overall_fare and jfk_distance > 4 * overall_distance
    assert jfk_tolled > 0.25 > overall_tolled
    lga_fare, lga_distance, _ = by_pickup[taxi_model.LAGUARDIA]
    assert lga_fare > 2 * overall_fare and lga_distance > 2 * overall_distance

    # JFK's flat fare (rate code 2): $52 in 2019, only on trips to or from JFK; Newark is rate code 3
    rates = by_key(
        f"""SELECT rate_code_id, count(*) / sum(count(*)) OVER (), min(fare_amount), max(fare_amount),
                   bool_and({taxi_model.JFK} IN (pickup_location_id, dropoff_location_id)),
                   bool_and({taxi_model.NEWARK} IN (pickup_location_id, dropoff_location_id))
            FROM {month} GROUP BY 1"""
    )
    assert rates["1"][0] > 0.9
    assert 0.01 < rates["2"][0] < 0.05 and rates["2"][1:4] == (52, 52, True)
    assert rates["3"][4] and rates["3"][1] > 40  # metered plus the $17.50 Newark surcharge
    (jfk_flat,) = one(
        f"SELECT avg(CASE WHEN rate_code_id = '2' THEN 1 ELSE 0 END) FROM {month} WHERE pickup_location_id = {taxi_model.JFK}"
    )
    assert jfk_flat > 0.6


def test_pickups_follow_the_hour_of_day(month: str) -> None:
    by_hour = by_key(f"SELECT hour(pickup_at), count(*) FROM {month} GROUP BY 1")
    assert len(by_hour) == 24
    assert min(by_hour, key=by_hour.get) in (3, 4, 5)
    assert max(by_hour, key=by_hour.get) in range(15, 22)
    assert max(by_hour.values()) > 4 * min(by_hour.values())


def test_weekdays_and_weekends_have_different_days(month: str) -> None:
    # share of each kind of day's pickups by hour
    share = by_key(
        f"""SELECT kind || '@' || hour, n / sum(n) OVER (PARTITION BY kind) FROM (
                SELECT CASE WHEN {WEEKEND} THEN 'weekend' WHEN dayofweek(pickup_at) = 5 THEN 'friday'
                            ELSE 'weekday' END AS kind,
                       hour(pickup_at) AS hour, count(*) AS n
                FROM {month} GROUP BY ALL)"""
    )

    def hours(kind: str, *hours: int) -> float:
        return sum(share[f"{kind}@{hour}"] for hour in hours)

    small_hours, morning, night = (0, 1, 2, 3), (7, 8, 9), (21, 22, 23)
    assert hours("weekend", *small_hours) > 2.5 * hours("weekday", *small_hours)  # Friday and Saturday nights
    assert hours("weekday", *morning) > 2 * hours("weekend", *morning)  # the morning rush
    assert hours("friday", *night) > 1.1 * hours("weekday", *night)

    per_day = by_key(
        f"SELECT dayofweek(pickup_at), count(*) / count(DISTINCT CAST(pickup_at AS DATE)) FROM {month} GROUP BY 1"
    )
    assert per_day[0] < 0.9 * per_day[5]  # Sundays are quieter than Fridays

    # weekend trips are a little longer
    weekday_distance, weekend_distance = one(
        f"SELECT avg(trip_distance) FILTER (NOT {WEEKEND}), avg(trip_distance) FILTER ({WEEKEND}) FROM {month}"
    )
    assert weekend_distance > 1.03 * weekday_distance


def test_a_few_manhattan_zones_dominate(month: str) -> None:
    counts = by_key(f"SELECT pickup_location_id, count(*) FROM {month} GROUP BY 1")
    ranked = sorted(counts, key=counts.get, reverse=True)
    top = set(ranked[:10])
    assert sum(counts[zone] for zone in top) > 0.3 * MONTH_ROWS
    assert len(top & {237, 161, 236, 162, 230, 186, 48, 170, 142, 234}) >= 8
    assert len(counts) == 265
    # heavy tail: the busiest zone has many times the median, the quiet half few trips
    assert counts[ranked[0]] > 20 * counts[ranked[132]]
    assert sum(counts[zone] for zone in ranked[132:]) < 0.1 * MONTH_ROWS


def test_zones_differ_in_their_trips(month: str) -> None:
    fares = by_key(
        f"""SELECT pickup_location_id, avg(fare_amount) FROM {month}
            WHERE pickup_location_id NOT IN ({taxi_model.JFK}, {taxi_model.LAGUARDIA}, {taxi_model.NEWARK})
            GROUP BY 1 HAVING count(*) >= 500"""
    )
    assert len(fares) >= 30
    assert max(fares.values()) > 1.2 * min(fares.values())


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


def test_iceberg_table_holds_the_month_one_file_a_day_of_pickup(lake: Path, trips: str) -> None:
    table = lake / taxi.ICEBERG_FOLDER
    metadata = current_metadata(table)
    with iceberg_reader() as con:
        scan = f"iceberg_scan({sql_path(metadata)})"
        # The same rows (passenger_count is an int: Iceberg has no 8-bit integer).
        same_types = COLUMNS.replace("passenger_count", "CAST(passenger_count AS INTEGER)")
        checksums = [con.execute(f"SELECT count(*), sum(hash({same_types})::HUGEINT) FROM {rows}").fetchone()
                     for rows in (scan, trips)]
        assert checksums[0] == checksums[1] and checksums[0][0] == ROWS
        (snapshots,) = con.execute(f"SELECT count(*) FROM iceberg_snapshots({sql_path(metadata)})").fetchone()
        files = con.execute(f"SELECT file_path, record_count FROM iceberg_metadata({sql_path(metadata)})").fetchall()
        days = dict(con.execute(f"SELECT CAST(pickup_at AS DATE) AS day, count(*) FROM {trips} GROUP BY day").fetchall())
    assert snapshots == 1
    # Named where the lake's readers find them (inside the lake), one a day under Iceberg's day transform's folder.
    assert {Path(path).parent.relative_to(table / "data").as_posix(): rows for path, rows in files} == {
        f"pickup_at_day={day}": rows for day, rows in days.items()}
    assert all(Path(path).is_file() for path, _ in files)
    assert not [path for path in (table / "data").rglob("*") if path.is_file() and str(path) not in dict(files)]
    assert leftovers(lake) == []


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
    assert sorted(path.name for path in (tmp_path / "dataset").glob("*.parquet")) == ["other.parquet", "taxi_2019_04.parquet"]
    assert sorted(os.listdir(tmp_path / taxi.ICEBERG_FOLDER)) == ["data", "metadata"]
    with iceberg_reader() as con:  # the Iceberg table too holds the new rows, in files of its own alone
        scan = f"iceberg_scan({sql_path(current_metadata(tmp_path / taxi.ICEBERG_FOLDER))})"
        assert con.execute(f"SELECT count(*) FROM {scan}").fetchone() == (4_000,)
        (listed,) = con.execute(f"SELECT count(*) FROM iceberg_metadata{scan[len('iceberg_scan'):]}").fetchone()
    assert len(list((tmp_path / taxi.ICEBERG_FOLDER / "data").rglob("*.parquet"))) == listed
    assert other.read_bytes() == b"someone else's data"


def test_failed_build_keeps_the_old_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taxi.build_lake(str(tmp_path), rows=3_000, seed=1)
    before = checksum(parquet(tmp_path / "dataset" / "taxi_2019_04.parquet"))

    def broken_generate(path: str, rows: int, seed: int, progress=None) -> None:
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


def test_a_build_tells_its_steps_and_how_far_a_long_one_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taxi, "PROGRESS_EVERY_S", 0.02)  # so that even a small month is a long step
    told: list[str] = []
    summary = taxi.build_lake(str(tmp_path), rows=300_000, seed=0, progress=told.append)
    assert summary["rows"] == 300_000
    steps = [line for line in told if not line.startswith("  ")]
    assert steps == ["generating 300,000 trips...", "writing them again partitioned by date...",
                     "writing them again as the Iceberg table taxi_iceberg, partitioned by day of pickup..."]
    percents = [int(percent.group(1)) for percent in (re.fullmatch(r"  (\d+)% after \d+ s", line) for line in told)
                if percent]
    assert percents and all(0 <= percent <= 100 for percent in percents)
    days = [line for line in told if re.fullmatch(r"  \d+ of 30 days after \d+ s", line)]
    assert days and len(days) + len(steps) + len(percents) == len(told)


def test_without_pyiceberg_the_lake_has_no_iceberg_table_and_says_so(tmp_path: Path, monkeypatch) -> None:
    taxi.build_lake(str(tmp_path), rows=2_000, seed=1)
    monkeypatch.setitem(sys.modules, "pyiceberg", None)  # as if not installed: importing it fails
    told: list[str] = []
    summary = taxi.build_lake(str(tmp_path), rows=3_000, seed=2, progress=told.append)
    assert summary["iceberg"] is None and summary["rows"] == 3_000
    assert "note: pyiceberg is not installed, so the lake gets no Iceberg table taxi_iceberg (pip install " \
           "'lakemagic[notebooks]' adds it)" in told
    assert sorted(os.listdir(tmp_path / "dataset")) == ["taxi_2019_04.parquet"]  # the old table held other rows
    assert leftovers(tmp_path) == []


def test_loading_an_s3_lake_names_the_iceberg_tables_files_in_the_bucket(moto_endpoint, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **FAKE_KEYS)
    s3.create_bucket(Bucket="taxi-iceberg")
    lake = "s3://taxi-iceberg/lake"

    def keys(prefix: str) -> list[str]:
        return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="taxi-iceberg", Prefix=prefix)
                for item in page.get("Contents", [])]

    taxi.load_lake(lake, rows=3_000, seed=1, s3=s3)
    first = set(keys(f"lake/{taxi.ICEBERG_FOLDER}/"))
    summary = taxi.load_lake(lake, rows=2_000, seed=2, s3=s3)
    assert summary["iceberg"] == f"s3://taxi-iceberg/lake/{taxi.ICEBERG_FOLDER}"
    table = keys(f"lake/{taxi.ICEBERG_FOLDER}/")
    assert not first & set(table)  # the earlier load's files are gone, so its metadata cannot be mistaken for current
    (metadata,) = [key for key in table if key.endswith(".metadata.json")]

    host = moto_endpoint.split("://", 1)[1]
    with iceberg_reader() as con:
        con.execute(f"LOAD {sql_path(extension_path('httpfs'))}")
        con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', ENDPOINT '{host}', "
                    "URL_STYLE 'path', USE_SSL false)")
        scan = f"iceberg_scan('s3://taxi-iceberg/{metadata}')"
        assert con.execute(f"SELECT count(*) FROM {scan}").fetchone() == (2_000,)
        files = [path for (path,) in con.execute(f"SELECT file_path FROM iceberg_metadata('s3://taxi-iceberg/{metadata}')").fetchall()]
    assert files and all(path.startswith(f"{summary['iceberg']}/data/pickup_at_day=2019-04-") for path in files)
    assert sorted(f"s3://taxi-iceberg/{key}" for key in table if "/data/" in key) == sorted(files)


def test_lakemagic_load_prints_its_steps(tmp_path: Path) -> None:
    ran = subprocess.run([sys.executable, "-m", "lakemagic.cli", "load", "--lake", str(tmp_path / "lake"), "--rows", "3000"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[1:3] == ["generating 3,000 trips...", "writing them again partitioned by date..."]
    assert lines[-1].startswith("done: 3,000 trips in ")


def test_a_missing_bucket_is_one_line_before_anything_is_built(aws_environment: dict, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    ran = subprocess.run([sys.executable, "-m", "lakemagic.cli", "load", "--lake", "s3://no-such-lake/trips"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, TMPDIR=str(scratch)))

    assert ran.returncode == 1
    assert ran.stderr.splitlines() == [
        "lakemagic load: the lake's bucket no-such-lake does not exist: create it (lakemagic deploy "
        "--create-bucket makes it with the function) or name another with --lake"]
    assert "generating" not in ran.stdout  # asked first: the month is not built for nothing
    assert list(scratch.iterdir()) == []
