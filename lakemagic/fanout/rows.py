"""Queries without aggregates: each task returns its rows; the merge concatenates, sorts and limits.

    SELECT vendor_id, fare_amount FROM taxi WHERE tip_amount > 5 ORDER BY fare_amount DESC, pickup_at LIMIT 10
    task:  SELECT vendor_id, fare_amount, pickup_at AS fanout_order1 FROM <its files> WHERE (tip_amount > 5)
           ORDER BY fare_amount DESC, pickup_at LIMIT 10
    merge: SELECT * EXCLUDE (fanout_order1) FROM partials ORDER BY fare_amount DESC, fanout_order1 LIMIT 10

With ORDER BY and LIMIT k OFFSET o each task returns its own first k + o
rows, which hold every row of the whole result. An ORDER BY term that is a
position, ALL or an output column's name sorts the merge by the same output
column; any other term is computed by the task as an extra column, which the
merge sorts by and leaves out. LIMIT without ORDER BY: each task returns at
most k rows and the merge keeps k of them (any k rows are a right answer,
as in a single run). SELECT DISTINCT is applied by the tasks and again by
the merge. Rows with neither LIMIT nor DISTINCT are not split: the result
would be as big as what the filter keeps, merged in the notebook at once.
"""

from __future__ import annotations

import copy

from lakelambda.sql import quote_identifier

from .shape import Query, merge_modifiers
from .tree import PARTIALS, PREFIX, Refusal, aliased, bare_name, column, constant, output_name, position, select_node


def split_rows(query: Query) -> tuple[dict, dict]:
    """The task's SELECT node and the merge's SELECT node of a query without aggregates."""
    if query.limit is None and not query.distinct:
        # As many rows as its filter keeps: split, every one would pass through the notebook at once.
        raise Refusal("rows without a LIMIT are not split: on one invocation the result is stored and paged "
                      "as it is read")
    node = query.node
    outputs = {output_name(item).lower() for item in node["select_list"] if item["class"] != "STAR"}
    extras, merge_orders = [], []
    for term in query.orders:
        expression = term["expression"]
        if expression["class"] == "STAR" or position(expression) is not None or bare_name(expression) in outputs:
            merge_orders.append(copy.deepcopy(term))
        else:
            name = f"{PREFIX}order{len(extras) + 1}"
            extras.append(aliased(copy.deepcopy(expression), name))
            merge_orders.append({**copy.deepcopy(term), "expression": column(name)})
    if extras and query.distinct:
        raise Refusal("SELECT DISTINCT with ORDER BY on something it does not select is not split")
    task = copy.deepcopy(node)
    task["select_list"] += extras
    task["modifiers"] = [_task_modifier(modifier, query) for modifier in node["modifiers"]
                         if query.limit is not None or modifier["type"] == "DISTINCT_MODIFIER"]
    excluded = ", ".join(quote_identifier(extra["alias"]) for extra in extras)
    merge = select_node(f"SELECT * {f'EXCLUDE ({excluded}) ' if extras else ''}FROM {PARTIALS}")
    merge["modifiers"] = merge_modifiers(node, merge_orders)
    return task, merge


def _task_modifier(modifier: dict, query: Query) -> dict:
    """A task keeps DISTINCT and ORDER BY, and returns the first LIMIT + OFFSET rows without skipping any."""
    if modifier["type"] != "LIMIT_MODIFIER":
        return copy.deepcopy(modifier)
    return {**modifier, "limit": constant(query.limit + (query.offset or 0)), "offset": None}
