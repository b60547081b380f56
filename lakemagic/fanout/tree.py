"""DuckDB parse trees in and out: parse a query, edit its tree, print it back as SQL.

Trees come from `json_serialize_sql` (lakelambda.sql.parse_tree) and go back
through `json_deserialize_sql`, both on the shared parse-only connection; they
are read with lakelambda.sql.walk, as the sandbox reads them. The
planner's own small expressions (sum(x), the merge formulas) are written as
SQL over its own quoted column names and parsed the same way, so no text of
the user's query is ever cut or pasted.
"""

from __future__ import annotations

import copy
import functools
import json

import duckdb

from lakelambda.sql import NO_LOCATION, parse_tree, parser, without_locations

# The planner's own column names start with this; a query using such a name is not split.
PREFIX = "fanout_"
# The table the merge reads: the tasks' results, concatenated.
PARTIALS = "partials"


class Refusal(Exception):
    """The query is not split; the message is the reason, one sentence."""


def select_node(sql: str) -> dict:
    """The SELECT node of `sql`, which must be one statement that DuckDB parses."""
    try:
        tree = parse_tree(sql)
    except (duckdb.Error, RecursionError) as exc:
        raise Refusal(f"the query cannot be read: {exc}") from None
    if tree.get("error"):
        raise Refusal(f"the query cannot be read: {tree.get('error_message', 'DuckDB did not parse it')}")
    if len(tree["statements"]) != 1:
        raise Refusal("only a single query can be split")
    node = tree["statements"][0]["node"]
    if node["type"] == "SET_OPERATION_NODE":
        raise Refusal("set operations (UNION, EXCEPT, INTERSECT) are not split")
    if node["type"] != "SELECT_NODE":
        raise Refusal("only a plain SELECT is split")
    return node


@functools.lru_cache(maxsize=256)
def _parsed_expression(text: str) -> str:
    return json.dumps(select_node(f"SELECT {text}")["select_list"][0])


def expression(text: str, **parts: dict) -> dict:
    """The tree of an expression the planner writes, e.g. expression("sum(x)", x=node).

    `text` is SQL over the planner's own names; each name in `parts` that
    appears in it as a bare column is replaced by that subtree.
    """
    node = json.loads(_parsed_expression(text))
    return _replace_columns(node, parts) if parts else node


def _replace_columns(node, parts: dict[str, dict]):
    """`node` with each bare column named in `parts` replaced by a copy of its subtree."""
    if isinstance(node, list):
        return [_replace_columns(item, parts) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("class") == "COLUMN_REF" and len(node["column_names"]) == 1 and node["column_names"][0] in parts:
        return copy.deepcopy(parts[node["column_names"][0]])
    return {key: _replace_columns(value, parts) for key, value in node.items()}


def column(name: str) -> dict:
    """A reference to the column `name`."""
    return {"class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "", "query_location": NO_LOCATION,
            "column_names": [name]}


def constant(number: int) -> dict:
    """The BIGINT constant `number`, as LIMIT and OFFSET take it."""
    return {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "query_location": NO_LOCATION,
            "value": {"type": {"id": "BIGINT", "type_info": None}, "is_null": False, "value": number}}


def aliased(node: dict, name: str) -> dict:
    return {**node, "alias": name}


def to_sql(node: dict) -> str:
    """A SELECT node as SQL text, as DuckDB prints it."""
    tree = {"error": False, "statements": [{"node": node, "named_param_map": []}]}
    with parser() as con:
        return con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()[0]


def output_name(item: dict) -> str:
    """The name DuckDB gives a select-list item: its alias, a column's own name, or the expression's text."""
    if item.get("alias"):
        return item["alias"]
    if item["class"] == "COLUMN_REF":
        return item["column_names"][-1]
    bare = select_node("SELECT 1")
    bare["select_list"] = [item]
    return to_sql(bare)[len("SELECT "):]


def canonical(node: dict) -> str:
    """A key equal for two subtrees that differ only in their positions in the text and their alias."""
    return json.dumps(without_locations({**node, "alias": ""}), sort_keys=True)


def position(node: dict) -> int | None:
    """The number of an integer constant (a select-list position in GROUP BY or ORDER BY), else None."""
    number = node["value"].get("value") if node.get("class") == "CONSTANT" else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def bare_name(node: dict) -> str | None:
    """The lower-cased name of an unqualified column reference, else None."""
    if node.get("class") == "COLUMN_REF" and len(node["column_names"]) == 1:
        return node["column_names"][0].lower()
    return None
