"""Running a user's query once: checked, stored as a result, or materialized into the lake (or only bound,
for an estimate of what it reads).

Plain functions over a DuckDB connection, testable without Lambda. A query
is checked (one statement, then the sandbox's reading of its parse tree)
before anything of it runs; the notebook views it carries become temporary
views of the call's cursor, over the lake tables' views the container keeps.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable, NamedTuple

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from . import catalog, page_format, sandbox
from .format_calls import pin_calls
from .lake import Lake
from .reuse import ScopedReuse
from .errors import LakeError, NameTaken, ResultTooLarge, SqlError, UnsupportedType
from .protocol import DASHBOARD_FOLDER, Column, HandlerStats, View
from .results import ResultStore, StoredResult, first_text
from .sql import (Statement, duckdb_error, is_subquery, parse_tree, quote_identifier, quote_literal,
                  referenced_tables, single_query, walk)

# Statements that DuckDB runs as queries but that CREATE TABLE AS cannot take directly.
_NEEDS_SUBQUERY = {"DESCRIBE", "SHOW", "SUMMARIZE"}
_RESULT_TABLE = "lakemagic_result"


class _Placed(NamedTuple):
    """SQL text to run, with the user's statement inside it right after `prefix`."""

    text: str
    prefix: str = ""

    def wrapped(self, before: str, after: str = "") -> "_Placed":
        return _Placed(f"{before}\n{self.text}\n{after}", f"{before}\n{self.prefix}")


def execute_and_store(con: duckdb.DuckDBPyConnection, lake: Lake, results: ResultStore, sql: str, params: dict,
              views: tuple[View, ...] = (), reuse: ScopedReuse | None = None,
              defined: tuple[str, ...] = (), carried: bool = True) -> StoredResult:
    """Run `sql` once into a Parquet file; keep it as a stored result unless it is small enough to answer inline.

    With `reuse`, a query already answered over the same inputs in the same
    scope is answered from its result instead, and a new result is kept for later reuse.
    `defined`: tables the handler itself put in front of `sql` as CTEs (a fan-out task's reader), which every
    reference in it means: never looked up in the lake. `carried`: whether an answer carries a small result
    (ResultStore.keep); a host in this process takes it as it is.
    """
    prepared = prepare(con, lake, sql, views, defined)
    key = reuse.key(lake, prepared.texts, params, views, prepared.tables) if reuse else None
    return _store(con, lake, results, prepared, params, reuse if key is not None else None, key, carried)


class Here(NamedTuple):
    """A query's answer to a host in this process: the rows it took from the cursor itself, or, where the
    result was stored after all (reused, kept for reuse, or rows the host could not take as they are), that;
    or a result kept in memory, with its first page as the table shows it (`text`)."""

    rows: object = None
    stored: StoredResult | None = None
    stats: HandlerStats | None = None  # the handler's figures, as an answer would carry them
    text: tuple | None = None  # the first page's rows, each value as DuckDB writes it (results.first_text)


def execute_and_keep_in_memory(con: duckdb.DuckDBPyConnection, lake: Lake, results: ResultStore, sql: str,
                               params: dict, views: tuple[View, ...], reuse: ScopedReuse | None,
                               page_size: int) -> Here:
    """Run `sql`, checked exactly as execute_and_store checks it, for a host in this process that shows it as a
    table: a small result (at most the store's memory_rows) is made straight into a table of the database,
    DuckDB to DuckDB, and kept there (ResultStore.keep_in_memory), its first page written as text at once.

    A result reuse answers or keeps, or of a query that sorts more rows than that, ungrouped, is stored as
    execute_and_store stores it, at once (a sort streams into its file faster than through a table). Any other
    query that computes every row before its first (_Outermost.computes_every_row) is made into the table whole, which is
    written as its stored file when it has more rows: it runs once. One that streams its rows stops at the
    bound, and only when it reaches it (soon, streaming) runs again, into its file.
    """
    prepared = prepare(con, lake, sql, views)
    key = reuse.key(lake, prepared.texts, params, views, prepared.tables) if reuse else None
    outermost = _Outermost.of(prepared.statement.text)
    if reuse is not None and key is not None or outermost.sorts_every_row(results.memory_rows):
        return Here(stored=_store(con, lake, results, prepared, params, reuse, key, carried=False))
    result_id = secrets.token_urlsafe(24)
    table = results.memory_table(result_id)
    body = _Placed(prepared.statement.text)
    if prepared.statement.keyword in _NEEDS_SUBQUERY:
        body = body.wrapped("SELECT * FROM (", ")")
    whole = outermost.computes_every_row(results.memory_rows)
    create = body.wrapped(f"CREATE TABLE {table} AS SELECT * FROM (",
                          ")" if whole else f") LIMIT {results.memory_rows + 1}")
    try:
        rows = _with_fresh_views(con, lake, prepared,
                                 lambda: _execute(con, create, params, prepared.checked.text).fetchone()[0])
    except SqlError as error:
        if error.error_type == "OutOfMemoryException":
            raise _too_large("holding it needs more than the engine's memory and spill space") from None
        raise
    try:
        if rows > results.memory_rows and not whole:
            con.execute(f"DROP TABLE {table}")
            return Here(stored=_store(con, lake, results, prepared, params, None, None, carried=False))
        made = con.table(table)  # bound, not run: the names and types DESCRIBE would give
        columns = _described([(name, str(kind)) for name, kind in zip(made.columns, made.types)])
        kept = results.keep_in_memory(con, result_id, columns, rows)
    except BaseException:
        con.execute(f"DROP TABLE IF EXISTS {table}")
        raise
    return Here(stored=kept, text=first_text(con, kept, page_size) if kept.table is not None else None)


def execute_here(con: duckdb.DuckDBPyConnection, lake: Lake, results: ResultStore, sql: str, params: dict,
                 views: tuple[View, ...], reuse: ScopedReuse | None,
                 take: Callable[[duckdb.DuckDBPyConnection, tuple[Column, ...]], object]) -> Here:
    """Run `sql`, checked exactly as execute_and_store checks it, for a host in this process, which takes the
    rows from the cursor itself: `take(con, columns)` right after the statement ran on `con`.

    Nothing is written unless the result is one reuse answers or keeps, or `take` answers None (rows
    it cannot take as they are, such as times it must show in another zone): then it is stored as
    execute_and_store stores it, for the host to read where it is.
    """
    prepared = prepare(con, lake, sql, views)
    key = reuse.key(lake, prepared.texts, params, views, prepared.tables) if reuse else None
    if reuse is not None and key is not None:
        return Here(stored=_store(con, lake, results, prepared, params, reuse, key, carried=False))

    def run():
        _execute(con, _Placed(prepared.statement.text), params, prepared.checked.text)
        return take(con, _described([(name, str(kind)) for name, kind, *_ in con.description]))

    rows = _with_fresh_views(con, lake, prepared, run)
    if rows is None:
        return Here(stored=_store(con, lake, results, prepared, params, None, None, carried=False))
    return Here(rows)


class _Outermost(NamedTuple):
    """A query's outermost level in DuckDB's parse tree (its node, and its modifiers by type): how it makes its
    rows, which says how execute_and_keep_in_memory runs it."""

    node: dict
    modifiers: dict

    @classmethod
    def of(cls, text: str) -> "_Outermost":
        node = (parse_tree(text).get("statements") or [{}])[0].get("node") or {}
        return cls(node, {modifier["type"]: modifier for modifier in node.get("modifiers") or ()})

    def sorts_every_row(self, rows: int) -> bool:
        """Whether it sorts rows it does not group, keeping more than `rows` of them (no LIMIT, or a larger one):
        a result likely as large as its input, which streams into its file faster than through a table."""
        return (self.node.get("type") == "SELECT_NODE" and "ORDER_MODIFIER" in self.modifiers
                and not self._groups() and not self._limited(rows))

    def computes_every_row(self, rows: int) -> bool:
        """Whether it computes every row of its result before it gives its first, keeping more than `rows` of them:
        it groups, takes distinct rows, computes windows, sorts, or combines queries other than by UNION ALL."""
        node = self.node
        if self._limited(rows):
            return False
        if "ORDER_MODIFIER" in self.modifiers or "DISTINCT_MODIFIER" in self.modifiers:
            return True
        if node.get("type") == "SET_OPERATION_NODE":
            return not (node.get("setop_type") == "UNION" and node.get("setop_all"))
        return node.get("type") == "SELECT_NODE" and (self._groups() or any(
            part.get("class") == "WINDOW"
            for part in walk([node.get("select_list"), node.get("qualify")], prune=is_subquery)))

    def _limited(self, rows: int) -> bool:
        limit = (self.modifiers.get("LIMIT_MODIFIER") or {}).get("limit") or {}
        kept = (limit.get("value") or {}).get("value") if limit.get("class") == "CONSTANT" else None
        return isinstance(kept, int) and 0 <= kept <= rows

    def _groups(self) -> bool:
        return bool(self.node.get("group_expressions")) or self.node.get("aggregate_handling") == "FORCE_AGGREGATES"


def _store(con, lake: Lake, results: ResultStore, prepared: "Prepared", params: dict, reuse: ScopedReuse | None,
           key: str | None, carried: bool = True) -> StoredResult:
    """The checked query's stored result: found by its reuse `key`, or run, written and kept (for reuse too).
    One kept for reuse may be carried by a later answer (over the wire), whoever asked first."""
    if reuse is not None and key is not None:
        found = reuse.find(con, key)
        if found is not None:
            return found
    body = _Placed(prepared.statement.text)
    if prepared.statement.keyword in _NEEDS_SUBQUERY:
        body = body.wrapped("SELECT * FROM (", ")")
    write = _write_held if lake.storage.binds_cost_requests else _write_streamed
    result_id, path, columns, rows, size, held = write(con, lake, results, prepared, body, params, prepared.checked.text)
    result = results.keep(result_id, path, columns, rows, size, carried or (reuse is not None and key is not None), held,
                          writer=con)
    if reuse is not None and key is not None:
        reuse.remember(key, result)
    return result


def describe(con: duckdb.DuckDBPyConnection, lake: Lake, prepared: "Prepared", params: dict) -> tuple[Column, ...]:
    """The columns the prepared query would give: bound, not run, so it fails as running it would (an unknown
    table naming the lake's closest, a column, a type), at its place in the text as written."""
    body = _Placed(prepared.statement.text)
    if prepared.statement.keyword in _NEEDS_SUBQUERY:
        body = body.wrapped("SELECT * FROM (", ")")
    described = body.wrapped("DESCRIBE SELECT * FROM (", ")")
    return _with_fresh_views(con, lake, prepared, lambda: _described(
        _execute(con, described, params, prepared.checked.text).fetchall()))


def _write_held(con, lake: Lake, results: ResultStore, prepared: "Prepared", body: _Placed, params: dict, sql: str):
    """Where a bind costs a request (S3): bind the query once, into a temporary table of the call's
    cursor, then write the file from it.

    Each bind of a lake file costs an S3 request, so describing the query
    and then copying it would cost two. The table's own description gives
    the declared types (duplicate names already made distinct, as DuckDB's
    .df() names them), and its size in the engine says, before any file is
    written, whether the result is over the cap or must go straight into
    the lake rather than through the function's /tmp.
    """
    create = body.wrapped(f"CREATE TEMP TABLE {_RESULT_TABLE} AS")  # dropped with the call's cursor at the latest
    try:
        _with_fresh_views(con, lake, prepared, lambda: _execute(con, create, params, sql))
    except SqlError as error:
        if error.error_type == "OutOfMemoryException":
            raise _too_large("holding it needs more than the function's memory and spill space") from None
        raise
    # Its columns as DESCRIBE gives them, from the catalog: the table bound, nothing run (a query of none of its rows costs 0.15 ms more).
    made = con.table(_RESULT_TABLE)
    columns = _described([(name, str(kind)) for name, kind in zip(made.columns, made.types)])
    # What the table takes in DuckDB, in memory and spilled: more than its Parquet file (which compresses),
    # known before that file is written. Summed here: a query summing it plans for longer than it runs.
    held_bytes = sum(used + spilled for tag, used, spilled in con.execute(
        "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory()").fetchall()
        if tag == "IN_MEMORY_TABLE")
    if results.max_result_bytes is not None and held_bytes > results.max_result_bytes:
        raise _too_large(f"it holds {held_bytes / 2**20:,.0f} MiB in the engine, more than the "
                         f"{results.max_result_bytes / 2**20:,.0f} MiB one result may (LAKEMAGIC_MAX_RESULT_BYTES)")
    result_id, path = results.new_result(held_bytes)
    copy = _Placed(f"COPY (SELECT {page_format.storage_projection(columns)} FROM {_RESULT_TABLE})")
    rows, size = _copy(con, copy, path, results, columns, {}, None)
    if size > results.inline_bytes:  # its memory is better free for the upload and the first page
        con.execute(f"DROP TABLE {_RESULT_TABLE}")
        return result_id, path, columns, rows, size, None
    return result_id, path, columns, rows, size, (con, _RESULT_TABLE)  # measures the file (ResultStore.keep)


def _write_streamed(con, lake: Lake, results: ResultStore, prepared: "Prepared", body: _Placed, params: dict,
                    sql: str):
    """Where a bind is free (a local lake): describe the query, then copy it into the file as it runs.

    A bind of a local file costs no request, and holding the result in a
    table first would copy every row once more: a big result streams from
    the query into its file, which is in the lake's own folder already.
    """
    result_id, path = results.new_result()
    described = body.wrapped("DESCRIBE SELECT * FROM (", ")")  # names made distinct as a table would make them

    def run():
        columns = _described(_execute(con, described, params, sql).fetchall())
        copy = body.wrapped(f"COPY (SELECT {page_format.storage_projection(columns)} FROM (", "))")
        return columns, *_copy(con, copy, path, results, columns, params, sql)

    columns, rows, size = _with_fresh_views(con, lake, prepared, run)
    return result_id, path, columns, rows, size, None


def _copy(con, copy: _Placed, path: str, results: ResultStore, columns: tuple[Column, ...], params: dict,
          sql: str | None) -> tuple[int, int]:
    """Run a COPY of a result into `path`; its rows and bytes. A file cut short is removed: it would only fill the disk.

    Only a file written straight into S3 asks DuckDB for its size (RETURN_STATS, a fifth of a small COPY's time).
    """
    remote = not results.is_local(path)
    options = results.copy_options(columns) + (", RETURN_STATS true" if remote else "")
    statement = copy.wrapped("", f"TO {quote_literal(path)} ({options})")
    try:
        counted = _execute(con, statement, params, sql).fetchone()
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise
    return (counted[1], counted[2]) if remote else (counted[0], os.path.getsize(path))


def _described(rows: list[tuple]) -> tuple[Column, ...]:
    """A result's columns from DESCRIBE's rows; a UNION among them is refused, as it cannot travel."""
    columns = tuple(Column(row[0], row[1]) for row in rows)
    for column in columns:
        if "UNION(" in column.type:
            raise UnsupportedType(f"column {column.name!r} is a UNION, which cannot travel to the notebook; "
                                  "cast it to VARCHAR or pick a member with union_extract")
    return columns


def _too_large(why: str) -> ResultTooLarge:
    return ResultTooLarge(f"the result is too large to keep: {why}; narrow it with LIMIT or an aggregate, or "
                          "write it into the lake with --save NAME --materialize, which streams it")


def materialize(con: duckdb.DuckDBPyConnection, lake: Lake, scratch: str, sql: str, path: str,
                views: tuple[View, ...] = ()) -> tuple[str, int, int]:
    """Write the result of `sql` to `path` in the lake; return where, how many rows and bytes.

    The file appears whole or not at all (storage.LakeStorage.writing), so a failed query leaves
    the previous file as it was. A materialized view may not take a name the lake has, in any case.
    """
    prepared = prepare(con, lake, sql, views)
    folder, _, file_name = path.rpartition("/")
    name = file_name[: -len(".parquet")]
    taken = lake.names_taken(con, name, path) if folder == DASHBOARD_FOLDER else []
    if taken:
        tables = " and ".join(found.described() for found in taken)
        raise NameTaken(f"the lake already has a table named {name}: {tables}; a materialized view may not change "
                        "what that name means for everyone, in any case: save the view under another name")
    with lake.storage.writing(path, scratch) as written:
        copy = _Placed(prepared.statement.text).wrapped(
            "COPY (", f") TO {quote_literal(written)} (FORMAT parquet, COMPRESSION zstd, RETURN_STATS true)")
        _, rows, size = _with_fresh_views(con, lake, prepared,
                                          lambda: _execute(con, copy, {}, prepared.checked.text).fetchone()[:3])
    lake.forget_listings()  # this container changed the catalog: it sees the change at once
    return lake.path(path), rows, size


class Prepared(NamedTuple):
    statement: Statement
    views: tuple[tuple[View, str], ...]  # each view the request carries, with its checked statement's text
    tables: dict[str, str | None]  # the names the query may mean as lake tables, and what each reads
    checked: sandbox.Checked  # the statement as it runs, which maps its errors' positions back to the request

    @property
    def texts(self) -> tuple[str, ...]:
        """The checked statement's text, then its views'."""
        return (self.statement.text, *(text for _, text in self.views))


def prepare(con, lake: Lake, sql: str, views: tuple[View, ...], defined: tuple[str, ...] = ()) -> Prepared:
    """Check the query and its views, and find the lake tables they use (nothing is bound yet).

    SHOW TABLES is answered from the lake's catalog, by a query of the handler's own.
    """
    statement = single_query(sql)
    if catalog.lists_tables(statement):
        statement = catalog.show_tables(lake.tables(con))
        checked = sandbox.Checked(statement.text)
    else:  # what runs names the lake's files by their full paths, lake-relative ones too, and the
        # snapshots of the iceberg_scan(...) and delta_scan(...) it calls itself, checked
        checked = pin_calls(con, lake, sandbox.check_query(statement.text, lake.root))
        statement = Statement(checked.text, statement.keyword)
    view_statements = []
    for view in views:
        try:
            text = pin_calls(con, lake, sandbox.check_query(single_query(view.sql).text, lake.root)).text
        except LakeError as error:
            raise error.within(view.name) from None
        view_statements.append((view, text))
    mentioned = referenced_tables(statement.text).union(*(referenced_tables(text) for _, text in view_statements))
    # A view, or a table the handler defines, shadows a lake table, whatever the case.
    shadowed = {view.name.lower() for view in views} | {name.lower() for name in defined}
    tables = lake.find_tables(con, {name for name in mentioned if name.lower() not in shadowed})
    return Prepared(statement, tuple(view_statements), tables, checked)


def _with_fresh_views(con, lake: Lake, prepared: Prepared, run):
    """Make the lake tables' and the request's views, then `run()`; once more over freshly made
    catalog views if it failed over reused ones: a dataset rewritten with another schema since its
    view was made fails to bind."""
    reused = _make_views(con, lake, prepared)
    try:
        try:
            return run()
        except SqlError as error:
            # A changed dataset fails to bind; storage that did not answer would only be waited for twice.
            if not reused or error.error_type in ("IOException", "HTTPException"):
                raise
        _make_views(con, lake, prepared, refresh=True)
        return run()
    except SqlError as error:
        error.position = prepared.checked.position_as_written(error.position)
        raise _naming_the_lake(con, lake, prepared, error) from None


def _make_views(con, lake: Lake, prepared: Prepared, refresh: bool = False) -> bool:
    """The lake tables' views (kept by the container), then the request's (the cursor's own); say
    whether a lake table's view was reused."""
    reused = lake.register_tables(con, prepared.tables, refresh)
    for view, text in () if refresh else prepared.views:  # a view binds when used: it sees refreshed tables
        prefix = f"CREATE TEMP VIEW {quote_identifier(view.name)} AS\n"
        try:
            con.execute(prefix + text)
        except duckdb.Error as exc:
            error = _naming_the_lake(con, lake, prepared, duckdb_error(exc, view.sql, prefix))
            raise error.within(view.name) from None
    return reused


def _naming_the_lake(con, lake: Lake, prepared: Prepared, error: SqlError) -> SqlError:
    """An unknown table's error names the lake's closest tables and views (listed only for that error)."""
    if error.missing_table is None:
        return error
    try:
        names = lake.table_names(con)
    except (LakeError, duckdb.Error):  # the lake cannot be listed now: DuckDB's own words, then
        return error
    return catalog.naming_the_lake(error, names + [view.name for view, _ in prepared.views])


def _execute(con, placed: _Placed, params: dict, sql: str | None):
    # Internal statements carry their values as quoted literals: binding Python
    # values makes DuckDB's client import pandas (half a second on a cold start).
    try:
        return con.execute(placed.text, params or None)
    except duckdb.Error as exc:
        raise duckdb_error(exc, sql, placed.prefix) from None
