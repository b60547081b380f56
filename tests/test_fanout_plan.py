"""Fan-out plans run for real: each task as the `task` request production sends, answered by the
handler's own task operation over a local lake folder (which reads the task's files as the table),
the merge over the concatenated partials, against the query run once over the whole table in DuckDB.

Two lakes in temporary folders: the generated taxi month (partitioned by date, with a small
zones table) and TPC-H lineitem at scale factor 0.01 from the duckdb-extension-tpch wheel
(partitioned by ship month, with supplier and nation tables).
"""

from __future__ import annotations

import base64
import math
import os
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.handler import LakeHandler
from lakelambda.protocol import MAX_PAGE_ROWS
from lakelambda.sql import quote_identifier, quote_literal
from lakemagic.decode import restored
from lakemagic.fanout import PARTIALS, NotSplit, PartitionFile, Plan, autocast_key_types, plan, prune, shape
from lakemagic.engines import Reply
from lakemagic.fanout import runner
from lakemagic.taxi import build_lake
import events

TASK_COUNTS = (1, 2, 4, 10)


@dataclass
class Lake:
    root: Path
    table: str  # the Hive-partitioned table
    files: list[PartitionFile]  # named relative to the lake, as its listing names them
    small_tables: dict[str, Path]  # single-file tables (the lake's datasets), read whole by every task
    handler: LakeHandler | None = field(default=None, repr=False)  # the lake's own, for the tasks

    def tasks_handler(self) -> LakeHandler:
        if self.handler is None:  # a scratch folder of its own, removed when it is closed
            self.handler = LakeHandler(str(self.root), Settings())
        return self.handler

    def close(self) -> None:
        if self.handler is not None:
            self.handler.close()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """The single run's connection: the small tables and the split table as views over their files."""
        con = duckdb.connect()
        for name, path in self.small_tables.items():
            source = f"read_parquet({quote_literal(str(path))})"
            con.execute(f"CREATE VIEW {quote_identifier(name)} AS SELECT * FROM {source}")
        pattern = quote_literal(str(self.root / self.table / "*=*" / "**" / "*.parquet"))
        con.execute(f"CREATE VIEW {quote_identifier(self.table)} AS "
                    f"SELECT * FROM read_parquet({pattern}, hive_partitioning = true)")
        return con


def partition_files(folder: Path) -> list[PartitionFile]:
    files = []
    for path in sorted(folder.rglob("*.parquet")):
        keys = dict(part.split("=", 1) for part in path.relative_to(folder).parts[:-1])
        files.append(PartitionFile(path.relative_to(folder.parent).as_posix(), path.stat().st_size, keys))
    return files


@pytest.fixture(scope="module")
def taxi(tmp_path_factory):
    root = tmp_path_factory.mktemp("taxi-lake")
    build_lake(str(root), rows=50_000)
    zones = root / "dataset" / "zones.parquet"
    duckdb.execute(f"COPY (SELECT range::INTEGER AS location_id, ['Manhattan', 'Queens', 'Brooklyn'][range % 3 + 1] "
                   f"AS borough FROM range(1, 200)) TO {quote_literal(str(zones))}")
    lake = Lake(root, "partitioned", partition_files(root / "partitioned"), {"zones": zones})
    yield lake
    lake.close()


@pytest.fixture(scope="module")
def tpch(tmp_path_factory):
    package = pytest.importorskip("duckdb_extension_tpch", reason="pip install duckdb-extension-tpch==1.5.5")
    root = tmp_path_factory.mktemp("tpch-lake")
    extension = Path(package.__file__).parent / "extensions" / "v1.5.5" / "tpch.duckdb_extension"
    small = {name: root / "dataset" / f"{name}.parquet" for name in ("supplier", "nation")}
    (root / "dataset").mkdir()
    with duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}) as con:
        con.execute(f"LOAD {quote_literal(str(extension))}")
        con.execute("CALL dbgen(sf = 0.01)")
        con.execute("COPY (SELECT *, strftime(l_shipdate, '%Y-%m') AS ship_month FROM lineitem) "
                    f"TO {quote_literal(str(root / 'lineitem'))} (FORMAT parquet, PARTITION_BY (ship_month))")
        for name, path in small.items():
            con.execute(f"COPY {name} TO {quote_literal(str(path))}")
    lake = Lake(root, "lineitem", partition_files(root / "lineitem"), small)
    yield lake
    lake.close()


def task_pages(handler: LakeHandler, request: protocol.TaskRequest) -> tuple[tuple[protocol.Column, ...], list[str]]:
    """A task's result as the handler answers it: its columns and every page of its rows."""
    answer = protocol.parse_answer(handler(protocol.encode(request)))
    assert isinstance(answer, protocol.PageAnswer), answer
    pages, offset = [answer.page.data], answer.page.row_count
    while offset < answer.result.total_rows:
        more = protocol.parse_answer(handler(events.page_request(answer.result.result_id, offset, MAX_PAGE_ROWS)))
        assert isinstance(more, protocol.PageAnswer) and more.page.row_count > 0, more
        pages.append(more.page.data)
        offset += more.page.row_count
    return answer.result.columns, pages


def run_plan(lake: Lake, result: Plan, params: dict | None = None) -> duckdb.DuckDBPyRelation:
    """Every task sent as the fan-out sends it (runner.task_requests) to the handler's `task` operation,
    which reads the task's files as the table; then the merge over their pages as `partials` alone."""
    requests = runner.task_requests(runner.Decision(plan=result), params or {}, ())
    return merged_tasks(lake.tasks_handler(), requests, result.merge_sql)


def merged_tasks(handler: LakeHandler, requests, merge_sql: str) -> duckdb.DuckDBPyRelation:
    """`merge_sql` over the pages `handler` answers to each of `requests` (tasks of one plan, all of one
    shape), as `partials` alone, in UTC as the kernel merges."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with tempfile.TemporaryDirectory(prefix="fanout-partials-") as folder:
        paths, columns = [], None
        for request in requests:
            task_columns, pages = task_pages(handler, request)
            assert columns is None or task_columns == columns, (task_columns, columns)
            columns = task_columns
            for data in pages:
                paths.append(os.path.join(folder, f"part-{len(paths)}.parquet"))
                with open(paths[-1], "wb") as part:
                    part.write(base64.b64decode(data))
        restored(con, paths, columns).to_table(PARTIALS)
    return con.sql(merge_sql)


def same_value(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(got) and math.isnan(want))
    return type(got) is type(want) and got == want


def sort_key(row: tuple) -> tuple:
    """Rows in a fixed order whatever the order of equal-enough floats: floats count to 6 digits."""
    return tuple((value is None, round(value, 6) if isinstance(value, float) else value) for value in row)


def assert_same_result(lake: Lake, sql: str, max_tasks: int, ordered: bool, params: dict | None = None) -> Plan:
    result = plan(sql, lake.table, lake.files, max_tasks)
    assert isinstance(result, Plan), result
    fanned = run_plan(lake, result, params)
    assert_same_rows(fanned, lake.connect().sql(sql, params=params), ordered)
    return result


def assert_same_rows(got_relation: duckdb.DuckDBPyRelation, want_relation: duckdb.DuckDBPyRelation,
                     ordered: bool) -> None:
    """The same columns, types and rows (in order where `ordered`), floats to 6 places."""
    assert got_relation.columns == want_relation.columns
    assert [str(kind) for kind in got_relation.types] == [str(kind) for kind in want_relation.types]
    got, want = got_relation.fetchall(), want_relation.fetchall()
    if not ordered:
        got, want = sorted(got, key=sort_key), sorted(want, key=sort_key)
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want):
        assert all(map(same_value, got_row, want_row)), (got_row, want_row)


# (sql, whether its ORDER BY fixes the order of all rows)
TAXI_QUERIES = [
    ("SELECT count(*) FROM partitioned", True),
    ("SELECT count(*), count(tip_amount), sum(passenger_count), min(pickup_at), max(fare_amount), avg(trip_distance) "
     "FROM partitioned WHERE payment_type = '1'", True),
    ("SELECT vendor_id, count(*) AS trips, sum(total_amount) AS total, avg(tip_amount) FROM partitioned "
     "GROUP BY vendor_id ORDER BY vendor_id", True),
    ("SELECT date, round(sum(tip_amount) / count(*), 2) AS tip_per_trip, bool_and(fare_amount >= 0), "
     "bool_or(tip_amount > 20) FROM partitioned GROUP BY 1 ORDER BY 1", True),
    ("SELECT payment_type, count(DISTINCT pickup_location_id) AS zones, count(*) FROM partitioned "
     "GROUP BY payment_type", False),
    ("SELECT count(DISTINCT vendor_id), count(*), sum(fare_amount), stddev(fare_amount) FROM partitioned "
     "WHERE date > DATE '2040-01-01'", True),
    ("SELECT vendor_id, stddev(fare_amount), stddev_samp(tip_amount), stddev_pop(trip_distance), "
     "variance(total_amount), var_samp(passenger_count), var_pop(extra) FROM partitioned GROUP BY vendor_id", False),
    ("SELECT count(DISTINCT pickup_location_id), sum(passenger_count), stddev(fare_amount), "
     "var_pop(epoch(pickup_at)) FROM partitioned", True),
    ("SELECT pickup_location_id, count(*) AS trips, avg(fare_amount) AS fare FROM partitioned "
     "GROUP BY pickup_location_id HAVING count(*) >= 5 ORDER BY trips DESC, pickup_location_id LIMIT 10 OFFSET 3",
     True),
    ("SELECT payment_type, count(*) AS trips FROM partitioned GROUP BY ALL HAVING trips > 3 AND payment_type <> '4' "
     "ORDER BY trips", False),
    ("SELECT count(*), max(tip_amount) FROM partitioned GROUP BY date ORDER BY date DESC", True),
    ("SELECT vendor_id FROM partitioned GROUP BY vendor_id ORDER BY sum(fare_amount) DESC", True),
    ("SELECT 'April' AS month, 2019 + 0 AS year, count(*) * 2 AS doubled FROM partitioned", True),
    ("SELECT vendor_id, sum(fare_amount) AS s, s / count(*) AS per FROM partitioned GROUP BY vendor_id", False),
    ("SELECT count(*) AS n, n + 1 FROM partitioned", True),
    ("SELECT date_trunc('day', pickup_at) AS day, count(*) FROM partitioned GROUP BY day "
     "HAVING day > TIMESTAMP '2019-04-27' ORDER BY day", True),
    ("SELECT date_trunc('week', pickup_at) AS week, vendor_id || '-' || count(*) AS label, "
     "sum(tip_amount) FILTER (WHERE payment_type = '1') AS card_tips FROM partitioned "
     "GROUP BY week, vendor_id ORDER BY week, label", True),
    ("SELECT DISTINCT vendor_id, passenger_count FROM partitioned ORDER BY ALL", True),
    ("SELECT DISTINCT payment_type FROM partitioned ORDER BY 1 DESC LIMIT 2", True),
    ("SELECT DISTINCT count(*) > 100 AS busy FROM partitioned GROUP BY date ORDER BY busy", True),
    ("SELECT vendor_id, pickup_at, fare_amount FROM partitioned "
     "WHERE tip_amount > 10 AND date BETWEEN DATE '2019-04-03' AND DATE '2019-04-09' LIMIT 1000000", False),
    ("SELECT fare_amount, pickup_at FROM partitioned ORDER BY fare_amount DESC, pickup_at LIMIT 7", True),
    ("SELECT total_amount FROM partitioned ORDER BY tip_amount + total_amount DESC, total_amount LIMIT 5 OFFSET 4",
     True),
    ("SELECT p.payment_type, z.borough, count(*) AS trips, sum(p.fare_amount) FROM partitioned p "
     "LEFT JOIN zones z ON p.pickup_location_id = z.location_id GROUP BY ALL ORDER BY ALL", True),
    ("SELECT count(*), count(z.borough) FROM zones z RIGHT JOIN partitioned p ON p.pickup_location_id = z.location_id",
     True),
    ("SELECT z.borough, count(*) FROM partitioned p ASOF JOIN zones z ON p.pickup_location_id >= z.location_id "
     "GROUP BY 1", False),
    ("SELECT count(*) FROM partitioned p WHERE EXISTS (SELECT 1 FROM zones z WHERE z.location_id = "
     "p.pickup_location_id AND z.borough = 'Brooklyn') AND NOT p.pickup_location_id IN (SELECT 7)", True),
    ("SELECT z.borough, p.fare_amount FROM partitioned AS p JOIN zones AS z ON p.dropoff_location_id = z.location_id "
     "WHERE z.borough = 'Queens' ORDER BY p.fare_amount, z.borough LIMIT 20", True),
    # count(x) counts only non-NULL values (tip_amount has none, NULLIF makes some: all of a group's, where
    # no tip is recorded, so its merged count must be 0, not NULL), and min per group.
    ("SELECT payment_type, count(tip_amount), count(NULLIF(tip_amount, 0)) AS tipped, min(fare_amount), "
     "min(pickup_at) FROM partitioned GROUP BY 1 ORDER BY 1", True),
]

TPCH_QUERIES = [
    ("SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price, "
     "sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price, avg(l_quantity) AS avg_qty, "
     "avg(l_discount) AS avg_disc, count(*) AS count_order FROM lineitem WHERE l_shipdate <= DATE '1998-09-02' "
     "GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus", True),
    ("SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem WHERE l_shipdate >= DATE '1994-01-01' "
     "AND l_shipdate < DATE '1995-01-01' AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24", True),
    ("SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue FROM lineitem "
     "JOIN supplier ON l_suppkey = s_suppkey JOIN nation ON s_nationkey = n_nationkey "
     "GROUP BY n_name ORDER BY revenue DESC", True),
    ("SELECT count(*) FROM lineitem WHERE l_suppkey IN (SELECT s_suppkey FROM supplier WHERE s_acctbal > 5000)", True),
    ("WITH rich AS (SELECT s_suppkey FROM supplier WHERE s_acctbal > 0) "
     "SELECT count(*), sum(l_quantity) FROM lineitem SEMI JOIN rich ON l_suppkey = s_suppkey", True),
    ("SELECT ship_month, count(DISTINCT l_orderkey), sum(l_quantity), avg(l_discount), stddev_samp(l_extendedprice) "
     "FROM lineitem GROUP BY ship_month ORDER BY ship_month", True),
    ("SELECT l_returnflag, count(*) AS n FROM lineitem GROUP BY l_returnflag ORDER BY n * -1", True),
    ("SELECT l_shipmode, sum(CASE WHEN l_returnflag = 'R' THEN 1 ELSE 0 END) / count(*)::DOUBLE AS returned "
     "FROM lineitem GROUP BY 1 ORDER BY 2 DESC, 1", True),
    ("SELECT year(l_shipdate) AS y, count(*) FROM lineitem GROUP BY y HAVING y > 1993 ORDER BY y", True),
    ("SELECT l_shipmode, min(l_shipdate), max(l_comment), bit_xor(l_partkey), count_if(l_tax > 0.05) "
     "FROM lineitem GROUP BY l_shipmode ORDER BY 1", True),
    ("SELECT l_returnflag, sum(DISTINCT l_quantity), avg(DISTINCT l_quantity), count(DISTINCT l_quantity), "
     "max(DISTINCT l_discount) FROM lineitem GROUP BY 1 ORDER BY 1", True),
    ("SELECT * FROM lineitem WHERE l_quantity > 49 ORDER BY l_orderkey, l_linenumber LIMIT 100000", True),
    ("SELECT * FROM lineitem ORDER BY l_extendedprice * l_discount DESC, l_orderkey, l_linenumber LIMIT 3", True),
    ("SELECT s.s_name, l.* FROM lineitem AS l JOIN supplier AS s ON l.l_suppkey = s.s_suppkey "
     "WHERE l.ship_month = '1995-06' AND s.s_acctbal < 0 LIMIT 1000000", False),
    ("SELECT l_orderkey, l_linenumber, l_extendedprice FROM lineitem "
     "ORDER BY l_extendedprice DESC, l_orderkey, l_linenumber LIMIT 5 OFFSET 2", True),
    ("SELECT l_orderkey, l_comment FROM lineitem ORDER BY l_shipdate DESC, 1, l_linenumber LIMIT 500 OFFSET 60000",
     True),
]


@pytest.mark.parametrize("max_tasks", TASK_COUNTS)
@pytest.mark.parametrize(("sql", "ordered"), TAXI_QUERIES)
def test_taxi_fan_out_equals_one_run(taxi, sql, ordered, max_tasks):
    assert_same_result(taxi, sql, max_tasks, ordered)


@pytest.mark.parametrize("max_tasks", TASK_COUNTS)
@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES)
def test_tpch_fan_out_equals_one_run(tpch, sql, ordered, max_tasks):
    assert_same_result(tpch, sql, max_tasks, ordered)


@pytest.mark.parametrize("max_tasks", TASK_COUNTS)
def test_parameters_stay_in_the_task_sql(tpch, max_tasks):
    sql = "SELECT l_linestatus, count(*), avg(l_tax) FROM lineitem WHERE l_quantity > $least GROUP BY 1"
    result = assert_same_result(tpch, sql, max_tasks, ordered=False, params={"least": 30})
    assert "$least" in result.task_sql and "$least" not in result.merge_sql


@pytest.mark.parametrize("max_tasks", TASK_COUNTS)
def test_limit_without_order_by_keeps_that_many_rows_of_the_result(tpch, max_tasks):
    sql = "SELECT l_orderkey, l_linenumber FROM lineitem WHERE l_discount = 0.04 LIMIT 25"
    result = plan(sql, tpch.table, tpch.files, max_tasks)
    rows = run_plan(tpch, result).fetchall()
    everything = set(tpch.connect().sql(sql.replace(" LIMIT 25", "")).fetchall())
    assert len(rows) == 25 and len(set(rows)) == 25 and set(rows) <= everything


NOT_SPLIT = [
    ("SELECT count(*) AS n, current_setting('allowed_directories') AS s FROM partitioned",
     "its merge would run what the engine refuses"),
    ("SELECT vendor_id, sum(fare_amount) FROM partitioned GROUP BY 1 HAVING getvariable('x') IS NULL",
     "its merge would run what the engine refuses"),
    ("SELECT * FROM partitioned WHERE tip_amount > 10", "rows without a LIMIT are not split"),
    ("SELECT vendor_id, fare_amount FROM partitioned ORDER BY fare_amount OFFSET 5", "rows without a LIMIT"),
    ("SELECT vendor_id, sum(fare_amount) OVER (PARTITION BY vendor_id) FROM partitioned", "window functions"),
    ("SELECT * FROM partitioned QUALIFY row_number() OVER (ORDER BY fare_amount) < 3", "window functions"),
    ("SELECT median(fare_amount) FROM partitioned", "median is not mergeable"),
    ("SELECT vendor_id, quantile_cont(fare_amount, 0.9) FROM partitioned GROUP BY 1", "quantile_cont is not mergeable"),
    ("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY tip_amount) FROM partitioned",
     "quantile_disc is not mergeable"),
    ("SELECT mode(payment_type) FROM partitioned", "mode is not mergeable"),
    ("SELECT approx_count_distinct(vendor_id) FROM partitioned", "approx_count_distinct is not mergeable"),
    ("SELECT string_agg(vendor_id, ',' ORDER BY pickup_at) FROM partitioned", "string_agg depends on the order"),
    ("SELECT list(fare_amount) FROM partitioned", "list depends on the order"),
    ("SELECT array_agg(fare_amount) FROM partitioned", "array_agg depends on the order"),
    ("SELECT first(fare_amount), count(*) FROM partitioned", "first depends on the order"),
    ("SELECT arg_max(vendor_id, fare_amount) FROM partitioned", "arg_max depends on the order"),
    ("SELECT sum(fare_amount ORDER BY pickup_at) FROM partitioned", "sum with ORDER BY"),
    ("SELECT corr(fare_amount, tip_amount) FROM partitioned", "corr is not an aggregate the fan-out can merge"),
    ("SELECT count(DISTINCT vendor_id), count(DISTINCT payment_type) FROM partitioned", "more than one expression"),
    ("SELECT count(DISTINCT vendor_id) FILTER (WHERE tip_amount > 0) FROM partitioned", "FILTER"),
    ("SELECT count(*) FROM partitioned WHERE random() < 0.5", "random gives a different value"),
    ("SELECT now(), count(*) FROM partitioned", "now gives a different value"),
    ("SELECT count(*) FROM partitioned WHERE date < current_date", "current_date gives a different value"),
    ("SELECT uuid(), vendor_id FROM partitioned", "uuid gives a different value"),
    ("SELECT count(*) FROM partitioned USING SAMPLE 10%", "sample"),
    ("SELECT count(*) FROM partitioned a JOIN partitioned b USING (pickup_at)", "partitioned is read 2 times"),
    ("SELECT count(*) FROM partitioned WHERE fare_amount > (SELECT avg(fare_amount) FROM partitioned)",
     "partitioned is read 2 times"),
    ("SELECT count(*) FROM (SELECT * FROM partitioned WHERE tip_amount > 1) AS tipped", "inside a subquery"),
    ("WITH partitioned AS (SELECT 1 AS x) SELECT * FROM partitioned", "hides the lake table"),
    ("SELECT vendor_id FROM partitioned UNION SELECT borough FROM zones", "set operations"),
    ("SELECT DISTINCT ON (vendor_id) vendor_id, fare_amount FROM partitioned ORDER BY vendor_id, fare_amount",
     "DISTINCT ON"),
    ("SELECT fare_amount FROM partitioned LIMIT 5 OFFSET 10", "OFFSET without ORDER BY"),
    ("SELECT fare_amount FROM partitioned ORDER BY 1 LIMIT 10 PERCENT", "PERCENT"),
    ("SELECT fare_amount FROM partitioned ORDER BY 1 LIMIT (SELECT 3)", "constant numbers"),
    ("SELECT count(*) FROM zones z LEFT JOIN partitioned p ON p.pickup_location_id = z.location_id",
     "LEFT JOIN with partitioned on the right"),
    ("SELECT count(*) FROM partitioned p FULL JOIN zones z ON p.pickup_location_id = z.location_id", "FULL"),
    ("SELECT count(*) FROM partitioned POSITIONAL JOIN zones", "POSITIONAL JOIN"),
    ("SELECT vendor_id, payment_type, count(*) FROM partitioned GROUP BY ROLLUP (vendor_id, payment_type)", "ROLLUP"),
    ("SELECT vendor_id, count(*) AS vendor_id FROM partitioned GROUP BY 1", "same name"),
    ("SELECT p.vendor_id, z.borough AS vendor_id FROM partitioned p JOIN zones z ON true", "same name"),
    ("SELECT vendor_id AS v, count(*) AS n FROM partitioned GROUP BY vendor_id, n HAVING n > 1", "rename the output"),
    ("SELECT count(*), trip_distance * (SELECT 2) FROM partitioned", "without GROUP BY"),
    ("SELECT fare_amount AS fanout_fare FROM partitioned", "reserved"),
    ("SELECT DISTINCT vendor_id FROM partitioned ORDER BY fare_amount", "SELECT DISTINCT with ORDER BY"),
    ("SELECT 42", "does not read partitioned"),
    ("DESCRIBE partitioned", "DESCRIBE, SHOW and SUMMARIZE are not split"),
    ("SELECT count(*) FROM partitioned; SELECT 1", "single query"),
    ("SELEC count(*) FROM partitioned", "cannot be read"),
]


@pytest.mark.parametrize(("sql", "cause"), NOT_SPLIT)
def test_what_is_not_split_says_why(taxi, sql, cause):
    result = plan(sql, taxi.table, taxi.files, 4)
    assert isinstance(result, NotSplit)
    assert cause in result.reason
    assert result.reason.count(". ") == 0 and "\n" not in result.reason  # one sentence


def test_the_explanation_lists_tasks_partitions_and_both_sqls(taxi):
    sql = "SELECT vendor_id, count(*) FROM partitioned GROUP BY vendor_id"
    result = plan(sql, taxi.table, taxi.files, 3)
    text = result.explanation
    assert f"Fan-out over 3 tasks, reading {len(taxi.files)} files" in text
    for number, task in enumerate(result.tasks, 1):
        line = next(line for line in text.splitlines() if line.startswith(f"  task {number}: "))
        assert f"{len(task.files)} files" in line and f"({len(task.partitions())} partitions)" in line
        assert all(partition in line for partition in task.partitions()[:5])
    assert "date=2019-04-01" in text
    assert f"Each task runs, reading only its own files as the table partitioned:\n  {result.task_sql}\n" in text
    assert result.merge_sql in text and f"FROM {PARTIALS}" in result.merge_sql
    assert "read_parquet" not in text  # a task names its files; the handler writes their reader


@pytest.mark.parametrize("max_tasks", (1, 2, 4, 7, 10, 30, 100))
def test_tasks_share_the_files_evenly(taxi, max_tasks):
    result = plan("SELECT count(*) FROM partitioned", taxi.table, taxi.files, max_tasks)
    assert len(result.tasks) == min(max_tasks, len(taxi.files))
    read = sorted(file.path for task in result.tasks for file in task.files)
    assert read == sorted(file.path for file in taxi.files)
    sizes = [task.size_bytes for task in result.tasks]
    assert max(sizes) - min(sizes) <= max(file.size_bytes for file in taxi.files)


@pytest.mark.parametrize(("sql", "ordered"), TAXI_QUERIES)
def test_the_shape_needs_no_files_and_is_the_plans(taxi, sql, ordered):
    """What the runner asks before listing anything is what every plan over files then runs."""
    split = shape(sql, "partitioned")
    planned = plan(sql, taxi.table, taxi.files, 3)
    assert split.task_sql == planned.task_sql and split.merge_sql == planned.merge_sql


@pytest.mark.parametrize(("sql", "cause"), NOT_SPLIT)
def test_the_shape_says_why_without_files(sql, cause):
    split = shape(sql, "partitioned")
    assert isinstance(split, NotSplit) and cause in split.reason


def test_pruning_keeps_the_files_the_where_clause_can_reach(taxi):
    sql = ("SELECT vendor_id, count(*) FROM partitioned AS p WHERE p.date BETWEEN DATE '2019-04-03' AND '2019-04-10' "
           "AND (date = '2019-04-04' OR dayofweek(date) = 5) AND tip_amount > 1 GROUP BY 1 ORDER BY 1")
    kept = prune(sql, taxi.table, taxi.files)
    assert [file.partition["date"] for file in kept] == ["2019-04-04", "2019-04-05"]
    result = plan(sql, taxi.table, kept, 2)
    assert run_plan(taxi, result).fetchall() == taxi.connect().sql(sql).fetchall()


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM partitioned WHERE tip_amount > 1",  # nothing on the keys alone
    "SELECT count(*) FROM partitioned WHERE date > DATE '2019-04-20' OR tip_amount > 1",  # OR with a non-key
    "SELECT count(*) FROM zones JOIN partitioned ON date = DATE '2019-04-02'",  # ON is not WHERE
    "SELECT count(*) FROM partitioned WHERE date < current_date",  # not the same in every run
])
def test_pruning_keeps_every_file_when_it_cannot_tell(taxi, sql):
    assert prune(sql, taxi.table, taxi.files) == taxi.files


def test_key_types_are_those_duckdb_reads_from_the_paths(taxi, tpch):
    assert autocast_key_types(taxi.files) == {"date": "DATE"}
    assert autocast_key_types(tpch.files) == {"ship_month": "VARCHAR"}
    mixed = [PartitionFile(f"/lake/t/v={value}/f.parquet", 1, {"v": value}) for value in ("1", "20", "x")]
    assert autocast_key_types(mixed[:2]) == {"v": "BIGINT"} and autocast_key_types(mixed) == {"v": "VARCHAR"}
    when = [PartitionFile("/lake/t/at=a/f.parquet", 1, {"at": "2019-04-01 10:00:00"})]
    assert autocast_key_types(when) == {"at": "TIMESTAMP"}


def test_a_key_type_in_doubt_needs_the_caller_to_give_it(taxi):
    files = [PartitionFile("/lake/t/v=1.5/f.parquet", 1, {"v": "1.5"})]
    result = plan("SELECT count(*) FROM t", "t", files, 2)
    assert isinstance(result, NotSplit) and "pass key_types" in result.reason
    assert isinstance(plan("SELECT count(*) FROM t", "t", files, 2, key_types={"v": "VARCHAR"}), Plan)


def test_every_task_reads_the_keys_with_the_whole_tables_types(tmp_path):
    """A share holding only numeric-looking values would read them as BIGINT on its own."""
    duckdb.execute(f"COPY (SELECT range AS x, CASE WHEN range < 9 THEN range::VARCHAR ELSE 'other' END AS v "
                   f"FROM range(10)) TO {quote_literal(str(tmp_path / 't'))} (FORMAT parquet, PARTITION_BY (v))")
    lake = Lake(tmp_path, "t", partition_files(tmp_path / "t"), {})
    try:
        assert_same_result(lake, "SELECT v, typeof(v), sum(x) FROM t GROUP BY v ORDER BY v", 10, ordered=True)
    finally:
        lake.close()


def test_no_files_or_no_tasks(taxi):
    none = plan("SELECT count(*) FROM partitioned", taxi.table, [], 4)
    assert none.reason == "no files of partitioned are left to read"
    with pytest.raises(ValueError):
        plan("SELECT count(*) FROM partitioned", taxi.table, taxi.files, 0)


def test_exact_integers_and_decimals(tpch):
    """Sums of integers stay HUGEINT and sums of decimals DECIMAL(38, s): equal to the digit."""
    sql = "SELECT sum(l_orderkey * l_partkey), sum(l_extendedprice * l_tax), count(*) FROM lineitem"
    row = run_plan(tpch, plan(sql, tpch.table, tpch.files, 10)).fetchone()
    assert row == tpch.connect().sql(sql).fetchone()
    assert isinstance(row[0], int) and isinstance(row[1], Decimal)


def test_large_offsets_in_values_do_not_lose_the_variance(tmp_path):
    """Chan's combination: no sum of squares, so values far from zero keep their spread exactly enough."""
    duckdb.execute(f"COPY (SELECT 1e5 + (range % 7) * 0.5 AS x, range % 5 AS k FROM range(5000)) "
                   f"TO {quote_literal(str(tmp_path / 'far'))} (FORMAT parquet, PARTITION_BY (k))")
    lake = Lake(tmp_path, "far", partition_files(tmp_path / "far"), {})
    try:
        assert_same_result(lake, "SELECT var_samp(x), stddev_pop(x) FROM far", 5, ordered=True)
    finally:
        lake.close()


class _OneListing:
    """An engine whose every answer is one listing: what the kernel plans over it is the kernel's own work."""

    name, concurrency, shares_files = "listing", 1, False

    def __init__(self, table: protocol.PartitionedTable):
        self.answer = protocol.encode(protocol.PartitionsAnswer((table,)))

    def call(self, request: dict) -> Reply:
        return Reply(self.answer)


def test_files_too_many_for_the_task_requests_run_on_one_invocation_and_say_why():
    """A plan whose tasks could not name their files in a request (the handler would refuse them) is not split."""
    names = [f"events/day={day}/{'part-' * 30}{day}.parquet" for day in range(2000)]  # ~350 KB of names
    table = protocol.PartitionedTable("events", (protocol.Column("day", "BIGINT"),), tuple(
        protocol.PartitionFile(name, 1000, (("day", str(day)),)) for day, name in enumerate(names)))
    sql = "SELECT day, count(*) FROM events GROUP BY day"
    assert runner.decide(_OneListing(table), sql, (), 32).plan is not None  # 63 files a task fit
    too_few_tasks = runner.decide(_OneListing(table), sql, (), 2)
    assert too_few_tasks.plan is None and "too many for 2 tasks" in too_few_tasks.reason
