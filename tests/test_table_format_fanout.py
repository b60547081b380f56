"""The fan-out exactness suite over TPC-H lineitem (scale factor 0.01) written by the formats' own writers:
an Iceberg table partitioned by month(l_shipdate) (pyiceberg) and a Delta table partitioned by ship_month
(deltalake), with supplier and nation beside them in the lake, in a local folder and in a bucket on the
local S3 server.

Every query of the Hive suite is planned over the handler's own listing of the table's data files (the
snapshot it pins), each task is sent as production sends it to the handler's `task` operation (which reads
its files alone, by name, as the table), and the merge over their results must give the same columns,
types and rows as DuckDB itself reading the table (iceberg_scan / delta_scan). The fan-out runner does the
same end to end on the embedded engine and on a handler over the bucket.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pytest

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.formats import current_iceberg_metadata
from lakelambda.handler import LakeHandler
from lakelambda.sql import quote_identifier, quote_literal
from lakelambda.storage import open_storage
from lakemagic.engines import Engine, Reply
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.fanout import runner

from table_writers import EXTENSIONS, delta_s3_options, s3_secret
from test_fanout_plan import TPCH_QUERIES, assert_same_rows, merged_tasks, same_value, sort_key

TASK_COUNTS = (3, 10)
SMALL_TABLES = ("supplier", "nation")


def format_database(secret: str = "") -> duckdb.DuckDBPyConnection:
    """DuckDB with the formats' extensions (and, for a bucket, a secret for the local S3 server), in UTC: the
    reference reader."""
    from lakelambda.database import extension_path

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for extension in EXTENSIONS + (("httpfs",) if secret else ()):
        con.execute(f"LOAD {quote_literal(extension_path(extension))}")
    if secret:
        con.execute(secret)
    con.execute("SET TimeZone = 'UTC'")
    return con


class HandlerEngine(Engine):
    """The handler over a bucket, each request and answer through JSON as to and from Lambda."""

    name, concurrency, shares_files = "handler", 4, False

    def __init__(self, handler: LakeHandler):
        self.handler = handler

    def call(self, request) -> Reply:
        return Reply(json.loads(json.dumps(self.handler(json.loads(json.dumps(protocol.encode(request))), None))))


class FormatLake:
    """A lake (a folder, or a bucket on the local S3 server) holding lineitem in one table format, and the
    tables its queries join."""

    def __init__(self, root: str, kind: str, endpoint: str = ""):
        self.root, self.kind, self.endpoint = root, kind, endpoint
        self._handler: LakeHandler | None = None

    @property
    def s3(self):
        return boto3.client("s3") if self.endpoint else None

    @property
    def source(self) -> str:
        """What DuckDB itself reads the table with."""
        if self.kind == "iceberg":
            return f"iceberg_scan({quote_literal(current_iceberg_metadata(open_storage(self.root, self.s3), 'lineitem'))})"
        return f"delta_scan({quote_literal(self.root + '/lineitem')})"

    def connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB with the formats' extensions and the small tables as views, in UTC."""
        con = format_database(s3_secret(self.endpoint) if self.endpoint else "")
        for name in SMALL_TABLES:
            path = quote_literal(f"{self.root}/dataset/{name}.parquet")
            con.execute(f"CREATE VIEW {quote_identifier(name)} AS SELECT * FROM read_parquet({path})")
        return con

    def reference(self, sql: str) -> duckdb.DuckDBPyRelation:
        con = self.connect()
        con.execute(f"CREATE VIEW lineitem AS SELECT * FROM {self.source}")
        return con.sql(sql)

    def handler(self) -> LakeHandler:
        """The lake's own handler, for the tasks (a scratch folder of its own, removed when it is closed)."""
        if self._handler is None:
            self._handler = LakeHandler(self.root, Settings(), s3=self.s3)
        return self._handler

    def engine(self) -> Engine:
        return HandlerEngine(self.handler()) if self.endpoint else EmbeddedEngine(self.root)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()


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


def _write_lineitem(kind: str, lineitem: pa.Table, location: str, catalog_folder: Path, endpoint: str = "") -> None:
    """lineitem as an Iceberg table partitioned by month(l_shipdate), or as a Delta table partitioned by ship_month."""
    if kind == "iceberg":
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.transforms import MonthTransform

        warehouse = location.rpartition("/")[0]
        options = {"s3.endpoint": endpoint, "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
                   "s3.region": "us-east-1"} if endpoint else {}
        catalog = SqlCatalog("tpch", uri=f"sqlite:///{catalog_folder}/catalog.db", warehouse=warehouse, **options)
        catalog.create_namespace_if_not_exists("lake")
        table = catalog.create_table("lake.lineitem", schema=lineitem.schema, location=location)
        with table.update_spec() as spec:
            spec.add_field("l_shipdate", MonthTransform(), "l_shipdate_month")
        table.append(lineitem)
        catalog.engine.dispose()
    else:
        from deltalake import write_deltalake

        options = {"storage_options": delta_s3_options(endpoint)} if endpoint else {}
        write_deltalake(location, lineitem, partition_by=["ship_month"], **options)


@pytest.fixture(scope="module", params=["iceberg", "delta"])
def lake(request, tmp_path_factory) -> FormatLake:
    root = tmp_path_factory.mktemp(f"tpch-{request.param}-lake")
    lineitem = _write_tpch(root)
    _write_lineitem(request.param, lineitem, f"file://{root}/lineitem" if request.param == "iceberg"
                    else str(root / "lineitem"), tmp_path_factory.mktemp("tpch-catalog"))
    found = FormatLake(str(root), request.param)
    yield found
    found.close()


@pytest.fixture(scope="module", params=["iceberg", "delta"])
def s3_lake(request, aws_environment, moto_endpoint, tmp_path_factory) -> FormatLake:
    bucket = f"tpch-{request.param}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    local = tmp_path_factory.mktemp(f"tpch-{request.param}-files")
    lineitem = _write_tpch(local)
    for name in SMALL_TABLES:
        s3.upload_file(str(local / "dataset" / f"{name}.parquet"), bucket, f"dataset/{name}.parquet")
    _write_lineitem(request.param, lineitem, f"s3://{bucket}/lineitem", tmp_path_factory.mktemp("tpch-catalog"),
                    moto_endpoint)
    found = FormatLake(f"s3://{bucket}", request.param, moto_endpoint)
    yield found
    found.close()


def _run_tasks(lake: FormatLake, decision: runner.Decision) -> duckdb.DuckDBPyRelation:
    """Every task sent as the fan-out sends it (runner.task_requests: the pin and the files) to the handler's
    `task` operation, then the merge over their pages as `partials` alone, in UTC."""
    requests = list(runner.task_requests(decision, {}, ()))
    assert all(request.pin == decision.pin and not request.key_types for request in requests)
    return merged_tasks(lake.handler(), requests, decision.plan.merge_sql)


def _assert_handler_tasks_exact(lake: FormatLake, sql: str, ordered: bool, max_tasks: int) -> None:
    decision = runner.decide(lake.engine(), sql, (), max_tasks)
    if decision.plan is None:  # a Delta filter on its partition column left one file: one task's worth
        assert lake.kind == "delta" and "(one of" in decision.reason and "after pruning" in decision.reason, \
            decision.reason
        return
    assert decision.pin is not None and len(decision.plan.tasks) == max_tasks
    assert_same_rows(_run_tasks(lake, decision), lake.reference(sql), ordered)


@pytest.mark.parametrize("max_tasks", TASK_COUNTS)
@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES)
def test_the_handlers_tasks_over_the_snapshots_data_files_merge_to_what_duckdb_reads(lake, sql, ordered, max_tasks):
    _assert_handler_tasks_exact(lake, sql, ordered, max_tasks)


@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES)
def test_the_same_on_a_bucket(s3_lake, sql, ordered):
    _assert_handler_tasks_exact(s3_lake, sql, ordered, TASK_COUNTS[0])


def _assert_runner_exact(lake: FormatLake, sql: str, ordered: bool) -> None:
    result = runner.run(lake.engine(), sql, {}, 1000, (), 8)
    receipt = result.stats.fanout
    assert receipt.tasks == 8 or "after pruning" in (receipt.not_split or ""), receipt
    # Both as a user takes the whole result, as Arrow (where a HUGEINT is a DECIMAL(38, 0)).
    got = result.to_dataframe(kind="arrow").to_pylist()
    want = lake.reference(sql).to_arrow_table().to_pylist()
    rows, expected = [tuple(row.values()) for row in got], [tuple(row.values()) for row in want]
    if not ordered:
        rows, expected = sorted(rows, key=sort_key), sorted(expected, key=sort_key)
    assert len(rows) == len(expected)
    for got_row, want_row in zip(rows, expected):
        assert all(map(same_value, got_row, want_row)), (got_row, want_row)


@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES)
def test_the_runner_fans_it_out_exactly(lake, sql, ordered):
    _assert_runner_exact(lake, sql, ordered)


@pytest.mark.parametrize(("sql", "ordered"), TPCH_QUERIES[:3])
def test_the_runner_fans_it_out_exactly_from_a_bucket(s3_lake, sql, ordered):
    _assert_runner_exact(s3_lake, sql, ordered)


@pytest.mark.parametrize("where", ["ship_month BETWEEN '1995-01' AND '1995-04'", "ship_month IN ('1993-02', '1997-11')",
                                   "ship_month >= '1998-06' OR ship_month IS NULL"])
@pytest.mark.parametrize("lake", ["delta"], indirect=True)
def test_a_delta_filter_on_its_partition_column_reads_only_the_files_duckdb_says_it_needs(lake, where):
    sql = f"SELECT ship_month, count(*) FROM lineitem WHERE {where} GROUP BY ship_month"
    decision = runner.decide(lake.engine(), sql, (), 64)
    read = sorted(file.path for task in decision.plan.tasks for file in task.files)
    needed = lake.connect().sql(f"SELECT DISTINCT filename FROM delta_scan({quote_literal(lake.root + '/lineitem')}, "
                                f"filename => true) WHERE {where}").fetchall()
    assert read == sorted(name[len(lake.root) + 1:] for (name,) in needed) and len(read) > 1
    assert_same_rows(_run_tasks(lake, decision), lake.reference(sql), ordered=False)


@pytest.mark.parametrize("where", ["l_shipdate BETWEEN DATE '1995-01-01' AND DATE '1995-03-31'",
                                   "l_shipdate < DATE '1992-04-15'", "l_shipdate >= TIMESTAMP '1998-08-31 12:00'"])
@pytest.mark.parametrize("lake", ["iceberg"], indirect=True)
def test_an_iceberg_filter_on_its_month_partitions_source_reads_only_the_files_duckdb_says_it_needs(lake, where):
    sql = f"SELECT count(*), sum(l_quantity) FROM lineitem WHERE {where}"
    decision = runner.decide(lake.engine(), sql, (), 64)
    read = sorted(file.path for task in decision.plan.tasks for file in task.files)
    answer = protocol.parse_answer(lake.handler()(protocol.encode(protocol.PartitionsRequest(("lineitem",)))))
    every = ", ".join(quote_literal(f"{lake.root}/{file.path}") for file in answer.format_tables[0].files)
    needed = lake.connect().sql(f"SELECT DISTINCT filename FROM read_parquet([{every}], filename = true) "
                                f"WHERE {where}").fetchall()
    assert read == sorted(name[len(lake.root) + 1:] for (name,) in needed) and len(read) > 1
    assert len(read) < len(answer.format_tables[0].files)
    assert_same_rows(_run_tasks(lake, decision), lake.reference(sql), ordered=True)


@pytest.mark.parametrize("where", ["l_receiptdate < DATE '1992-03-15'",
                                   "l_receiptdate BETWEEN DATE '1996-06-10' AND DATE '1996-07-20'",
                                   "l_commitdate >= TIMESTAMP '1998-10-20 12:00'",
                                   "l_receiptdate IN (DATE '1993-05-04', DATE '1997-12-24')"])
def test_a_filter_on_a_column_no_partition_holds_is_pruned_by_the_files_statistics(lake, where):
    """lineitem's receipt and commit dates follow its ship date, so each month's files hold a narrow range of
    them: the listing's statistics prune what its partition values cannot, and the answer stays exact."""
    sql = f"SELECT count(*), sum(l_extendedprice) FROM lineitem WHERE {where}"
    files = protocol.parse_answer(lake.handler()(protocol.encode(protocol.PartitionsRequest(("lineitem",))))) \
        .format_tables[0].files
    assert all({"l_receiptdate", "l_commitdate", "l_orderkey"} <= set(file.lower) & set(file.upper) for file in files)
    decision = runner.decide(lake.engine(), sql, (), 64)
    read = {file.path for task in decision.plan.tasks for file in task.files}
    with lake.connect() as con:  # the files DuckDB finds a passing row in, reading each alone
        needed = {path for path in (file.path for file in files) if con.execute(
            f"SELECT count(*) FROM read_parquet({quote_literal(f'{lake.root}/{path}')}) WHERE {where}").fetchone()[0]}
    assert needed <= read and len(read) < len(files) // 4, (len(needed), len(read), len(files))
    assert_same_rows(_run_tasks(lake, decision), lake.reference(sql), ordered=True)
    result = runner.run(lake.engine(), sql, {}, 1000, (), 64)
    assert result.stats.fanout.tasks == len(read)
    assert result.to_dataframe(kind="arrow").to_pylist() == lake.reference(sql).to_arrow_table().to_pylist()
