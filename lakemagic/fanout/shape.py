"""Whether a query's shape can be split at all, and the parts of it the splitters use.

Refused here, whatever the query computes: DESCRIBE and the like; a table read other than once,
directly in FROM; joins that would repeat or lose rows when each task sees a
share of the table; window functions; functions whose value differs per run;
samples; DISTINCT ON; LIMIT ... PERCENT; LIMIT or OFFSET that are not
constants; OFFSET without ORDER BY; names that collide with the planner's own
or with each other.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from lakelambda.sql import changing_value, walk

from .tree import PREFIX, Refusal

# Which side of a join may hold the split table: every output row then comes from one of its rows.
_SPLIT_SIDES = {"INNER": ("left", "right"), "LEFT": ("left",), "RIGHT": ("right",), "SEMI": ("left",),
                "ANTI": ("left",)}
_JOIN_KINDS = ("REGULAR", "NATURAL", "CROSS", "ASOF")


class Query(NamedTuple):
    node: dict  # the SELECT node
    distinct: bool
    orders: list[dict]  # ORDER BY terms
    limit: int | None
    offset: int | None


def check(node: dict, table: str) -> Query:
    """The parts of `node` (a SELECT node reading `table`), or Refusal with the reason."""
    if node["from_table"]["type"] == "SHOW_REF":
        raise Refusal("DESCRIBE, SHOW and SUMMARIZE are not split")
    locate(node, table)
    for part in walk(node):
        if part.get("class") == "WINDOW":
            raise Refusal("window functions need all rows at once")
        name = changing_value(part)
        if name:
            raise Refusal(f"{name} gives a different value in every task")
        if part.get("sample"):
            raise Refusal("a sample picks rows at random, differently in every task")
        if part.get("type") == "SELECT_NODE" and part.get("qualify"):
            raise Refusal("QUALIFY filters on window functions, which need all rows at once")
        for name in (part.get("alias") or "", *part.get("column_names", ())):
            if name.lower().startswith(PREFIX):
                raise Refusal(f"the name {name} is reserved for the fan-out's own columns")
    names = [item["alias"] or item["column_names"][-1] for item in node["select_list"]
             if item["alias"] or item["class"] == "COLUMN_REF"]
    if len({name.lower() for name in names}) != len(names):
        raise Refusal("two output columns have the same name")
    return Query(node, *_modifiers(node))


def locate(node: dict, table: str) -> dict:
    """The one reference to `table` in the query, read directly in FROM and joined so that each
    output row comes from one of its rows."""
    ctes = [entry["key"].lower() for entry in node["cte_map"]["map"]]
    if table.lower() in ctes:
        raise Refusal(f"a WITH query named {table} hides the lake table")
    refs = [part for part in walk(node)
            if part.get("type") == "BASE_TABLE" and part["table_name"].lower() == table.lower()]
    if not refs:
        raise Refusal(f"the query does not read {table}")
    if len(refs) > 1:
        raise Refusal(f"{table} is read {len(refs)} times (a self-join or a subquery); "
                      "each task would see only its share of every copy")
    path = _path(node["from_table"], refs[0])
    if path is None:
        raise Refusal(f"{table} is read inside a subquery or WITH query; only a table read directly in FROM is split")
    for join, side in path:
        _check_join(join, side, table)
    if refs[0].get("at_clause"):
        raise Refusal(f"{table} is read AT a version; the fan-out reads the files as they are")
    return refs[0]


def _path(ref: dict, target: dict) -> list[tuple[dict, str]] | None:
    """The joins from `ref` down to `target`, each with the side it is on; None if not in a join tree."""
    if ref is target:
        return []
    if ref["type"] != "JOIN":
        return None
    for side in ("left", "right"):
        below = _path(ref[side], target)
        if below is not None:
            return [(ref, side), *below]
    return None


def _check_join(join: dict, side: str, table: str) -> None:
    kind, join_type = join["ref_type"], join["join_type"]
    if kind == "POSITIONAL":
        raise Refusal("a POSITIONAL JOIN pairs rows by their order, which differs between tasks")
    if kind not in _JOIN_KINDS or join_type not in _SPLIT_SIDES:
        raise Refusal(f"a {join_type} {kind} join is not split")
    if side not in _SPLIT_SIDES[join_type] or (kind == "ASOF" and side != "left"):
        other = "right" if side == "left" else "left"
        raise Refusal(f"a {join_type} {'ASOF ' if kind == 'ASOF' else ''}JOIN with {table} on the {side} "
                      f"needs all of {table} for each row of its {other} side")


def merge_modifiers(node: dict, orders: list[dict]) -> list[dict]:
    """The query's DISTINCT, LIMIT and OFFSET as they are, and its ORDER BY with `orders` as the terms."""
    return [{**copy.deepcopy(modifier), "orders": orders} if modifier["type"] == "ORDER_MODIFIER"
            else copy.deepcopy(modifier) for modifier in node["modifiers"]]


def _modifiers(node: dict) -> tuple[bool, list[dict], int | None, int | None]:
    by_type = {modifier["type"]: modifier for modifier in node["modifiers"]}
    if "LIMIT_PERCENT_MODIFIER" in by_type:
        raise Refusal("LIMIT with PERCENT needs the total row count first")
    unknown = set(by_type) - {"DISTINCT_MODIFIER", "ORDER_MODIFIER", "LIMIT_MODIFIER"}
    if unknown:
        raise Refusal(f"{sorted(unknown)[0]} is not split")
    distinct = "DISTINCT_MODIFIER" in by_type
    if distinct and by_type["DISTINCT_MODIFIER"]["distinct_on_targets"]:
        raise Refusal("DISTINCT ON keeps the first row of each group, in an order the tasks do not share")
    orders = by_type["ORDER_MODIFIER"]["orders"] if "ORDER_MODIFIER" in by_type else []
    limits = by_type.get("LIMIT_MODIFIER", {})
    limit, offset = _count(limits.get("limit")), _count(limits.get("offset"))
    if offset is not None and not orders:
        raise Refusal("OFFSET without ORDER BY skips arbitrary rows, which differ between tasks")
    return distinct, orders, limit, offset


def _count(node: dict | None) -> int | None:
    if node is None:
        return None
    value = node.get("value", {}) if node.get("class") == "CONSTANT" else {}
    number = value.get("value")
    if value.get("is_null") or not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise Refusal("LIMIT and OFFSET must be constant numbers to be split")
    return number
