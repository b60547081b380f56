"""Pruning an Iceberg or Delta table's data files by the statistics the handler's listing gives (Iceberg's binary
lower/upper bounds, Delta's add stats), over a table built so each file holds its own range of every column:
integers, decimals, dates, timestamps with and without a zone, and a string and a double pruning never uses.

Each file's bounds are checked against DuckDB's own min and max of the file read alone; each filter's tasks
against the files in which DuckDB, reading each alone, finds a passing row; the answer through the runner
against iceberg_scan / delta_scan.
"""

from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
import pytest

from lakelambda import format_bounds, format_tasks, protocol
from lakelambda.database import Settings
from lakelambda.formats import current_iceberg_metadata
from lakelambda.handler import LakeHandler
from lakelambda.sql import quote_identifier, quote_literal
from lakelambda.storage import open_storage
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.fanout import runner

from test_table_format_fanout import format_database

FILES = 4
ROWS = 25
# The columns whose statistics each format's listing gives: Delta's wide decimal (more digits than a
# double holds exactly) is left out, and strings and doubles never.
PRUNED = {"id", "small", "amount", "wide", "day", "seen", "seen_utc"}
GIVEN = {"iceberg": PRUNED, "delta": PRUNED - {"wide"}}


def _readings(part: int) -> pa.Table:
    """File `part`'s rows: every column's values lie in a range of its own, below the next file's."""
    rows = range(part * 100, part * 100 + ROWS)
    start = datetime.datetime(2020, 1, 1) + datetime.timedelta(days=30 * part)
    return pa.table({
        "id": pa.array(rows, pa.int64()),
        "small": pa.array([row - 150 for row in rows], pa.int32()),
        "amount": pa.array([decimal.Decimal(row - 150) / 4 for row in rows], pa.decimal128(12, 2)),
        "wide": pa.array([decimal.Decimal(f"123456789012345678.{row:04d}") for row in rows], pa.decimal128(30, 4)),
        "day": pa.array([(start + datetime.timedelta(days=index)).date() for index in range(ROWS)], pa.date32()),
        "seen": pa.array([start + datetime.timedelta(hours=index, seconds=7) for index in range(ROWS)],
                       pa.timestamp("us")),
        "seen_utc": pa.array([start.replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=index)
                            for index in range(ROWS)], pa.timestamp("us", tz="UTC")),
        "label": pa.array([f"r{row}" for row in rows], pa.string()),
        "fare": pa.array([row / 3 for row in rows], pa.float64()),
    })


@pytest.fixture(scope="module", params=["iceberg", "delta"])
def lake(request, tmp_path_factory):
    """A lake holding `readings` written in one format, one append (one data file) per part; its handler."""
    root = tmp_path_factory.mktemp(f"statistics-{request.param}-lake")
    if request.param == "iceberg":
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = SqlCatalog("stats", uri=f"sqlite:///{tmp_path_factory.mktemp('stats-catalog')}/catalog.db",
                             warehouse=f"file://{root}")
        catalog.create_namespace_if_not_exists("lake")
        table = catalog.create_table("lake.readings", schema=_readings(0).schema, location=f"file://{root}/readings")
        for part in range(FILES):
            table.append(_readings(part))
        catalog.engine.dispose()
        source = f"iceberg_scan({quote_literal(current_iceberg_metadata(open_storage(str(root)), 'readings'))})"
    else:
        from deltalake import write_deltalake

        for part in range(FILES):
            write_deltalake(str(root / "readings"), _readings(part), mode="append")
        source = f"delta_scan({quote_literal(str(root / 'readings'))})"
    handler = LakeHandler(str(root), Settings())
    yield request.param, root, handler, source
    handler.close()


def _listing(handler) -> protocol.FormatTable:
    answer = protocol.parse_answer(handler(protocol.encode(protocol.PartitionsRequest(("readings",))), None))
    assert not answer.table_formats and len(answer.format_tables[0].files) == FILES
    return answer.format_tables[0]


def test_each_files_bounds_are_its_least_and_greatest_values(lake):
    kind, root, handler, _ = lake
    listing = _listing(handler)
    with format_database() as con:
        for file in listing.files:
            assert set(file.lower) == set(file.upper) == GIVEN[kind]
            path = quote_literal(f"{root}/{file.path}")
            for column in GIVEN[kind]:
                name = quote_identifier(column)
                least, greatest = con.execute(f"SELECT min({name}), max({name}) FROM read_parquet({path})").fetchone()
                kind_of = con.execute(f"SELECT typeof({name}) FROM read_parquet({path}) LIMIT 1").fetchone()[0]
                read = con.execute(f"SELECT CAST($lo AS {kind_of}), CAST($hi AS {kind_of})",
                                   {"lo": file.lower[column], "hi": file.upper[column]}).fetchone()
                assert read == (least, greatest), (column, file.lower[column], file.upper[column])


def test_statistics_that_would_make_the_answer_too_large_are_left_out(lake, monkeypatch):
    _, _, handler, _ = lake
    given = sum(len(column) + len(value) + 6 for file in _listing(handler).files
                for bounds in (file.lower, file.upper) for column, value in bounds.items())
    monkeypatch.setattr(format_tasks, "MAX_STATS_CHARS", given - 1)
    assert all(not file.lower and not file.upper for file in _listing(handler).files)
    monkeypatch.setattr(format_tasks, "MAX_STATS_CHARS", given)
    assert all(file.lower and file.upper for file in _listing(handler).files)


@pytest.mark.parametrize(("where", "wanted"), [
    ("id >= 300", 1),
    ("id BETWEEN 110 AND 210", 2),
    ("small < -40", 2),
    ("amount > 12.5", 2),
    ("amount = -37.50", 1),
    ("day IN (DATE '2020-01-05', DATE '2020-04-01')", 2),
    ("seen < TIMESTAMP '2020-01-31 00:00'", 1),
    ("seen_utc >= TIMESTAMPTZ '2020-03-01 00:10:00+00'", 2),
    ("seen_utc < TIMESTAMPTZ '2020-01-31 03:00:00+05'", 1),  # 2020-01-30 22:00 UTC
    ("wide < 123456789012345678.0050", None),  # Delta: none, Iceberg: the decimal's exact bounds
    ("label = 'r5'", FILES),
    ("fare > 100", FILES),
])
def test_a_filter_reads_only_the_files_its_statistics_allow_and_answers_exactly(lake, where, wanted):
    kind, root, handler, source = lake
    sql = f"SELECT count(*) AS n, sum(amount) AS total, max(seen_utc) AS last FROM readings WHERE {where}"
    engine = EmbeddedEngine(str(root))
    listing = _listing(handler)
    decision = runner.decide(engine, sql, (), 64)
    read = {file.path for task in decision.plan.tasks for file in task.files} if decision.plan else None
    with format_database() as con:
        needed = {file.path for file in listing.files if con.execute(
            f"SELECT count(*) FROM read_parquet({quote_literal(f'{root}/{file.path}')}) WHERE {where}").fetchone()[0]}
        # The format's reader, its scan whole: delta_scan's own skipping trusts deltalake's statistics of the
        # wide decimal, which went through a double, and skips the file holding the answer's rows.
        con.execute(f"CREATE TABLE readings AS SELECT * FROM {source}")
        want = con.execute(sql).fetchall()
    if wanted is None:
        wanted = 1 if kind == "iceberg" else FILES
    if read is None:  # one file left: one task's worth, run in one invocation
        assert wanted == 1 and "after pruning" in decision.reason, decision.reason
    else:
        assert needed <= read and len(read) == wanted, (needed, read)
    result = runner.run(engine, sql, {}, 100, (), 64)
    assert [tuple(row.values()) for row in result.to_dataframe(kind="arrow").to_pylist()] == want


@pytest.mark.parametrize(("kind", "raw", "text"), [
    ("int", (-5).to_bytes(4, "little", signed=True), "-5"),
    ("long", (7).to_bytes(4, "little", signed=True), "7"),  # written as int, promoted to long
    ("long", (2**62).to_bytes(8, "little", signed=True), str(2**62)),
    ("int", (7).to_bytes(8, "little", signed=True), None),
    ("date", (-1).to_bytes(4, "little", signed=True), "1969-12-31"),
    ("date", (2**31 - 1).to_bytes(4, "little", signed=True), None),  # no 4-digit year
    ("timestamptz", (1_500_000).to_bytes(8, "little", signed=True), "1970-01-01 00:00:01.500000"),
    ("timestamp_ns", (1).to_bytes(8, "little", signed=True), None),
    ("decimal(9, 2)", (-123).to_bytes(2, "big", signed=True), "-1.23"),
    ("decimal(38,10)", (10**37 + 5).to_bytes(16, "big", signed=True), "1000000000000000000000000000.0000000005"),
    ("decimal(4,2)", (5).to_bytes(1, "big", signed=True), "0.05"),
    ("string", b"abc", None),
    ("double", b"\x00" * 8, None),
])
def test_iceberg_bounds_decode_exactly_or_not_at_all(kind, raw, text):
    assert format_bounds.iceberg_bound(kind, raw) == text


@pytest.mark.parametrize(("kind", "value", "text"), [
    ("long", "9007199254740993", "9007199254740993"),  # more than a double holds: kept as its text
    ("integer", "1.5", None),
    ("decimal(10,2)", "1E+3", "1000.00"),
    ("decimal(10,2)", "-0.5", "-0.50"),
    ("decimal(10,2)", "1.234", None),  # more fraction digits than the column has
    ("decimal(16,2)", "1.25", None),  # may have gone through a double
    ("decimal(10,2)", "NaN", None),
    ("timestamp", "2020-01-01T05:00:00.000+05:00", "2020-01-01 00:00:00"),
    ("timestamp", "2020-01-01T00:00:00.123Z", "2020-01-01 00:00:00.123000"),
    ("timestamp_ntz", "2020-01-01 10:00:07", "2020-01-01 10:00:07"),
    ("date", "2020-01-01' OR TRUE", None),
    ("string", "abc", None),
    ({"type": "struct"}, "1", None),
])
def test_delta_statistics_are_kept_exactly_or_not_at_all(kind, value, text):
    assert format_bounds.delta_bound(kind, value) == text
