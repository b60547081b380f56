"""Each mergeable aggregate as partial aggregates per task and one merge expression over them.

A task returns, per group, the partial columns below; the merge groups the
concatenated partials again and combines them:

    count(*), count(x)     count per task              CAST(coalesce(sum(n), 0) AS BIGINT)
    count_if(c)            count_if per task           sum(n)
    sum, min, max, bool_and, bool_or, bit_and, bit_or, bit_xor
                           the same aggregate          the same aggregate of the partials
    avg(x)                 sum(x), count(x)            sum(s) / sum(n)
    var_pop, var_samp, variance, stddev_pop, stddev_samp, stddev
                           count, mean and var_pop of x (as DOUBLE), combined as Chan et al.
                           do: M2 = sum(n * var) + sum(n * (mean - grand mean)^2), where the
                           grand mean of the group is a window over the partials (no
                           cancellation of large sums of squares)
    f(DISTINCT x)          the task also groups by x   f(DISTINCT x) over the distinct x values
                           (min, max, bool_*, bit_and, bit_or ignore DISTINCT)

FILTER (WHERE ...) stays on every partial. Sums keep DuckDB's own types
(HUGEINT for integers, DECIMAL(38, s) for decimals), so integer and decimal
results are exact; float results differ from a single run only by summation
order.
"""

from __future__ import annotations

import copy

from .tree import PREFIX, Refusal, canonical, column, expression

SELF_MERGING = frozenset({"sum", "min", "max", "bool_and", "bool_or", "bit_and", "bit_or", "bit_xor"})
# Aggregates whose DISTINCT changes nothing.
DISTINCT_BLIND = frozenset({"min", "max", "bool_and", "bool_or", "bit_and", "bit_or"})
COUNTS = frozenset({"count", "count_star"})
COUNT_IFS = frozenset({"count_if", "countif"})
AVERAGES = frozenset({"avg", "mean"})
# name -> (population?, square root?)
VARIANCES = {
    "var_pop": (True, False), "var_samp": (False, False), "variance": (False, False),
    "stddev_pop": (True, True), "stddev_samp": (False, True), "stddev": (False, True),
}
MERGEABLE = SELF_MERGING | COUNTS | COUNT_IFS | AVERAGES | frozenset(VARIANCES)

ORDER_DEPENDENT = frozenset({
    "first", "last", "any_value", "arbitrary", "arg_min", "arg_max", "argmin", "argmax", "min_by", "max_by",
    "arg_min_null", "arg_max_null", "arg_min_nulls_last", "arg_max_nulls_last", "string_agg", "group_concat",
    "listagg", "list", "array_agg", "json_group_array", "json_group_object", "bitstring_agg", "fill",
})
HOLISTIC = frozenset({
    "median", "quantile", "quantile_cont", "quantile_disc", "mode", "mad", "approx_quantile",
    "reservoir_quantile", "approx_top_k", "approx_count_distinct", "histogram", "histogram_exact", "entropy",
})
# The column a task returns the argument of the DISTINCT aggregates in, grouping by it.
DISTINCT_COLUMN = f"{PREFIX}distinct"


class Partials:
    """The partial aggregates a task returns, and the window means the merge computes over them first."""

    def __init__(self) -> None:
        self.columns: list[tuple[str, dict]] = []  # (name, aggregate the task computes)
        self.means: list[tuple[str, str, str]] = []  # (name, count column, mean column)
        self.distinct: dict | None = None  # the one argument of the DISTINCT aggregates
        self._names: dict[str, str] = {}

    def add(self, node: dict) -> str:
        key = canonical(node)
        if key not in self._names:
            self._names[key] = f"{PREFIX}agg{len(self.columns) + 1}"
            self.columns.append((self._names[key], node))
        return self._names[key]

    def mean(self, count: str, mean: str) -> str:
        """The column of the grand mean of `mean` weighted by `count`, over a group's partials."""
        known = {(known_count, known_mean): name for name, known_count, known_mean in self.means}
        if (count, mean) not in known:
            self.means.append((f"{PREFIX}mean{len(self.means) + 1}", count, mean))
            return self.means[-1][0]
        return known[(count, mean)]

    def distinct_column(self, argument: dict) -> str:
        if self.distinct is None:
            self.distinct = argument
        elif canonical(self.distinct) != canonical(argument):
            raise Refusal("DISTINCT aggregates of more than one expression are not split")
        return DISTINCT_COLUMN


def merge_expression(call: dict, partials: Partials) -> dict:
    """The merge's expression for the aggregate `call`; its partials are added to `partials`."""
    name = call["function_name"].lower()
    _check_mergeable(call, name)
    if name in DISTINCT_BLIND:
        call = {**call, "distinct": False}
    if call["distinct"]:
        if call["filter"] is not None:
            raise Refusal(f"{name}(DISTINCT ...) FILTER (...) is not split")
        return {**copy.deepcopy(call), "children": [column(partials.distinct_column(call["children"][0]))]}
    if name in COUNTS:
        return expression("CAST(coalesce(sum(n), 0) AS BIGINT)", n=column(partials.add(call)))
    if name in COUNT_IFS:
        return expression("sum(n)", n=column(partials.add(call)))
    if name in SELF_MERGING:  # the FILTER was applied by the task
        return {**copy.deepcopy(call), "children": [column(partials.add(call))], "filter": None}
    if name in AVERAGES:
        total = partials.add(_partial(call, "sum(x)"))
        count = partials.add(_partial(call, "count(x)"))
        return expression("sum(s) / sum(n)", s=column(total), n=column(count))
    return _variance(call, name, partials)


def _variance(call: dict, name: str, partials: Partials) -> dict:
    count = partials.add(_partial(call, "count(x)"))
    mean = partials.add(_partial(call, "avg(CAST(x AS DOUBLE))"))
    variance = partials.add(_partial(call, "var_pop(CAST(x AS DOUBLE))"))
    grand_mean = partials.mean(count, mean)
    population, root = VARIANCES[name]
    formula = ("CASE WHEN sum(n) > 0 THEN (sum(n * v) + sum(n * (m - g) * (m - g))) / sum(n) END" if population
               else "CASE WHEN sum(n) > 1 THEN (sum(n * v) + sum(n * (m - g) * (m - g))) / (sum(n) - 1) END")
    if root:
        formula = f"sqrt({formula})"
    return expression(formula, n=column(count), m=column(mean), v=column(variance), g=column(grand_mean))


def _partial(call: dict, text: str) -> dict:
    """`text` over the call's argument x, with the call's FILTER."""
    return {**expression(text, x=call["children"][0]), "filter": copy.deepcopy(call["filter"])}


def _check_mergeable(call: dict, name: str) -> None:
    if name in HOLISTIC:
        raise Refusal(f"{name} is not mergeable: it needs all of a group's values at once")
    if name in ORDER_DEPENDENT:
        raise Refusal(f"{name} depends on the order rows are read in, which differs between tasks")
    if name not in MERGEABLE:
        raise Refusal(f"{name} is not an aggregate the fan-out can merge exactly")
    if call["order_bys"]["orders"]:
        raise Refusal(f"{name} with ORDER BY inside is not split")
    if call.get("export_state"):
        raise Refusal(f"{name} EXPORT_STATE is not split")
    arguments = 0 if name == "count_star" else 1
    if len(call["children"]) != arguments:
        raise Refusal(f"{name} with {len(call['children'])} arguments is not split")

