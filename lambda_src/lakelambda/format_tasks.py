"""The handler's side of a fan-out over an Iceberg or Delta table: its listing, and one task over a share
of a pinned snapshot's data files.

A task names its table, the pin of the snapshot the listing read, and its
files; nothing else of the table. The handler reads that snapshot itself
(format_files.split: every file it references proven inside the lake, kept per
container by pin), refuses a file that is not one of its live data files
(PermissionDenied) and a snapshot that is not split exactly, and writes the
reader: each file read alone by name, `SELECT CAST(col AS type) AS col, ...
FROM read_parquet(<file>)`, a Delta partition column a constant from its log
and a column the file lacks NULL (or an Iceberg identity partition's value),
joined by UNION ALL, as the CTE named after the table. The whole then passes
the sandbox like any query.
"""

from __future__ import annotations

from . import format_files, run, sandbox
from .errors import PermissionDenied, TableMetadataError, UnsupportedTableFeature
from .fields import (MAX_COLUMNS, MAX_COUNT, MAX_FILE_PATH_CHARS, MAX_LISTED_FILES, MAX_PARTITION_KEYS,
                     MAX_RESPONSE_BYTES)
from .format_answers import (BOUND_PATTERN, MAX_BOUND_CHARS, MAX_BOUND_COLUMN_CHARS, TRANSFORM_PATTERN, FormatFile,
                             FormatTable, TableFormat, format_file_problem, format_pin_problem)
from .lake import Lake
from .protocol import TaskRequest
from .results import ResultStore, StoredResult
from .sql import quote_identifier, quote_literal, text_value

MAX_KEY_CHARS = 128  # fields.KeyName's
# The most characters a listing's statistics take, all its tables' together: a quarter of what an answer holds.
MAX_STATS_CHARS = MAX_RESPONSE_BYTES // 4


def listed(con, lake: Lake, name: str, kind: TableFormat,
           stats_chars: int = MAX_STATS_CHARS) -> FormatTable | tuple[str, TableFormat, str]:
    """The table-format table `name` as a fan-out may split it, or (name, kind, why not); its files'
    statistics only if they take at most `stats_chars` characters together."""

    source = lake.find_tables(con, {name}).get(name.lower())
    pin = source[len(lake.root) + 1:] if source else ""
    if not source or format_pin_problem(name, kind, pin) is not None:
        return name, kind, f"the query names it {name}, not as its folder is spelled"
    found = format_files.split(con, lake, name, pin)
    if found.reason is not None:
        return name, kind, found.reason[:1000]
    # What the table's metadata says travels only within the answer's bounds (the notebook checks them too).
    if not found.columns or len(found.columns) > MAX_COLUMNS or len(found.files) > MAX_LISTED_FILES:
        return name, kind, f"it has {len(found.columns)} columns and {len(found.files)} data files, more than a listing holds"
    for file in found.files:
        problem = format_file_problem(name, file.path) or (None if 0 <= file.bytes <= MAX_COUNT else "has no size")
        if problem is not None:
            return name, kind, f"a data file {problem} ({file.path[:200]})"
    columns = {column.name.lower() for column in found.columns}
    lower, upper = ([_bounds(getattr(file, side), columns) for file in found.files] for side in ("lower", "upper"))
    if sum(len(column) + len(value) + 6 for bounds in (*lower, *upper) for column, value in bounds.items()) \
            > stats_chars:  # statistics only prune: left out rather than make the answer too large
        lower = upper = [{} for _ in found.files]
    # A partition value that cannot travel (too long, an unknown transform) is left out: the notebook then
    # keeps the file, whatever the filter.
    return FormatTable(name, kind, pin, found.columns, tuple(
        FormatFile(file.path, file.bytes, tuple(
            (column, how, value) for column, how, value in file.partition
            if column.lower() in columns and 0 < len(column) <= MAX_KEY_CHARS and TRANSFORM_PATTERN.fullmatch(how)
            and len(value or "") <= MAX_FILE_PATH_CHARS)[:MAX_PARTITION_KEYS], low, high)
        for file, low, high in zip(found.files, lower, upper)))


def _bounds(bounds: dict[str, str], columns: set[str]) -> dict[str, str]:
    """The statistics that travel (format_answers.Bounds): of the table's columns, each bound as the wire has it."""
    return {column: value for column, value in bounds.items() if column.lower() in columns
            and 0 < len(column) <= MAX_BOUND_COLUMN_CHARS and len(value) <= MAX_BOUND_CHARS
            and BOUND_PATTERN.fullmatch(value)}


def run_task(con, lake: Lake, results: ResultStore, request: TaskRequest, with_reader) -> StoredResult:
    """The task's SQL over its share of the pinned snapshot's data files, read as the table `request.table`."""
    assert request.pin is not None
    kind = format_files.pin_kind(request.table, request.pin)
    problem = sandbox.lake_path_problem(lake.path(request.pin), lake.root) if kind else "it pins no snapshot of it"
    if problem is not None or lake.table_format(con, request.table) != kind:
        raise PermissionDenied(f"the task pins {request.pin[:300]!r}, which is not a snapshot of the "
                               f"{kind or 'Iceberg or Delta'} table {request.table}: {problem or 'no such table'}")
    found = format_files.split(con, lake, request.table, request.pin)
    if found.reason is not None:
        raise UnsupportedTableFeature(f"{request.table} is not split over its data files: {found.reason}")
    live = {file.path: file for file in found.files}
    for path in request.files:
        if path not in live:
            raise PermissionDenied(f"the task names {path[:300]!r}, which is not a live data file of the snapshot "
                                   f"of {request.table} that {request.pin} pins")
        named = format_file_problem(request.table, path)  # a live one too: a log may name a glob
        if named is not None:
            raise PermissionDenied(f"the task names {path[:300]!r}, which {named}")
    footers = format_files.top_level_columns(con, [lake.path(path) for path in request.files])
    for path in request.files:
        if lake.path(path) not in footers:  # parquet_schema names each file as it was given
            raise TableMetadataError(f"the footer of {lake.path(path)} names no columns")
    problem = format_files.names_problem(found, footers)
    if problem is not None:
        raise UnsupportedTableFeature(f"{request.table} is not split over its data files: {problem}")
    reader = " UNION ALL ".join(_file_reader(found, live[path], footers[lake.path(path)], lake.path(path))
                                for path in request.files)
    return run.execute_and_store(con, lake, results, with_reader(request.sql, request.table, reader), request.params,
                                 request.views, defined=(request.table,))


def _file_reader(found: format_files.Split, file: format_files.DataFile, present: dict, path: str) -> str:
    """One data file as the table's rows: its columns cast to the table's types, by name; a Delta partition
    column the constant its log gives; a column the file lacks its Iceberg identity partition value or NULL."""
    constants = {column.lower(): value for column, how, value in file.partition if how == "identity"}
    in_file = {name.lower() for name in present}
    selected = []
    for column in found.columns:
        name, key = quote_identifier(column.name), column.name.lower()
        constant = constants.get(key)
        if key in constants and (found.kind == format_files.formats.DELTA or key not in in_file):
            value = "NULL" if constant is None else text_value(constant)  # a NUL would end a literal
        else:
            value = name if key in in_file else "NULL"
        selected.append(f"CAST({value} AS {column.type}) AS {name}")
    return f"SELECT {', '.join(selected)} FROM read_parquet({quote_literal(path)})"
