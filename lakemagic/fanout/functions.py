"""What DuckDB's own catalog says about functions: which aggregate, which give a new value per run."""

from __future__ import annotations

import functools
from typing import NamedTuple

from lakelambda.sql import parser

from .tree import Refusal, bare_name, nodes, select_node

# Clock values the parser writes as bare names (SELECT current_timestamp) and that the
# catalog does not mark as volatile.
CLOCK_NAMES = frozenset({"current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
                         "current_localtimestamp"})


class Catalog(NamedTuple):
    aggregates: frozenset[str]  # aggregate functions, and macros whose bodies aggregate
    volatile: frozenset[str]  # functions whose value can differ between runs (random, now, uuid, ...)


@functools.lru_cache(maxsize=1)
def catalog() -> Catalog:
    """Names lower-cased; a macro takes the kind of what its body uses, however deep."""
    with parser() as con:
        rows = con.execute("SELECT DISTINCT lower(function_name), function_type, stability, macro_definition "
                           "FROM duckdb_functions() WHERE function_type IN ('aggregate', 'scalar', 'macro')"
                           ).fetchall()
    aggregates = {name for name, kind, _, _ in rows if kind == "aggregate"}
    # error() is VOLATILE only because it raises; its value never varies.
    volatile = {name for name, kind, stability, _ in rows
                if kind == "scalar" and stability != "CONSISTENT" and name != "error"} | CLOCK_NAMES
    uses = {name: _names_used(body) for name, kind, _, body in rows if kind == "macro" and body}
    while True:
        grown_aggregates = {name for name, used in uses.items() if used & aggregates} - aggregates
        grown_volatile = {name for name, used in uses.items() if used & volatile} - volatile
        if not grown_aggregates and not grown_volatile:
            return Catalog(frozenset(aggregates), frozenset(volatile))
        aggregates |= grown_aggregates
        volatile |= grown_volatile


def _names_used(body: str) -> set[str]:
    try:
        tree = select_node(f"SELECT {body}")
    except Refusal:
        return set()
    used = set()
    for node in nodes(tree):
        if node.get("class") in ("FUNCTION", "WINDOW"):
            used.add(node["function_name"].lower())
        elif bare_name(node):
            used.add(bare_name(node))
    return used


def is_aggregate(node: dict) -> bool:
    return node.get("class") == "FUNCTION" and node["function_name"].lower() in catalog().aggregates


def volatile_use(node: dict) -> str | None:
    """The name of the volatile function or clock value `node` is, if it is one."""
    if node.get("class") == "FUNCTION" and node["function_name"].lower() in catalog().volatile:
        return node["function_name"]
    name = bare_name(node)
    return name if name in CLOCK_NAMES else None
