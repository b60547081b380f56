"""The fan-out exactness suite over TPC-H lineitem (scale factor 0.01) written by the formats' own writers:
an Iceberg table partitioned by month(l_shipdate) (pyiceberg) and a Delta table partitioned by ship_month
(deltalake), with supplier and nation beside them in the lake.

Two things are proven against DuckDB itself reading the table (iceberg_scan / delta_scan):
- what lakemagic answers today through the fan-out runner: the query runs in one invocation, says why,
  and is exact;
- the premise of fanning these tables out (docs/table-format-fanout.md): each data file of a snapshot with
  no delete files, read alone by name with read_parquet as a task's share of the table (a Delta file's
  partition values added from its log), gives the whole query's answer once the plan's tasks are merged.
  The tasks here run in a test database, not through the handler's `task` operation (which reads only
  Hive files today): when the handler reads table-format files, these plans run through it instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from lakelambda.formats import current_iceberg_metadata
from lakelambda.sql import quote_identifier, quote_literal
from lakelambda.storage import open_storage
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.fanout import PARTIALS, Plan, PartitionFile, plan
from lakemagic.fanout import runner

from table_writers import EXTENSIONS
from test_fanout_plan import TPCH_QUERIES, same_value, sort_key

TASK_COUNTS = (3, 10)
SMALL_TABLES = ("supplier", "nation")


def format_database() -> duckdb.DuckDBPyConnection:
    """DuckDB with the formats' extensions, in UTC: the reference reader."""
    from lakelambda.database import extension_path

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for extension in EXTENSIONS:
        con.execute(f"LOAD {quote_literal(extension_path(extension))}")
    con.execute("SET TimeZone = 'UTC'")
    return con


class FormatLake:
    """A lake folder holding lineitem in one table format, and the tables its queries join."""

    def __init__(self, root: Path, kind: str):
        self.root, self.kind = root, kind

    @property
    def source(self) -> str:
        """What DuckDB itself reads the table with."""
        if self.kind == "iceberg":
            metadata = current_iceberg_metadata(open_storage(str(self.root), None), "lineitem")
            return f"iceberg_scan({quote_literal(metadata)})"
        return f"delta_scan({quote_literal(str(self.root / 'lineitem'))})"

    def connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB with the formats' extensions and the small tables as views, in UTC."""
        con = format_database()
        for name in SMALL_TABLES:
            path = quote_literal(str(self.root / "dataset" / f"{name}.parquet"))
            con.execute(f"CREATE VIEW {quote_identifier(name)} AS SELECT * FROM read_parquet({path})")
        return con

    def reference(self, sql: str) -> duckdb.DuckDBPyRelation:
        con = self.connect()
        con.execute(f"CREATE VIEW lineitem AS SELECT * FROM {self.source}")
        return con.sql(sql)

    def data_files(self, con) -> list[tuple[str, int, dict[str, str]]]:
        """The snapshot's data files: path, bytes, and (Delta) the partition values its log gives them.
        Refuses (fails the test) where the snapshot has delete files or deletion vectors: no exact split."""
        if self.kind == "iceberg":
            metadata = self.source[len("iceberg_scan("):-1]
            rows = con.execute(f"SELECT file_path, record_count, manifest_content, content "
                               f"FROM iceberg_metadata({metadata}) WHERE status <> 'DELETED'").fetchall()
            assert {content for *_, content in rows} == {"EXISTING"} and \
                {content for _, _, content, _ in rows} == {"DATA"}, rows[:3]  # no delete files
            return [(path.removeprefix("file://"), records, {}) for path, records, *_ in rows]
        from deltalake import DeltaTable

        table = DeltaTable(str(self.root / "lineitem"))
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        log = [json.loads(line) for commit in sorted((self.root / "lineitem" / "_delta_log").glob("*.json"))
               for line in commit.read_text().splitlines() if line.strip()]
        assert not any(action["add"].get("deletionVector") for action in log if "add" in action)
        return [(str(self.root / "lineitem" / action["path"]), action["size_bytes"],
                 {key[len("partition."):]: value for key, value in action.items() if key.startswith("partition.")})
                for action in actions]


def _write_tpch(root: Path) -> pa.Table:
    """lineitem (with its ship month as a column, as the Hive suite has it) as Arrow, supplier and nation as files."""
    package = pytest.importorskip("duckdb_extension_tpch", reason="pip install duckdb-extension-tpch==1.5.5")
    extension = Path(package.__file__).parent / "extensions" / "v1.5.5" / "tpch.duckdb_extension"
    (root / "dataset").mkdir()
    with duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}) as con:
        con.execute(f"LOAD {quote_literal(str(extension))}")
        con.execute("CALL dbgen(sf = 0.01)")
        for name in SMALL_TABLES:
            con.execute(f"COPY {name} TO {quote_literal(str(root / 'dataset' / f'{name}.parquet'))}")
        return con.sql("SELECT *, strftime(l_shipdate, '%Y-%m') AS ship_month FROM lineitem").to_arrow_table()


@pytest.fixture(scope="module", params=["iceberg", "delta"])
def lake(request, tmp_path_factory) -> FormatLake:
    root = tmp_path_factory.mktemp(f"tpch-{request.param}-lake")
    lineitem = _write_tpch(root)
    if request.param == "iceberg":
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.transforms import MonthTransform

        catalog_folder = tmp_path_factory.mktemp("tpch-iceberg-catalog")
        catalog = SqlCatalog("tpch", uri=f"sqlite:///{catalog_folder}/catalog.db", warehouse=f"file://{root}")
        catalog.create_namespace_if_not_exists("lake")
        table = catalog.create_table("lake.lineitem", schema=lineitem.schema, location=f"file://{root}/lineitem")
        with table.update_spec() as spec:
            spec.add_field("l_shipdate", MonthTransform(), "l_shipdate_month")
        table.append(lineitem)
        catalog.engine.dispose()
    else:
        from deltalake import write_deltalake

        write_deltalake(str(root / "lineitem"), lineitem, partition_by=["ship_month"])
    return FormatLake(root, request.param)


def _task_reader(lake: FormatLake, con, files: tuple[PartitionFile, ...], partition_values: dict) -> str:
    """The design's task reader: the task's data files alone, by name, in the table's columns and types
    (a Delta file's partition columns are constants its log gives, cast to the column's type)."""
    columns = con.execute(f"DESCRIBE SELECT * FROM {lake.source}").fetchall()
    parts = []
    for file in files:
        values = partition_values[file.path]
        selected = ", ".join(f"CAST({quote_literal(values[name])} AS {kind}) AS {quote_identifier(name)}"
                             if name in values else f"CAST({quote_identifier(name)} AS {kind}) AS {quote_identifier(name)}"
                             for name, kind, *_ in columns)
        parts.append(f"SELECT {selected} FROM read_parquet({quote_literal(file.path)})")
    return " UNION ALL ".join(parts)


def _run_design_plan(lake: FormatLake, planned: Plan, partition_values: dict) -> duckdb.DuckDBPyRelation:
    """Each task's SQL over its files alone (the table is the task's reader), its rows kept in `partials`
    with their types (an Arrow round trip would make a HUGEINT a DECIMAL), then the merge."""
    con = lake.connect()
    for number, task in enumerate(planned.tasks):
        con.execute(f"CREATE OR REPLACE VIEW lineitem AS {_task_reader(lake, con, task.files, partition_values)}")
        into = f"CREATE TABLE {PARTIALS} AS " if number == 0 else f"INSERT INTO {PARTIALS} "
        con.execute(into + planned.task_sql)
    con.execute("DROP VIEW lineitem")
    return con.sql(planned.merge_sql)


def _assert_same(got_relation, want_relation, ordered: bool) -> None:
    assert got_relation.columns == want_relation.columns
    assert [str(kind) for kind in got_relation.types] == [str(kind) for kind in want_relation.types]
    got, want = got_relation.fetchall(), want_relation.fetchall()
    if not ordered:
        got, want = sorted(got, key=sort_key), sorted(want, key=sort_key)
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want):
        assert all(map(same_value, got_row, want_row)), (got_row, want_row)


@pytest.mark.parametrize("max_tasks", TASK_COUNTS)
@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES)
def test_each_data_file_read_alone_merges_to_what_duckdb_reads(lake, sql, ordered, max_tasks):
    con = lake.connect()
    listed = lake.data_files(con)
    con.close()
    files = [PartitionFile(path, size) for path, size, _ in listed]
    planned = plan(sql, "lineitem", files, max_tasks)
    assert isinstance(planned, Plan), planned
    assert len(planned.tasks) == max_tasks
    _assert_same(_run_design_plan(lake, planned, {path: values for path, _, values in listed}),
                 lake.reference(sql), ordered)


@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES)
def test_today_the_runner_reads_it_in_one_invocation_exactly(lake, sql, ordered):
    result = runner.run(EmbeddedEngine(str(lake.root)), sql, {}, 1000, (), 8)
    kind = "an Iceberg" if lake.kind == "iceberg" else "a Delta"
    assert result.stats.fanout.not_split == f"lineitem is {kind} table; Iceberg/Delta tables run in one invocation"
    # Both as a user takes the whole result, as Arrow (where a HUGEINT is a DECIMAL(38, 0)).
    got = result.to_dataframe(kind="arrow").to_pylist()
    want = lake.reference(sql).to_arrow_table().to_pylist()
    rows, expected = [tuple(row.values()) for row in got], [tuple(row.values()) for row in want]
    if not ordered:
        rows, expected = sorted(rows, key=sort_key), sorted(expected, key=sort_key)
    assert len(rows) == len(expected)
    for got_row, want_row in zip(rows, expected):
        assert all(map(same_value, got_row, want_row)), (got_row, want_row)
