"""The handler's side of a fan-out: a partitioned table's files, and one task over a share of them.

A task request names its table and its files; it never carries SQL with
paths in it. Every file must be named as one of the table's own files:
a path the sandbox lets any query read (inside the lake once normalized,
outside `_lakemagic/`, no query string, escape or userinfo, so no other
bucket or host), under the table's own folder, `<table>/key=value/.../
<name>.parquet` with no wildcard, as the table's listing keeps files. That
is checked on the names alone, so a task in a fresh container lists
nothing: a named file that does not exist fails the task's read, naming it.
The handler writes the reader of those files itself, as a CTE under the
table's name that the task's SQL reads, and the whole then passes the
sandbox like any query. A task over an Iceberg or Delta table names the
snapshot it reads instead (its pin): format_tasks.py answers it.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import urllib.parse

from . import format_tasks, run, sandbox
from .errors import PermissionDenied, ProtocolError
from .lake import DATASET_FOLDER, Lake, is_partition_file, is_pattern
from .protocol import DASHBOARD_FOLDER, Column, PartitionedTable, PartitionFile, PartitionsAnswer, TaskRequest
from .results import ResultStore, StoredResult
from .sql import parse_tree, parser, quote_identifier, quote_literal, text_value


# The keys' types of each table listing this container described: binding the table to
# describe it costs S3 requests, and an unchanged listing has unchanged types.
_described: dict[tuple[str, tuple], tuple[Column, ...]] = {}
_described_lock = threading.Lock()
MAX_DESCRIBED = 64
# Lake folders that hold single-file tables, never a partitioned one.
NOT_TABLE_FOLDERS = {DATASET_FOLDER, DASHBOARD_FOLDER}


def partitions(con, lake: Lake, tables: tuple[str, ...]) -> PartitionsAnswer:
    """Of `tables`, those that are Hive-partitioned in the lake, with their files and their keys' types,
    and those that are Iceberg or Delta tables: with their data files where a fan-out over them is exact
    (format_tasks.listed), else with why not."""
    found = []
    kinds = {name: kind for name in dict.fromkeys(tables) for kind in [lake.table_format(con, name)] if kind is not None}
    listed_formats = [format_tasks.listed(con, lake, name, kind, format_tasks.MAX_STATS_CHARS // len(kinds))
                      for name, kind in kinds.items()]
    for name in dict.fromkeys(tables):
        listed = lake.partition_files(con, name)
        if not listed:
            continue
        files = tuple(PartitionFile(path, size, partition_values(path)) for path, size in listed)
        key = (lake.path(name), tuple(listed))
        with _described_lock:
            types = _described.get(key)
        if types is None:
            types = _key_types(con, lake, name, files)
            with _described_lock:
                if len(_described) >= MAX_DESCRIBED:
                    _described.clear()
                _described[key] = types
        found.append(PartitionedTable(name, types, files))
    return PartitionsAnswer(tuple(found), table_formats=tuple(item for item in listed_formats if isinstance(item, tuple)),
                            format_tables=tuple(item for item in listed_formats if not isinstance(item, tuple)))


def run_task(con, lake: Lake, results: ResultStore, request: TaskRequest) -> StoredResult:
    """The task's SQL over its files alone, read as the table `request.table`."""
    if request.pin is not None:
        return format_tasks.run_task(con, lake, results, request, with_reader)
    if request.table.lower() in NOT_TABLE_FOLDERS:
        raise PermissionDenied(f"{request.table} is not a Hive-partitioned table of the lake")
    for path in request.files:
        problem = _not_a_file_of(lake, request.table, path)
        if problem is not None:
            raise PermissionDenied(f"the task names {path!r}, which is not one of the files of "
                                   f"{request.table}: {problem}")
    keys = {key for path in request.files for key, _ in partition_values(path)}
    if {key for key, _ in request.key_types} != keys:
        raise ProtocolError(f"'key_types' must type exactly the partition keys of the task's files: "
                            f"{', '.join(sorted(keys))}")
    return run.execute_and_store(con, lake, results, with_reader(request.sql, request.table, _reader_sql(lake, request)),
                                 request.params, request.views, defined=(request.table,))


def partition_values(path: str) -> tuple[tuple[str, str], ...]:
    """The key=value folders of a partition file's path (below its table's folder), URL-decoded as DuckDB reads them."""
    folders = path.split("/")[1:-1]
    return tuple((urllib.parse.unquote(key), urllib.parse.unquote(value))
                 for key, _, value in (folder.partition("=") for folder in folders))


def _not_a_file_of(lake: Lake, table: str, path: str) -> str | None:
    """Why `path` (relative to the lake) cannot name a partition file of `table`, or None."""
    problem = sandbox.lake_path_problem(lake.path(path), lake.root)
    if problem is not None:
        return problem
    if path.split("/", 1)[0] != table:
        return f"its files are in the folder {table}/"
    if is_pattern(path):
        return "files are named whole, without wildcards"
    if not is_partition_file(path):
        return f"its files are {table}/key=value/.../<name>.parquet"
    return None


# A warm container asked the same task again (the same query over the same files) writes its SQL once.
@functools.lru_cache(maxsize=64)
def with_reader(sql: str, table: str, reader_sql: str) -> str:
    """The task's SQL with the reader of its files first among its CTEs, under the table's name.

    A CTE read once is inlined (the task's filters and columns reach the
    reader) and binds the files with the query; a view would bind them when
    made too, a HEAD request more per file. SQL that is not one statement
    DuckDB parses is left as it is: run_query refuses it before it runs.
    """
    tree = parse_tree(sql)
    if tree.get("error") or len(tree["statements"]) != 1:
        return sql
    statement = copy.deepcopy(tree["statements"][0])  # parse trees are shared: never changed
    reader = parse_tree(f"WITH {quote_identifier(table)} AS ({reader_sql}) SELECT 1")
    statement["node"]["cte_map"]["map"].insert(0, reader["statements"][0]["node"]["cte_map"]["map"][0])
    with parser() as con:
        edited = json.dumps({"error": False, "statements": [statement]})
        row = con.execute(f"SELECT json_deserialize_sql({text_value(edited)})").fetchone()
    assert row is not None  # a SELECT without FROM gives one row
    return row[0]


def _reader_sql(lake: Lake, request: TaskRequest) -> str:
    paths = ", ".join(quote_literal(lake.path(path)) for path in request.files)
    types = ", ".join(f"{quote_literal(key)}: {quote_literal(kind)}" for key, kind in request.key_types)
    options = f", hive_types = {{{types}}}" if types else ""
    return f"SELECT * FROM read_parquet([{paths}], hive_partitioning = true{options})"


def _key_types(con, lake: Lake, name: str, files: tuple[PartitionFile, ...]) -> tuple[Column, ...]:
    """The partition keys' types as the table's catalog view (the whole table) reads them."""
    lake.register_tables(con, lake.find_tables(con, {name}))
    described = {row[0].lower(): Column(row[0], row[1])
                 for row in con.execute(f"DESCRIBE main.{quote_identifier(name.lower())}").fetchall()}
    keys = dict.fromkeys(key for file in files for key, _ in file.partition)
    return tuple(described[key.lower()] for key in keys if key.lower() in described)
