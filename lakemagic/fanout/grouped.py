"""Aggregate queries: each task aggregates its share by the query's groups; the merge aggregates again.

    SELECT vendor_id, round(sum(tip_amount) / count(*), 2) AS tip FROM taxi GROUP BY vendor_id
    task:  SELECT vendor_id AS vendor_id, sum(tip_amount) AS fanout_agg1, count_star() AS fanout_agg2
           FROM <its files> GROUP BY vendor_id
    merge: SELECT vendor_id, round((sum(fanout_agg1) / CAST(COALESCE(sum(fanout_agg2), 0) AS BIGINT)), 2) AS tip
           FROM partials GROUP BY vendor_id

Besides the partial aggregates (aggregates.py), a task computes its "task
columns": the query's non-aggregate select items, kept with their aliases so
that GROUP BY binds in the task as it does in the query; the GROUP BY
expressions; and each aggregate-free part of an aggregate item, of HAVING or
of ORDER BY that reads a column, a subquery or a $parameter. Task columns are
functions of the groups, so the merge groups by all of them, then applies
HAVING, DISTINCT, ORDER BY, LIMIT and OFFSET as the query does.
"""

from __future__ import annotations

import copy

from lakelambda.sql import is_subquery, quote_identifier, walk

from .aggregates import DISTINCT_COLUMN, Partials, merge_expression
from .functions import is_aggregate
from .shape import Query, merge_modifiers
from .tree import PARTIALS, PREFIX, Refusal, aliased, bare_name, canonical, column, output_name, position, select_node


def is_aggregate_query(query: Query) -> bool:
    node = query.node
    return bool(node["group_expressions"] or node["aggregate_handling"] == "FORCE_AGGREGATES" or node["having"]
                or any(map(contains_aggregate, [*node["select_list"], *(term["expression"] for term in query.orders)])))


def contains_aggregate(node: dict) -> bool:
    return any(is_aggregate(part) for part in walk(node, is_subquery))


def split_grouped(query: Query) -> tuple[dict, dict]:
    """The task's SELECT node and the merge's SELECT node of an aggregate query."""
    node = query.node
    if len(node["group_sets"]) > 1:
        raise Refusal("GROUPING SETS, ROLLUP and CUBE are not split")
    items = node["select_list"]
    if any(item["class"] == "STAR" for item in items):
        raise Refusal("* in an aggregate query is not split")
    groups = _groups(node)
    merge = _Merge(items, groups)
    select_list = merge.select_list()
    having = merge.expression(node["having"]) if node["having"] else None
    orders = [merge.order(term) for term in query.orders]
    if not groups and merge.columns.columns:
        raise Refusal("without GROUP BY, only aggregates and constants outside them are split")
    task = _task(node, groups, merge)
    merged = select_node(_merge_skeleton(merge))
    merged["select_list"] = select_list
    keys = [column(name) for name, _ in merge.columns.columns]
    merged["group_expressions"] = keys
    merged["group_sets"] = [list(range(len(keys)))] if keys else []
    merged["having"] = having
    merged["modifiers"] = merge_modifiers(node, orders)
    return task, merged


def _groups(node: dict) -> list[dict]:
    """The GROUP BY expressions, with positions (GROUP BY 1) and GROUP BY ALL spelled out."""
    items = node["select_list"]
    if node["aggregate_handling"] == "FORCE_AGGREGATES":
        return [aliased(copy.deepcopy(item), "") for item in items if not contains_aggregate(item)]
    groups = []
    for group in node["group_expressions"]:
        number = position(group)
        if number is None:
            groups.append(copy.deepcopy(group))
        elif 1 <= number <= len(items):
            groups.append(aliased(copy.deepcopy(items[number - 1]), ""))
        else:
            raise Refusal(f"GROUP BY {number} names no select item")
    return groups


class _TaskColumns:
    """What a task computes besides the partial aggregates, each under one name."""

    def __init__(self) -> None:
        self.columns: list[tuple[str, dict]] = []
        self._by_key: dict[str, str] = {}

    def add(self, node: dict, name: str | None = None, kind: str = "val") -> str:
        key = canonical(node)
        if name is None and key in self._by_key:
            return self._by_key[key]
        name = name or f"{PREFIX}{kind}{len(self.columns) + 1}"
        self._by_key.setdefault(key, name)
        self.columns.append((name, node))
        return name


class _Merge:
    """Builds the merge's expressions, collecting the task columns and partials they read."""

    def __init__(self, items: list[dict], groups: list[dict]) -> None:
        self.partials, self.columns = Partials(), _TaskColumns()
        self.items, self.grouped = items, bool(groups)
        self.outputs = {output_name(item).lower() for item in items}
        # Items computed from aggregates: those containing one, and those naming an earlier such item.
        self.aggregate_aliases: set[str] = set()
        self.aggregated = []
        for item in items:
            self.aggregated.append(self._has_merge_part(item))
            if self.aggregated[-1] and item["alias"]:
                self.aggregate_aliases.add(item["alias"].lower())
        plain = [item for item, aggregated in zip(items, self.aggregated) if not aggregated]
        self.grouped_names = _column_names_outside_aggregates([*groups, *plain])
        for item in plain if groups else []:
            self._keep(item)
        for group in groups:
            self.columns.add(group, kind="key")

    def _keep(self, item: dict) -> None:
        name = item["alias"] or (item["column_names"][-1] if item["class"] == "COLUMN_REF" else "")
        self.columns.add(item, name or f"{PREFIX}col{len(self.columns.columns) + 1}")

    def select_list(self) -> list[dict]:
        """The merge's items: the task's column for a plain item, the merged expression for the others."""
        return [
            aliased(column(self.columns.add(item)) if self.grouped and not aggregated
                    else self.expression(aliased(item, "")), output_name(item))
            for item, aggregated in zip(self.items, self.aggregated)
        ]

    def order(self, term: dict) -> dict:
        expression = term["expression"]
        if expression["class"] == "STAR" or position(expression) is not None or bare_name(expression) in self.outputs:
            return copy.deepcopy(term)  # ORDER BY ALL, a position or an output name: the merge has the same
        return {**copy.deepcopy(term), "expression": self.expression(expression)}

    def expression(self, node: dict) -> dict:
        """`node` over the partials. A bare name of an aggregate item stays a reference to that output
        column, which DuckDB binds when no grouped column has the name: in the merge none has."""
        if is_aggregate(node):
            return merge_expression(node, self.partials)
        if bare_name(node) in self.aggregate_aliases:
            if bare_name(node) in self.grouped_names:
                raise Refusal(f"{bare_name(node)} may name a column or an output column here; rename the output")
            return copy.deepcopy(node)
        if not self._has_merge_part(node):
            return column(self.columns.add(node)) if _reads_task_data(node) else copy.deepcopy(node)
        if node["class"] == "LAMBDA":
            raise Refusal("lambda functions over aggregates are not split")
        return {key: self._inside(value) for key, value in node.items()}

    def _inside(self, value):
        if isinstance(value, list):
            return [self._inside(item) for item in value]
        if isinstance(value, dict):
            if "class" in value:
                return self.expression(value)
            return {key: self._inside(item) for key, item in value.items()}
        return value

    def _has_merge_part(self, node: dict) -> bool:
        return any(is_aggregate(part) or bare_name(part) in self.aggregate_aliases
                   for part in walk(node, is_subquery))


def _reads_task_data(node: dict) -> bool:
    return any(part.get("class") in ("COLUMN_REF", "SUBQUERY", "PARAMETER")
               for part in walk(node, is_subquery))


def _column_names_outside_aggregates(expressions: list[dict]) -> set[str]:
    return {node["column_names"][-1].lower()
            for node in walk(expressions, lambda node: is_aggregate(node) or is_subquery(node))
            if node.get("class") == "COLUMN_REF"}


def _task(node: dict, groups: list[dict], merge: _Merge) -> dict:
    task = copy.deepcopy(node)
    partials = merge.partials
    task["select_list"] = [aliased(copy.deepcopy(expression), name) for name, expression in merge.columns.columns]
    task["select_list"] += [aliased(expression, name) for name, expression in partials.columns]
    task_groups = [copy.deepcopy(group) for group in groups]
    if partials.distinct is not None:
        task["select_list"].append(aliased(copy.deepcopy(partials.distinct), DISTINCT_COLUMN))
        task_groups.append(copy.deepcopy(partials.distinct))
    task["group_expressions"] = task_groups
    task["group_sets"] = [list(range(len(task_groups)))] if task_groups else []
    task["aggregate_handling"] = "STANDARD_HANDLING"
    task["having"] = None
    task["modifiers"] = []
    return task


def _merge_skeleton(merge: _Merge) -> str:
    """The merge's FROM: the partials, with each variance's grand mean per group as a window beside them."""
    if not merge.partials.means:
        return f"SELECT 1 FROM {PARTIALS}"
    keys = ", ".join(quote_identifier(name) for name, _ in merge.columns.columns)
    over = f"OVER (PARTITION BY {keys})" if keys else "OVER ()"
    means = ", ".join(
        f"sum({quote_identifier(count)} * {quote_identifier(mean)}) {over} / sum({quote_identifier(count)}) {over} "
        f"AS {quote_identifier(name)}"
        for name, count, mean in merge.partials.means
    )
    return f"SELECT 1 FROM (SELECT *, {means} FROM {PARTIALS}) AS {PARTIALS}"
