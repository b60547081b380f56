"""Partition pruning: drop the files whose partition values fail the query's WHERE on the keys alone.

The WHERE clause's top-level AND terms that read nothing but the split
table's partition keys are evaluated by DuckDB (the parse-only connection,
which reaches no file) over a VALUES table of each file's key values, typed
as the table reads them. Pruning only ever narrows what the tasks read; the
task SQL keeps the whole WHERE clause, so a file kept in doubt costs time,
never correctness.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import duckdb

from lakelambda.sql import changing_value, parameter_names, parser, quote_identifier, quote_literal, walk

from .files import PartitionFile, autocast_key_types
from .functions import is_aggregate
from .shape import locate
from .tree import PREFIX, Refusal, expression, select_node, to_sql


def prune(sql: str, table: str, files: Sequence[PartitionFile],
          key_types: Mapping[str, str] | None = None, params: Mapping | None = None) -> list[PartitionFile]:
    """The files of `table` whose partition values can pass the WHERE clause of `sql`
    (with its $parameters bound to `params`, where given).

    All of `files` when nothing in the WHERE clause reads the keys alone, or
    when the query cannot be split anyway.
    """
    if not files:
        return []
    try:
        node = select_node(sql)
        ref = locate(node, table)
        types = dict(key_types) if key_types is not None else autocast_key_types(files)
    except Refusal:
        return list(files)
    alias, keys = ref["alias"] or ref["table_name"], {key.lower() for key in types}
    bound = set(params or {})
    conditions = [term for term in and_terms(node["where_clause"])
                  if (read := columns_read(term, alias, bound)) is not None and read <= keys]
    if not conditions:
        return list(files)
    try:
        passing = _passing(files, types, alias, conditions, params or {})
    except duckdb.Error:
        return list(files)
    return [file for index, file in enumerate(files) if index in passing]


def and_terms(node: dict | None) -> list[dict]:
    """The top-level AND terms of a WHERE clause: each must hold for a row to pass."""
    if node is None:
        return []
    if node.get("class") == "CONJUNCTION" and node["type"] == "CONJUNCTION_AND":
        return [term for child in node["children"] for term in and_terms(child)]
    return [node]


def columns_read(term: dict, alias: str, bound: set[str]) -> set[str] | None:
    """The lower-cased columns of the table named `alias` that `term` reads, where it reads nothing else
    whose value a row alone does not fix (other tables, subqueries, unbound parameters, aggregates,
    windows, lambdas, values that change from run to run); else None."""
    read = set()
    for part in walk(term):
        if part.get("class") == "PARAMETER" and part.get("identifier") in bound:
            continue
        if part.get("class") in ("SUBQUERY", "PARAMETER", "WINDOW", "LAMBDA"):
            return None
        if is_aggregate(part) or changing_value(part):
            return None
        if part.get("class") == "COLUMN_REF":
            *qualifier, name = [piece.lower() for piece in part["column_names"]]
            if qualifier not in ([], [alias.lower()]):
                return None
            read.add(name)
    return read


def _passing(files: Sequence[PartitionFile], types: Mapping[str, str], alias: str,
             conditions: list[dict], params: Mapping) -> set[int]:
    """The indexes of the files whose key values pass all of `conditions`."""
    raw = [f"{PREFIX}v{number}" for number in range(len(types))]
    typed = ", ".join(
        f"CASE WHEN {value} = '' OR upper({value}) = 'NULL' THEN NULL ELSE CAST({value} AS {kind}) END "
        f"AS {quote_identifier(key)}"
        for value, (key, kind) in zip(raw, types.items())
    )
    rows = ", ".join(
        "(" + ", ".join([str(index), *(quote_literal(file.partition[key]) for key in types)]) + ")"
        for index, file in enumerate(files)
    )
    query = select_node(
        f"SELECT {PREFIX}file FROM (SELECT {PREFIX}file, {typed} FROM (VALUES {rows}) "
        f"AS {PREFIX}raw({PREFIX}file, {', '.join(raw)})) AS {quote_identifier(alias)}"
    )
    where = conditions[0]
    for condition in conditions[1:]:
        where = expression("a AND b", a=where, b=condition)
    text = to_sql({**query, "where_clause": where})  # a copy: the parsed tree is shared (parse_tree's cache)
    used = {name: value for name, value in params.items() if name in parameter_names(text)}
    with parser() as con:
        return {index for (index,) in con.execute(text, used or None).fetchall()}
