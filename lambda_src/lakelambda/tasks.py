"""The handler's side of a fan-out: a partitioned table's files, and one task over a share of them.

A task request names its table and its files; it never carries SQL with
paths in it. Every file must be one the table's own listing holds (no other
path can match: not another table's, bucket's or host's, no `..`, no query
string), and the handler writes the reader of those files itself, as a
temporary view under the table's name that the task's SQL reads. That view
and the task's SQL then pass the sandbox like any query's.
"""

from __future__ import annotations

import threading
import urllib.parse

from . import run
from .errors import PermissionDenied, ProtocolError
from .lake import Lake
from .protocol import Column, PartitionedTable, PartitionFile, PartitionsAnswer, TaskRequest, View
from .results import ResultStore, StoredResult
from .sql import quote_identifier, quote_literal


# The keys' types of each table listing this container described: binding the table to
# describe it costs S3 requests, and an unchanged listing has unchanged types.
_described: dict[tuple[str, tuple], tuple[Column, ...]] = {}
_described_lock = threading.Lock()
MAX_DESCRIBED = 64


def partitions(con, lake: Lake, tables: tuple[str, ...]) -> PartitionsAnswer:
    """Of `tables`, those that are Hive-partitioned in the lake, with their files and their keys' types."""
    found = []
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
    return PartitionsAnswer(tuple(found))


def run_task(con, lake: Lake, results: ResultStore, request: TaskRequest) -> StoredResult:
    """The task's SQL over its files alone, read as the table `request.table`."""
    listed = lake.partition_files(con, request.table)
    if listed is None:
        raise PermissionDenied(f"{request.table} is not a Hive-partitioned table of the lake")
    unknown = set(request.files) - {path for path, _ in listed}
    if unknown:  # a file new since this container listed the table: list it once more
        unknown -= {path for path, _ in lake.partition_files(con, request.table, fresh=True) or ()}
    if unknown:
        raise PermissionDenied(f"the task names {min(unknown)!r}, which is not one of the files of {request.table}")
    keys = {key for path in request.files for key, _ in partition_values(path)}
    if {key for key, _ in request.key_types} != keys:
        raise ProtocolError(f"'key_types' must type exactly the partition keys of the task's files: "
                            f"{', '.join(sorted(keys))}")
    reader = View(request.table, _reader_sql(lake, request))
    return run.run_query(con, lake, results, request.sql, request.params, (reader, *request.views))


def partition_values(path: str) -> tuple[tuple[str, str], ...]:
    """The key=value folders of a partition file's path (below its table's folder), URL-decoded as DuckDB reads them."""
    folders = path.split("/")[1:-1]
    return tuple((urllib.parse.unquote(key), urllib.parse.unquote(value))
                 for key, _, value in (folder.partition("=") for folder in folders))


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
