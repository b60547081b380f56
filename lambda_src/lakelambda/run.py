"""Running a user's query once: checked, stored as a result, or materialized into the lake.

Plain functions over a DuckDB connection, testable without Lambda. A query
is checked (one statement, then the sandbox's reading of its parse tree)
before anything of it runs; the lake tables and notebook views it names
become temporary views of the call's cursor.
"""

from __future__ import annotations

import os
import secrets
from typing import NamedTuple

import duckdb

from . import page_format, sandbox
from .lake import Lake
from .errors import LakeError, NameTaken, UnsupportedType
from .protocol import DASHBOARD_FOLDER, Column, View
from .results import ResultStore, StoredResult
from .sql import duckdb_error, quote_identifier, quote_literal, referenced_tables, single_query

# Statements that DuckDB runs as queries but that COPY cannot take directly.
_NEEDS_SUBQUERY = {"DESCRIBE", "SHOW", "SUMMARIZE"}


class _Placed(NamedTuple):
    """SQL text to run, with the user's statement inside it right after `prefix`."""

    text: str
    prefix: str = ""

    def wrapped(self, before: str, after: str = "") -> "_Placed":
        return _Placed(f"{before}\n{self.text}\n{after}", f"{before}\n{self.prefix}")


def run_query(con: duckdb.DuckDBPyConnection, lake: Lake, results: ResultStore, sql: str, params: dict,
              views: tuple[View, ...] = ()) -> StoredResult:
    """Run `sql` once into a Parquet file; keep it as a stored result unless it is small enough to answer inline.

    One execution: DESCRIBE only binds the query (its declared types go into
    the file's metadata), and COPY runs it and counts its rows.
    """
    statement = _prepare(con, lake, sql, views)
    body = _Placed(statement.text)
    if statement.keyword in _NEEDS_SUBQUERY:
        body = body.wrapped("SELECT * FROM (", ")")
    columns = _describe(con, body, params, sql)
    for column in columns:
        if "UNION(" in column.type:
            raise UnsupportedType(f"column {column.name!r} is a UNION, which cannot travel to the notebook; "
                                  "cast it to VARCHAR or pick a member with union_extract")
    names = [column.name for column in columns]
    distinct = _distinct_names(names)
    columns = [Column(name, column.type) for column, name in zip(columns, distinct)]
    if distinct != names or any(page_format.storage_type(c.type) != c.type for c in columns):
        # Rename by position and store lossy types as text; otherwise the query is copied as it is.
        aliases = ", ".join(quote_identifier(c.name) for c in columns)
        projection = page_format.storage_projection(columns)
        body = body.wrapped("SELECT " + projection + " FROM (", f") AS lakemagic_result({aliases})")
    result_id, path = results.new_result()
    copy = body.wrapped("COPY (", f") TO {quote_literal(path)} ({results.copy_options(columns)})")
    rows = _execute(con, copy, params, sql).fetchone()[0]
    return results.keep(result_id, path, tuple(columns), rows)


def materialize(con: duckdb.DuckDBPyConnection, lake: Lake, scratch: str, sql: str, path: str,
                views: tuple[View, ...] = ()) -> tuple[str, int, int]:
    """Write the result of `sql` to `path` in the lake; return where, how many rows and bytes.

    The file is finished locally first and then put in place whole, so a
    failed query leaves the previous file as it was.
    """
    statement = _prepare(con, lake, sql, views)
    folder, _, file_name = path.rpartition("/")
    name = file_name[: -len(".parquet")]
    taken = lake.dataset_named(con, name) if folder == DASHBOARD_FOLDER else None
    if taken:
        raise NameTaken(f"the lake already has a table named {name} ({taken}); a materialized view may not "
                        "change what that name means for everyone: save the view under another name")
    local = os.path.join(scratch, f"materialize-{secrets.token_hex(8)}.parquet")
    try:
        copy = _Placed(statement.text).wrapped("COPY (", f") TO {quote_literal(local)} (FORMAT parquet, COMPRESSION zstd)")
        rows = _execute(con, copy, {}, sql).fetchone()[0]
        size = os.path.getsize(local)
        return lake.put(local, path), rows, size
    finally:
        if os.path.exists(local):
            os.remove(local)


def _prepare(con, lake: Lake, sql: str, views: tuple[View, ...]):
    """Check the query and its views, make the lake tables and views it uses; return its statement."""
    statement = single_query(sql)
    sandbox.check_query(statement.text, lake.root)
    view_statements = []
    for view in views:
        try:
            text = single_query(view.sql).text
            sandbox.check_query(text, lake.root)
        except LakeError as error:
            raise error.within(view.name) from None
        view_statements.append((view, text))
    mentioned = referenced_tables(statement.text).union(*(referenced_tables(text) for _, text in view_statements))
    lake.register_tables(con, mentioned - {view.name for view in views})  # a view shadows a lake table
    for view, text in view_statements:
        prefix = f"CREATE TEMP VIEW {quote_identifier(view.name)} AS\n"
        try:
            con.execute(prefix + text)
        except duckdb.Error as exc:
            raise duckdb_error(exc, view.sql, prefix).within(view.name) from None
    return statement


def _describe(con, body: _Placed, params: dict, sql: str) -> list[Column]:
    rows = _execute(con, body.wrapped("DESCRIBE"), params, sql).fetchall()
    return [Column(row[0], row[1]) for row in rows]


def _execute(con, placed: _Placed, params: dict, sql: str):
    # Internal statements carry their values as quoted literals: binding Python
    # values makes DuckDB's client import pandas (half a second on a cold start).
    try:
        return con.execute(placed.text, params or None)
    except duckdb.Error as exc:
        raise duckdb_error(exc, sql, placed.prefix) from None


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
