"""What DuckDB's own catalog says about functions: which aggregate.

Which give a new value per run is lakelambda.sql.changing_value, the answer
result reuse uses too."""

from __future__ import annotations

import functools

from lakelambda.sql import names_used, parser


@functools.lru_cache(maxsize=1)
def aggregates() -> frozenset[str]:
    """Aggregate functions, and macros whose bodies aggregate however deep; lower-cased."""
    with parser() as con:
        rows = con.execute("SELECT DISTINCT lower(function_name), function_type, macro_definition "
                           "FROM duckdb_functions() WHERE function_type IN ('aggregate', 'macro')").fetchall()
    found = {name for name, kind, _ in rows if kind == "aggregate"}
    uses = {name: names_used(body) for name, kind, body in rows if kind == "macro" and body}
    while True:
        grown = {name for name, used in uses.items() if used & found} - found
        if not grown:
            return frozenset(found)
        found |= grown


def is_aggregate(node: dict) -> bool:
    return node.get("class") == "FUNCTION" and node["function_name"].lower() in aggregates()
