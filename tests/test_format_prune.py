"""Pruning an Iceberg table's data files by their partition values and statistics (fanout/transforms.py),
against DuckDB's own count of the files each filter needs.

The tables are written by pyiceberg (a SQL catalog over sqlite, offline); their files' partition
triples and bounds are read from the manifests with read_avro, as the listing reads them. A file is
needed when DuckDB, reading it alone with read_parquet, finds a row passing the WHERE clause. The
kept files must always include the needed ones, and equal them for the forms pruning decides.
"""

from __future__ import annotations

import datetime
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest

from lakelambda.sql import parameter_names, quote_literal
from lakemagic.fanout.transforms import canonical_type, prune_format

from test_table_format_fanout import format_database

EPOCH = datetime.datetime(1970, 1, 1)


@dataclass(frozen=True)
class DataFile:
    """One data file as the listing gives it."""

    path: str
    bytes: int
    partition: tuple[tuple[str, str, str | None], ...]
    lower: dict[str, str] = field(default_factory=dict)
    upper: dict[str, str] = field(default_factory=dict)


def _days(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    return [first + datetime.timedelta(days) for days in range((last - first).days + 1)]


def _rows(dates: list[datetime.date | None], times: list[datetime.datetime | None], first: int) -> pa.Table:
    utc = [None if time is None else time.replace(tzinfo=datetime.timezone.utc) for time in times]
    return pa.table({"d": pa.array(dates, pa.date32()), "ts": pa.array(times, pa.timestamp("us")),
                     "tz": pa.array(utc, pa.timestamp("us", tz="UTC")),
                     "n": pa.array(range(first, first + len(dates)), pa.int64()),
                     "s": pa.array([None if i % 7 == 0 else "xyz"[i % 3] for i in range(len(dates))], pa.string())})


def _dated() -> pa.Table:
    """Every day of months around 1970, of a leap February (1996) and of 2000's (a leap century), and NULLs."""
    dates = [*_days(datetime.date(1969, 11, 1), datetime.date(1970, 2, 28)),
             *_days(datetime.date(1996, 1, 1), datetime.date(1996, 4, 30)),
             *_days(datetime.date(2000, 2, 1), datetime.date(2000, 3, 31)), None, None]
    times = [None if day is None else datetime.datetime.combine(day, datetime.time(10, 30)) for day in dates]
    return _rows(dates, times, 0)


# Instants at the edges of hours, days and years, each at least a second from the others.
INSTANTS = [datetime.datetime(1969, 12, 31, 23, 30), datetime.datetime(1969, 12, 31, 23, 59, 59),
            datetime.datetime(1970, 1, 1), datetime.datetime(1970, 1, 1, 0, 59, 59, 999999),
            datetime.datetime(2019, 1, 1, 5), datetime.datetime(2019, 1, 1, 5, 59, 59),
            datetime.datetime(2019, 1, 1, 6), datetime.datetime(2020, 2, 29, 23, 59, 59, 999999),
            datetime.datetime(2020, 3, 1), datetime.datetime(1900, 3, 1, 12), None]


def _timed() -> pa.Table:
    return _rows([None if time is None else time.date() for time in INSTANTS], INSTANTS, 1000)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Two Iceberg tables: `dated` partitioned by month(d), appended twice (two files a month, each
    holding every day of it); `timed` by year(d), day(ts) and hour(tz), a file for each instant."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.transforms import DayTransform, HourTransform, MonthTransform, YearTransform

    root = tmp_path_factory.mktemp("iceberg-prune")
    catalog = SqlCatalog("prune", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}")
    catalog.create_namespace_if_not_exists("lake")
    dated = catalog.create_table("lake.dated", schema=_dated().schema, location=f"file://{root}/dated")
    with dated.update_spec() as spec:
        spec.add_field("d", MonthTransform(), "d_month")
    dated.append(_dated())
    dated.append(_dated())
    timed = catalog.create_table("lake.timed", schema=_timed().schema, location=f"file://{root}/timed")
    with timed.update_spec() as spec:
        spec.add_field("d", YearTransform(), "d_year")
        spec.add_field("ts", DayTransform(), "ts_day")
        spec.add_field("tz", HourTransform(), "tz_hour")
    timed.append(_timed())
    metadata = {name: catalog.load_table(f"lake.{name}").metadata_location.removeprefix("file://")
                for name in ("dated", "timed")}
    catalog.engine.dispose()
    with format_database() as con:
        return {name: _listing(con, path) for name, path in metadata.items()}


@pytest.fixture(scope="module")
def reader():
    """DuckDB reading data files, as a task does."""
    with format_database() as con:
        yield con


def _listing(con, metadata_path: str) -> tuple[list[DataFile], dict[str, str]]:
    """The current snapshot's data files, read from its manifests with read_avro, and the table's column types."""
    metadata = json.loads(Path(metadata_path).read_text())
    schema = next(item for item in metadata["schemas"] if item["schema-id"] == metadata["current-schema-id"])
    names = {item["id"]: item["name"] for item in schema["fields"]}
    kinds = {item["id"]: item["type"] for item in schema["fields"]}
    specs = {spec["spec-id"]: spec["fields"] for spec in metadata["partition-specs"]}
    snapshot = next(item for item in metadata["snapshots"] if item["snapshot-id"] == metadata["current-snapshot-id"])
    files = []
    for manifest, spec_id in con.execute(f"SELECT manifest_path, partition_spec_id FROM read_avro("
                                         f"{quote_literal(snapshot['manifest-list'])})").fetchall():
        fields = specs[spec_id]
        values = ", ".join(f"CAST(struct_extract(data_file.partition, {quote_literal(item['name'])}) AS VARCHAR)"
                           for item in fields)
        for path, size, partition, lower, upper in con.execute(
                f"SELECT data_file.file_path, data_file.file_size_in_bytes, [{values}], data_file.lower_bounds, "
                f"data_file.upper_bounds FROM read_avro({quote_literal(manifest)}) WHERE status <> 2").fetchall():
            files.append(DataFile(path.removeprefix("file://"), size,
                                  tuple((names[item["source-id"]], item["transform"], value)
                                        for item, value in zip(fields, partition)),
                                  _bounds(lower, names, kinds), _bounds(upper, names, kinds)))
    columns = con.execute(f"DESCRIBE SELECT * FROM iceberg_scan({quote_literal(metadata_path)})").fetchall()
    types = {name: kind for name, kind, *_ in columns}
    return sorted(files, key=lambda file: file.path), types


def _bounds(bounds: dict[int, bytes], names: dict[int, str], kinds: dict[int, str]) -> dict[str, str]:
    """Iceberg's single-value serialization of bounds, as text."""
    text = {}
    for field_id, value in bounds.items():
        kind = kinds[field_id]
        if kind == "date":
            text[names[field_id]] = str(EPOCH.date() + datetime.timedelta(struct.unpack("<i", value)[0]))
        elif kind in ("timestamp", "timestamptz"):
            instant = EPOCH + datetime.timedelta(microseconds=struct.unpack("<q", value)[0])
            text[names[field_id]] = instant.isoformat(" ") + ("+00" if kind == "timestamptz" else "")
        elif kind == "long":
            text[names[field_id]] = str(struct.unpack("<q", value)[0])
        else:
            text[names[field_id]] = value.decode()
    return text


def needed(con, files: list[DataFile], where: str, params: dict | None = None) -> list[str]:
    """The files in which DuckDB, reading each alone, finds a row passing `where`."""
    sql = f"SELECT count(*) FROM read_parquet($path) AS t WHERE {where}"
    used = {name: value for name, value in (params or {}).items() if name in parameter_names(sql)}
    return [file.path for file in files if con.execute(sql, {**used, "path": file.path}).fetchone()[0]]


def kept(table, where: str, params: dict | None = None, strip_statistics: bool = False) -> list[str]:
    files, types = table
    if strip_statistics:
        files = [DataFile(file.path, file.bytes, file.partition) for file in files]
    return [file.path for file in prune_format(f"SELECT count(*) FROM t WHERE {where}", "t", files, types, params)]


PARAMS = {"day": datetime.date(1996, 2, 29), "first": "1969-12-20", "last": datetime.date(1970, 1, 5)}
# (table, WHERE clause, whether the kept files are exactly the needed ones)
CASES = [
    ("dated", "d < DATE '1996-03-01'", True),
    ("dated", "d <= '1996-02-29'", True),
    ("dated", "d > '1969-12-31'", True),
    ("dated", "d >= '2000-02-29'", True),
    ("dated", "'1996-03-31' < d", True),
    ("dated", "d = '1996-02-29'", True),
    ("dated", "d = '1970-01-01'", True),
    ("dated", "d IN ('1969-11-30', '2000-03-01')", True),
    ("dated", "d BETWEEN '1969-12-15' AND '1970-01-15'", True),
    ("dated", "d < TIMESTAMP '1996-03-01 10:00'", True),
    ("dated", "d > TIMESTAMPTZ '1996-02-29 23:00:00+00'", True),
    ("dated", "d = DATE '1996-01-01' + INTERVAL 59 DAY", True),
    ("dated", "d = $day", True),
    ("dated", "d BETWEEN $first AND $last", True),
    ("dated", "t.d > '1996-01-31' AND n < 100000 AND d < '1996-03-01'", True),
    ("dated", "ts >= '2000-03-31 10:30:00'", False),  # the NULL dates' file has no bounds of ts: kept
    ("dated", "tz < '1969-11-02 00:00:00+00'", False),
    ("dated", "n < 10", True),
    ("dated", "d < '1996-03-01' OR d > '2000-03-15'", False),
    ("dated", "year(d) = 1996", False),
    ("dated", "month(d) = 2", False),
    ("dated", "d IS NULL", False),
    ("dated", "d IS NOT NULL AND d < '1970-01-01'", True),
    ("dated", "d <> '1996-03-01'", False),
    ("dated", "d NOT BETWEEN '1969-01-01' AND '1999-01-01'", False),
    ("dated", "d + 1 < '1996-03-01'", False),
    ("dated", "coalesce(d, DATE '1996-03-05') = '1996-03-05'", False),
    ("dated", "d < current_date", False),
    ("dated", "d = (SELECT DATE '1996-03-01')", False),
    ("dated", "d < ts", False),
    ("dated", "s = 'x'", False),
    ("timed", "ts < '1970-01-01'", True),
    ("timed", "ts >= '2020-02-29 23:59:59.999999'", True),
    ("timed", "ts IN ('1969-12-31 23:30:00', '2020-03-01 00:00:00')", True),
    ("timed", "tz > '2019-01-01 05:59:59.999999+00'", True),
    ("timed", "tz = '2019-01-01 05:00:00+00'", True),
    ("timed", "tz < '2019-01-01 06:00:00+01'", True),
    ("timed", "tz BETWEEN '2019-01-01 04:00:00+00' AND TIMESTAMPTZ '2019-01-01 06:00:00+00'", True),
    ("timed", "tz <= DATE '1970-01-01'", True),
    ("timed", "d >= '2000-01-01'", True),
    ("timed", "d < '1970-01-01' AND ts > '1969-12-31 23:45:00'", True),
    ("timed", "date_trunc('hour', tz) = '2019-01-01 05:00:00+00'", False),
    ("timed", "ts < '1970-01-01' OR ts > '2020-01-01'", False),
    ("timed", "tz IS NULL", False),
]


@pytest.mark.parametrize(("name", "where", "exact"), CASES)
def test_kept_files_hold_every_passing_row(tables, reader, name, where, exact):
    files, _ = tables[name]
    want = needed(reader, files, where, PARAMS)
    got = kept(tables[name], where, PARAMS)
    assert set(want) <= set(got), (where, sorted(set(want) - set(got)))
    if exact:
        assert got == want
    # The partition values alone, without statistics, keep every needed file too.
    assert set(want) <= set(kept(tables[name], where, PARAMS, strip_statistics=True))


def test_the_listing_reads_what_iceberg_wrote(tables):
    files, types = tables["dated"]
    assert types == {"d": "DATE", "ts": "TIMESTAMP", "tz": "TIMESTAMP WITH TIME ZONE", "n": "BIGINT", "s": "VARCHAR"}
    months = sorted({file.partition for file in files}, key=str)
    assert len(files) == 2 * len(months) == 2 * (4 + 4 + 2 + 1)
    assert (("d", "month", "-2"),) in months and (("d", "month", None),) in months  # 1969-11 and the NULL dates
    timed, _ = tables["timed"]
    hours = {None if instant is None else instant.replace(minute=0, second=0, microsecond=0) for instant in INSTANTS}
    assert len(timed) == len(hours) == 8
    before_1970 = (("d", "year", "-1"), ("ts", "day", "1969-12-31"), ("tz", "hour", "-1"))
    assert before_1970 in [file.partition for file in timed]


def test_month_partitions_alone_prune_exactly_where_every_day_is_present(tables, reader):
    for where in ("d < '1996-03-01'", "d = '1996-02-29'", "d BETWEEN '1969-12-31' AND '1970-01-01'"):
        assert kept(tables["dated"], where, strip_statistics=True) == needed(reader, tables["dated"][0], where)


def _edges(kind: str, transform: str, value: str | None, where: str) -> bool:
    """Whether a file with the one partition value `value` of column c is kept for `where`."""
    files = [DataFile("f", 1, (("c", transform, value),))]
    return bool(prune_format(f"SELECT * FROM t WHERE {where}", "t", files, {"c": kind}))


@pytest.mark.parametrize(("kind", "transform", "value", "lo", "hi"), [
    ("DATE", "month", "314", "1996-03-01", "1996-03-31"),
    ("DATE", "month", "313", "1996-02-01", "1996-02-29"),  # leap year
    ("DATE", "month", "361", "2000-02-01", "2000-02-29"),  # a leap century
    ("DATE", "month", "1561", "2100-02-01", "2100-02-28"),  # not a leap century
    ("DATE", "month", "-1", "1969-12-01", "1969-12-31"),
    ("DATE", "month", "-12", "1969-01-01", "1969-01-31"),
    ("DATE", "year", "-1", "1969-01-01", "1969-12-31"),
    ("DATE", "year", "26", "1996-01-01", "1996-12-31"),
    ("DATE", "day", "-1", "1969-12-31", "1969-12-31"),
    ("DATE", "day", "1996-02-29", "1996-02-29", "1996-02-29"),
    ("TIMESTAMP", "month", "314", "1996-03-01 00:00:00", "1996-03-31 23:59:59.999999"),
    ("TIMESTAMP", "day", "9555", "1996-02-29 00:00:00", "1996-02-29 23:59:59.999999"),
    ("TIMESTAMP", "hour", "-1", "1969-12-31 23:00:00", "1969-12-31 23:59:59.999999"),
    ("TIMESTAMP", "year", "-71", "1899-01-01 00:00:00", "1899-12-31 23:59:59.999999"),
    ("TIMESTAMP WITH TIME ZONE", "hour", "429533", "2019-01-01 05:00:00+00", "2019-01-01 05:59:59.999999+00"),
    ("TIMESTAMP WITH TIME ZONE", "hour", "429533", "2019-01-01 00:00:00-05", "2019-01-01 00:59:59.999999-05"),
    ("TIMESTAMP WITH TIME ZONE", "day", "-1", "1969-12-31 00:00:00+00", "1969-12-31 23:59:59.999999+00"),
    ("TIMESTAMPTZ", "month", "0", "1970-01-01 00:00:00+00", "1970-01-31 23:59:59.999999+00"),
])
def test_a_transform_value_is_the_interval_of_source_values(kind, transform, value, lo, hi):
    for where, keeps in ((f"c >= '{lo}'", True), (f"c < '{lo}'", False), (f"c <= '{hi}'", True),
                         (f"c > '{hi}'", False), (f"c = '{lo}'", True), (f"c = '{hi}'", True),
                         (f"c BETWEEN '{hi}' AND '{hi}'", True), (f"c IN ('{lo}', '{hi}')", True)):
        assert _edges(kind, transform, value, where) is keeps, where
    outside = "1970-01-01" if lo[:4] != "1970" else "2100-12-31"
    assert not _edges(kind, transform, value, f"c IN ('{outside}')")


def test_a_null_partition_value_holds_only_nulls():
    assert not _edges("DATE", "month", None, "c < '9999-01-01'")
    assert not _edges("DATE", "month", None, "c BETWEEN '0001-01-01' AND '9999-01-01'")
    assert _edges("DATE", "month", None, "c IS NULL")
    assert _edges("DATE", "month", None, "coalesce(c, DATE '2000-01-01') = '2000-01-01'")
    assert not _edges("VARCHAR", "identity", None, "c = ''")
    assert _edges("VARCHAR", "identity", "", "c = ''")  # an empty string is a value, not NULL


def test_an_identity_value_decides_any_term_on_its_column():
    assert _edges("VARCHAR", "identity", "Zone", "lower(c) = 'zone'")
    assert not _edges("VARCHAR", "identity", "Zone", "lower(c) = 'other' OR c LIKE 'x%'")
    assert not _edges("INTEGER", "identity", "3", "c % 2 = 0")
    assert _edges("DATE", "identity", "1996-03-01", "year(c) = 1996")


@pytest.mark.parametrize(("kind", "transform", "value"), [
    ("BIGINT", "bucket[4]", "0"), ("VARCHAR", "truncate[2]", "ab"), ("DATE", "void", None),
    ("DATE", "month", "March"), ("INTEGER", "identity", "three"), ("VARCHAR", "month", "314"),
    ("DATE", "month", "99999999999"),
])
def test_what_says_nothing_of_the_column_keeps_the_file(kind, transform, value):
    for where in ("c = 5", "c < 'x'", "c IS NULL", "c = '1000-01-01'"):
        assert _edges(kind, transform, value, where), where


def _statistics(kind: str, lower: str, upper: str, where: str) -> bool:
    file = DataFile("f", 1, (), {"c": lower}, {"c": upper})
    return bool(prune_format(f"SELECT * FROM t WHERE {where}", "t", [file], {"c": kind}))


def test_statistics_prune_numbers_dates_and_timestamps_never_strings_or_floats():
    assert not _statistics("BIGINT", "10", "20", "c > 20") and _statistics("BIGINT", "10", "20", "c >= 20")
    assert not _statistics("DECIMAL(15,2)", "1.50", "2.25", "c = 2.26")
    assert not _statistics("DATE", "1996-03-02", "1996-03-09", "c IN ('1996-03-01', '1996-03-10')")
    assert _statistics("VARCHAR", "a", "b", "c = 'z'")  # bounds of strings may be truncated
    assert _statistics("DOUBLE", "1", "2", "c > 5")  # NaN lies outside the bounds and passes c > 5
    # A statistic is an interval, not a value: only the forms decide.
    assert _statistics("BIGINT", "10", "20", "c % 7 = 100")
    # Delta truncates timestamps to milliseconds: the upper bound may be up to 999 microseconds short.
    hour = ("2019-01-01 10:00:00", "2019-01-01 11:00:00.123")
    assert _statistics("TIMESTAMP", *hour, "c > '2019-01-01 11:00:00.123500'")
    assert not _statistics("TIMESTAMP", *hour, "c > '2019-01-01 11:00:00.124'")
    assert _statistics("TIMESTAMP", *hour, "c < '2019-01-01 09:59:59.999500'")
    assert not _statistics("TIMESTAMP", *hour, "c < '2019-01-01 09:59:59.999'")


def test_anything_in_doubt_keeps_every_file():
    files = [DataFile("a", 1, (("c", "month", "0"),)), DataFile("b", 1, (("c", "month", "1"),))]
    types = {"c": "DATE"}
    for sql in ("SELECT * FROM t AS x JOIN t AS y USING (c) WHERE x.c < '1970-02-01'",  # read twice
                "SELECT * FROM other WHERE c < '1970-02-01'",  # t not read
                "SELECT * FROM (SELECT * FROM t) WHERE c < '1970-02-01'",
                "SELECT * FROM t WHERE c < $fanout_file",  # the module's own names are not the query's
                "SELECT * FROM t, u WHERE u.c < '1970-02-01'",
                "SELECT * FROM t WHERE c < 'not a date'",
                "SELECT * FROM t WHERE"):
        assert prune_format(sql, "t", files, types, {"fanout_file": "1970-02-01"}) == files, sql
    hostile = {"c": "DATE) OR (TRUE"}
    assert prune_format("SELECT * FROM t WHERE c < '1970-02-01'", "t", files, hostile) == files
    assert prune_format("SELECT * FROM t WHERE c < '1970-02-01'", "t", files, types) == files[:1]
    assert prune_format("SELECT * FROM t", "t", [], types) == []


def test_column_types_are_read_as_duckdb_names_them():
    assert canonical_type("int8") == "BIGINT"
    assert canonical_type("timestamptz") == "TIMESTAMP WITH TIME ZONE"
    assert canonical_type("decimal(15, 2)") == "DECIMAL(15,2)"
    for hostile in ("INTEGER) FROM read_text('x'", "INTEGER, 1", "INTEGER --", "no_such_type"):
        assert canonical_type(hostile) is None, hostile


@pytest.fixture(scope="module")
def delta(tmp_path_factory):
    """A Delta table partitioned by zone (table_writers.write_delta): its live files as the listing gives
    them, identity triples and statistics (numbers kept as their text), and its column types."""
    from table_writers import write_delta

    folder = tmp_path_factory.mktemp("delta-prune") / "trips"
    write_delta(str(folder))
    live = {}
    for commit in sorted((folder / "_delta_log").glob("*.json")):
        for action in map(json.loads, commit.read_text().splitlines()):
            if "remove" in action:
                live.pop(action["remove"]["path"])
            elif "add" in action:
                live[action["add"]["path"]] = action["add"]
    files = []
    for path, add in sorted(live.items()):
        stats = json.loads(add["stats"], parse_float=str, parse_int=str)
        files.append(DataFile(str(folder / path), add["size"],
                              tuple((key, "identity", value) for key, value in add["partitionValues"].items()),
                              stats["minValues"], stats["maxValues"]))
    with format_database() as con:
        columns = con.execute(f"DESCRIBE SELECT * FROM delta_scan({quote_literal(str(folder))})").fetchall()
    types = {name: kind for name, kind, *_ in columns}
    return files, types


@pytest.mark.parametrize(("where", "exact"), [
    ("zone = 1", True),
    ("zone IN (0, 2)", True),
    ("zone % 2 = 0", True),
    ("zone > 0 AND id < 40", True),
    ("pickup >= '2019-04-25'", True),
    ("id BETWEEN 45 AND 50", True),
    ("fare > 100", False),  # a DOUBLE's bounds are not used
    ("zone IS NULL", True),
])
def test_delta_identity_partitions_and_statistics(delta, reader, where, exact):
    files, types = delta
    assert types["zone"] == "INTEGER" and types["pickup"] == "TIMESTAMP"
    # A task's reader: the partition column is a constant from the log, not in the file.
    sql = (f"SELECT count(*) FROM (SELECT id, CAST($zone AS INTEGER) AS zone, fare, pickup FROM read_parquet($path)) "
           f"AS t WHERE {where}")
    want = [file.path for file in files
            if reader.execute(sql, {"zone": file.partition[0][2], "path": file.path}).fetchone()[0]]
    got = kept(delta, where)
    assert set(want) <= set(got)
    if exact:
        assert got == want
