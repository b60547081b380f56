"""Running one query and serving pages of its stored result, with DuckDB.

Plain functions over a DuckDB connection: testable without Lambda, and the
only place in the project that runs a user's SQL.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass

import duckdb

from . import page_format
from .lake import Lake
from .results import ResultStore
from .page_format import quote_identifier, quote_literal
from .protocol import MAX_PART_BYTES, MAX_RESPONSE_BYTES, PAGE_FORMAT, View

# Small row groups keep a page read small: a page touches one or two of them.
RESULT_ROW_GROUP_SIZE = 16_384
_COLUMNS_KEY = "lakemagic_columns"
# Statements that DuckDB runs as queries but that COPY cannot take directly.
_NEEDS_SUBQUERY = {"DESCRIBE", "SHOW", "SUMMARIZE"}


class QueryError(Exception):
    """An error to answer with: a type the notebook shows, and where in the SQL it is."""

    def __init__(self, error_type: str, message: str, position: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.position = position


@dataclass(frozen=True)
class StoredResult:
    result_id: str
    columns: list[dict]
    total_rows: int
    path: str
    size_bytes: int


@dataclass(frozen=True)
class _Placed:
    """SQL text with the user's statement inside it, starting `line_offset` lines down."""

    text: str
    line_offset: int = 0

    def wrapped(self, prefix: str, suffix: str = "") -> "_Placed":
        # The user's SQL always starts on a line of its own, so DuckDB's
        # "LINE n" maps back to the user's line n - line_offset.
        return _Placed(f"{prefix}\n{self.text}\n{suffix}", self.line_offset + prefix.count("\n") + 1)


def run_query(
    con: duckdb.DuckDBPyConnection, lake: Lake, results: ResultStore, sql: str, params: dict, views: tuple[View, ...] = ()
) -> StoredResult:
    """Run `sql` once, store its whole result as Parquet in the lake, and describe it."""
    statement = _prepare(con, lake, sql, views)
    body = _Placed(statement)
    if _first_keyword(statement) in _NEEDS_SUBQUERY:
        body = body.wrapped("SELECT * FROM (", ")")
    columns = _describe(con, body, params, sql)
    for column in columns:
        if "UNION(" in column["type"]:
            raise QueryError("UnsupportedType", f"column {column['name']!r} is a UNION, which cannot travel to the notebook; "
                             "cast it to VARCHAR or pick a member with union_extract")
    names = [column["name"] for column in columns]
    distinct = _distinct_names(names)
    columns = [dict(column, name=name) for column, name in zip(columns, distinct)]
    if distinct != names or any(page_format.storage_type(c["type"]) != c["type"] for c in columns):
        # Rename by position and store lossy types as text; otherwise the query is copied as it is.
        aliases = ", ".join(quote_identifier(c["name"]) for c in columns)
        projection = page_format.storage_projection(columns)
        body = body.wrapped("SELECT " + projection + " FROM (", f") AS lakemagic_result({aliases})")
    result_id = secrets.token_urlsafe(24)
    path = results.local_path(result_id)
    copy = body.wrapped("COPY (", f") TO {quote_literal(path)} ({_parquet_options(columns)})")
    _execute(con, copy, params, sql)
    results.publish(result_id)
    return open_result(con, results, result_id)


def materialize(con: duckdb.DuckDBPyConnection, lake: Lake, scratch: str, sql: str, path: str,
                views: tuple[View, ...] = ()) -> tuple[str, int, int]:
    """Write the result of `sql` to `path` in the lake; return where, how many rows and bytes.

    The file is finished locally first and then put in place whole, so a
    failed query leaves the previous file as it was.
    """
    statement = _prepare(con, lake, sql, views)
    local = os.path.join(scratch, f"materialize-{secrets.token_hex(8)}.parquet")
    try:
        copy = _Placed(statement).wrapped("COPY (", f") TO {quote_literal(local)} (FORMAT parquet, COMPRESSION zstd)")
        rows = _execute(con, copy, {}, sql).fetchone()[0]
        size = os.path.getsize(local)
        return lake.put(local, path), rows, size
    finally:
        if os.path.exists(local):
            os.remove(local)


def _prepare(con, lake: Lake, sql: str, views: tuple[View, ...]) -> str:
    """Check the query, make the lake tables and the notebook's views it uses; return its statement."""
    statement = _single_query(sql)
    view_statements = [(view, _single_query(view.sql)) for view in views]
    mentioned = referenced_tables(statement).union(*(referenced_tables(text) for _, text in view_statements))
    lake.register_tables(con, mentioned - {view.name for view in views})  # a view shadows a lake table
    for view, text in view_statements:
        try:
            con.execute(f"CREATE TEMP VIEW {quote_identifier(view.name)} AS\n{text}")
        except duckdb.Error as exc:
            error = _query_error(exc, 1, view.sql)
            raise QueryError(error.error_type, f"in view {view.name}: {error.message}") from None
    return statement


def open_result(con: duckdb.DuckDBPyConnection, results: ResultStore, result_id: str) -> StoredResult:
    """Find a stored result by id, from any container that can see the lake."""
    path = results.locate(result_id)
    try:
        columns, total_rows, size_bytes = con.execute(
            f"SELECT (SELECT value FROM parquet_kv_metadata({quote_literal(path)}) WHERE key = '{_COLUMNS_KEY}'), "
            f"num_rows, file_size_bytes FROM parquet_file_metadata({quote_literal(path)})"
        ).fetchone()
    except duckdb.IOException as exc:
        raise QueryError("ResultNotFound", f"result {result_id} does not exist or has expired; run the query again") from exc
    return StoredResult(result_id, json.loads(columns), total_rows, path, size_bytes)


def read_part(results: ResultStore, result: StoredResult, start: int, length: int) -> dict:
    """Bytes [start, start + length) of the stored result file, as they are."""
    data = results.read_range(result.path, start, length) if start < result.size_bytes else b""
    return {"start": start, "length": len(data), "data": base64.b64encode(data).decode("ascii")}


def read_page(con: duckdb.DuckDBPyConnection, result: StoredResult, offset: int, limit: int, pages_folder: str) -> dict:
    """Encode rows [offset, offset + limit) of a stored result as one page.

    Rows are picked by their row number in the file, which DuckDB resolves
    from row-group statistics: the cost does not grow with the offset. A page
    that would not fit in a Lambda response is cut short; `row_count` says
    how many rows it holds.
    """
    limit = max(0, min(limit, result.total_rows - offset))
    budget = MAX_PART_BYTES  # the most raw bytes that fit in a response once base64-encoded
    if _is_whole_local_file(result, offset, limit, budget):
        return {"offset": 0, "row_count": limit, "format": PAGE_FORMAT, "data": page_format.encode_file(result.path)}
    limit = min(limit, _rows_that_fit(result, budget))
    page_path = os.path.join(pages_folder, f"{secrets.token_hex(8)}.parquet")
    try:
        while True:
            size = _write_rows(con, result, offset, limit, page_path)
            if size <= budget or limit <= 1:
                break
            limit = max(1, math.floor(limit * budget / size * 0.9))
        if size > budget:
            raise QueryError("RowTooLarge", f"row {offset} alone is larger than the {MAX_RESPONSE_BYTES}-byte response limit")
        data = page_format.encode_file(page_path)
    finally:
        if os.path.exists(page_path):
            os.remove(page_path)
    return {"offset": offset, "row_count": limit, "format": PAGE_FORMAT, "data": data}


def _is_whole_local_file(result: StoredResult, offset: int, limit: int, budget: int) -> bool:
    """A small result is its own page: the stored file goes out as it is."""
    return (
        offset == 0
        and limit == result.total_rows
        and not result.path.startswith("s3://")
        and result.size_bytes <= budget
    )


def _rows_that_fit(result: StoredResult, budget: int) -> int:
    """A first guess from the stored file's bytes per row, with room for worse compression."""
    if result.total_rows == 0:
        return 1
    bytes_per_row = result.size_bytes / result.total_rows
    return max(1, math.floor(budget / bytes_per_row * 0.6))


def _write_rows(con, result: StoredResult, offset: int, limit: int, page_path: str) -> int:
    stored = [f"c{i}" for i in range(len(result.columns))]
    # Columns are read by position, so a user's column named row_number cannot clash.
    select = ", ".join(f"{s} AS {quote_identifier(c['name'])}" for s, c in zip(stored, result.columns))
    con.execute(
        f"COPY (SELECT {select} FROM read_parquet({quote_literal(result.path)}, file_row_number = true) "
        f"AS r({', '.join(stored)}, row_number) WHERE row_number >= {offset} AND row_number < {offset + limit}) "
        f"TO {quote_literal(page_path)} (FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})"
    )
    return os.path.getsize(page_path)


def _parquet_options(columns: list[dict]) -> str:
    metadata = quote_literal(json.dumps(columns))
    return (
        f"FORMAT parquet, COMPRESSION {page_format.STORAGE_COMPRESSION}, ROW_GROUP_SIZE {RESULT_ROW_GROUP_SIZE}, "
        f"KV_METADATA {{{_COLUMNS_KEY}: {metadata}}}"
    )


def _describe(con, body: _Placed, params: dict, sql: str) -> list[dict]:
    rows = _execute(con, body.wrapped("DESCRIBE"), params, sql).fetchall()
    return [{"name": row[0], "type": row[1]} for row in rows]


def _execute(con, placed: _Placed, params: dict, sql: str):
    # Internal statements carry their values as quoted literals: binding Python
    # values makes DuckDB's client import pandas (half a second on a cold start).
    try:
        return con.execute(placed.text, params or None)
    except duckdb.Error as exc:
        raise _query_error(exc, placed.line_offset, sql) from None


def _single_query(sql: str) -> str:
    """The one query in `sql`, without its closing semicolon; anything else is refused."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise _query_error(exc, 0, sql) from None
    if len(statements) != 1:
        raise QueryError("UnsupportedStatement", f"send exactly one query at a time; this has {len(statements)} statements")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError("UnsupportedStatement", f"only queries can run here (SELECT, WITH, FROM, VALUES, DESCRIBE, SUMMARIZE); this is a {kind.name} statement")
    _refuse_secret_functions(sql)
    return _without_closing_semicolon(sql)


# Functions that describe the handler's credentials. DuckDB redacts the secret
# parts, but a caller has no business reading even the rest.
_SECRET_FUNCTIONS = {"duckdb_secrets", "which_secret"}


def _refuse_secret_functions(sql: str) -> None:
    for start, kind in _tokens(sql):
        if kind == duckdb.token_type.identifier:
            name = re.match(r"\w+", sql[start:])
            if name and name.group().lower() in _SECRET_FUNCTIONS:
                raise QueryError("PermissionException", f"{name.group()}() is not available to queries", start)


def _without_closing_semicolon(sql: str) -> str:
    tokens = [(start, kind) for start, kind in _tokens(sql) if kind != duckdb.token_type.comment]
    if tokens and sql[tokens[-1][0]] == ";":
        return sql[: tokens[-1][0]]
    return sql


def _tokens(sql: str) -> list[tuple[int, object]]:
    """DuckDB's tokens with their positions in characters (DuckDB counts UTF-8 bytes)."""
    character_at_byte = [index for index, char in enumerate(sql) for _ in range(len(char.encode()))]
    character_at_byte.append(len(sql))
    return [(character_at_byte[start], kind) for start, kind in duckdb.tokenize(sql)]


def _first_keyword(statement: str) -> str:
    match = re.match(r"\s*(\w+)", re.sub(r"--[^\n]*|/\*.*?\*/", " ", statement, flags=re.S))
    return match.group(1).upper() if match else ""


def referenced_tables(statement: str) -> set[str]:
    """The table names DuckDB's parser finds in `statement`; parse only, nothing runs."""
    try:
        return set(duckdb.get_table_names(_parameters_as_nulls(statement), qualified=False))
    except duckdb.Error:
        return set()  # the query itself will report the syntax error, with its position


def _parameters_as_nulls(statement: str) -> str:
    """The statement with each `$name` parameter replaced by NULL, for parse-only uses
    (DuckDB's table-name extraction refuses parameters)."""
    text = statement
    for start, kind in reversed(_tokens(statement)):
        parameter = re.match(r"\$\w+", statement[start:]) if kind == duckdb.token_type.operator else None
        if parameter:
            text = text[:start] + "NULL" + text[start + parameter.end():]
    return text


def _distinct_names(names: list[str]) -> list[str]:
    """Rename repeated column names the way DuckDB's .df() does: name_1, name_2, ... (case-insensitively)."""
    taken: set[str] = set()
    result = []
    for name in names:
        candidate, suffix = name, 0
        while candidate.lower() in taken:
            suffix += 1
            candidate = f"{name}_{suffix}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result


# --- errors --------------------------------------------------------------------

_LINE_CONTEXT = re.compile(r"\n*LINE (\d+): (.*)\n( *)\^\s*$", re.S)


def _query_error(exc: duckdb.Error, line_offset: int, sql: str) -> QueryError:
    """DuckDB's error as an answer: its class, its message, and a character position in `sql`."""
    message = str(exc)
    position = None
    context = _LINE_CONTEXT.search(message)
    if context:
        message = message[: context.start()]
        line_number = int(context.group(1)) - line_offset
        prefix = len(f"LINE {context.group(1)}: ")
        position = _position(sql, line_number, context.group(2), len(context.group(3)) - prefix)
    message = re.sub(r"^[A-Za-z ]+ Error: ", "", message.strip())
    if position is None and message.endswith("at end of input"):
        position = len(sql.rstrip())
    return QueryError(type(exc).__name__, message, position)


def _characters_in_width(text: str, width: int) -> int:
    """How many characters of `text` fill `width` terminal columns (wide characters take two)."""
    used = 0
    for count, char in enumerate(text):
        if used >= width:
            return count
        used += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return len(text) + (width - used)


def _position(sql: str, line_number: int, shown: str, column: int) -> int | None:
    """Turn DuckDB's "LINE n" and caret into an offset in `sql`; None if it points outside."""
    lines = sql.split("\n")
    if not 1 <= line_number <= len(lines):
        return None
    line = lines[line_number - 1]
    column = _characters_in_width(shown, column)  # the caret counts display columns
    if shown.startswith("..."):  # DuckDB shows a window of a long line
        window = shown[3:]
        if window.endswith("..."):  # cut at both ends: the first place the text fits
            start = line.find(window[:-3])
        else:  # cut only at the start: the window is the line's tail
            start = len(line) - len(window) if line.endswith(window) else -1
        column = start + column - 3 if start >= 0 else column
    line_start = sum(len(previous) + 1 for previous in lines[: line_number - 1])
    return line_start + max(0, min(column, len(line)))
