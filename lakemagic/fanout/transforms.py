"""Pruning an Iceberg or Delta table's data files by their partition values and file statistics.

Each file says facts about a column: all its rows hold one value (an
`identity` partition, or NULL where a transform's value is NULL: a transform
of NULL is NULL, and of nothing else), or lie in an interval [lo, hi] (a
`year`/`month`/`day`/`hour` value, counted from 1970-01-01 00:00 UTC as
Iceberg defines them; or the file's lower and upper statistics). A top-level
AND term of the WHERE clause that reads one column drops a file where one of
its facts rules the term out:
- at a single value, the term itself is evaluated, whatever it computes (as
  prune.py does with a Hive key);
- over an interval, only `col op c` (< <= > >=: true at lo or at hi, as the
  comparison is monotone), `col = c` and `col IN (c, ...)` (some c in [lo, hi]),
  `col BETWEEN a AND b` (lo <= b and hi >= a), with constants reading no
  column. The column is replaced by lo and hi of its own type, so DuckDB binds
  each comparison as the query does (DATE '1996-03-15' < TIMESTAMP
  '1996-03-15 10:00' is true: casting the constant to the column's type
  would get it wrong).
Evaluation is DuckDB's, in the parse-only (UTC) database, over one row per
fact. `bucket`, `truncate` and `void` say nothing usable; statistics are used
for integers, decimals, dates and timestamps only (strings are truncated, and
a float's NaN lies outside its bounds yet passes `> c`). The task SQL keeps
the whole WHERE clause, so a file kept in doubt costs time, never correctness.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import duckdb

from lakelambda.sql import parameter_names, parser, quote_identifier, walk, without_locations

from .prune import and_terms, columns_read
from .shape import locate
from .tree import PREFIX, Refusal, column, expression, select_node, to_sql

TEMPORAL = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
# Types whose statistics bound every value exactly (Iceberg's bounds; Delta's, timestamps widened below).
BOUNDED = TEMPORAL + ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                      "UBIGINT", "UHUGEINT")
# A transform's value: how many of its units from 1970-01-01 00:00 UTC (a day may also come as a date).
UNITS = {"year": "YEAR", "month": "MONTH", "day": "DAY", "hour": "HOUR"}
STATISTICS = "statistics"  # the transform name of a file's statistics fact
_COMPARISONS = {"COMPARE_LESSTHAN", "COMPARE_LESSTHANOREQUALTO", "COMPARE_GREATERTHAN",
                "COMPARE_GREATERTHANOREQUALTO"}
_LO, _HI, _VALUE, _TRANSFORM, _FILE, _UPPER = (f"{PREFIX}{name}" for name in ("lo", "hi", "value", "transform",
                                                                              "file", "upper"))


def prune_format(sql: str, table: str, files: Sequence, column_types: Mapping[str, str],
                 params: Mapping | None = None) -> list:
    """The data files of `table` that can hold rows passing the WHERE clause of `sql` (its $parameters
    bound to `params`), in their order: all of them wherever that is in doubt.

    Each file has `.path`, `.bytes`, `.partition` ((source column, transform, value) triples, the value
    as text or None) and optionally `.lower`/`.upper` (column -> value as text); `column_types` maps
    the table's columns to their DuckDB types.
    """
    if not files:
        return []
    try:
        ref = locate(node := select_node(sql), table)
    except Refusal:
        return list(files)
    alias = ref["alias"] or ref["table_name"]
    types = {name.lower(): kind for name, kind in column_types.items() if not name.lower().startswith(PREFIX)}
    params = {name: value for name, value in (params or {}).items() if not name.lower().startswith(PREFIX)}
    kept = set(range(len(files)))
    for term in and_terms(node["where_clause"]):
        read = columns_read(term, alias, set(params))
        if read is None or len(read) != 1 or not read <= set(types):
            continue
        name = read.pop()
        kind = canonical_type(types[name])
        facts = _facts(files, name, kind) if kind else []
        if facts:
            try:
                kept -= _ruled_out(term, name, kind, alias, facts, params)
            except duckdb.Error:
                continue  # DuckDB cannot bind or evaluate it here: it decides nothing
    return [file for index, file in enumerate(files) if index in kept]


@functools.lru_cache(maxsize=64)
def canonical_type(text: str) -> str | None:
    """DuckDB's own name for the type `text` (INT8 -> BIGINT), or None if `text` is not one type alone."""
    node = _lone_type(text)
    if node is None:
        return None
    with parser() as con:
        try:
            name = con.execute(to_sql({**node, "select_list": [expression("typeof(x)", x=node["select_list"][0])]}))
            name = name.fetchone()[0]
        except duckdb.Error:
            return None
    return name if name == text or _lone_type(name) is not None else None


def _lone_type(text: str) -> dict | None:
    """The tree of `SELECT CAST(NULL AS <text>)` where `text` is one type and nothing else."""
    try:
        node = select_node(f"SELECT CAST(NULL AS {text})")
    except Refusal:
        return None
    bare = select_node("SELECT CAST(NULL AS INTEGER)")
    same = [without_locations({**tree, "select_list": [{**tree["select_list"][0], "cast_type": None}]})
            for tree in (node, bare)]
    return node if len(node["select_list"]) == 1 and same[0] == same[1] else None


def _facts(files: Sequence, name: str, kind: str) -> list[tuple[int, str, str | None, str | None]]:
    """(file index, transform, value, upper) for each fact the files say of column `name`."""
    facts = []
    for index, file in enumerate(files):
        for source, transform, value in file.partition:
            if source.lower() == name and (transform == "identity" or (transform in UNITS and kind in TEMPORAL)):
                facts.append((index, transform, value, None))
        lower, upper = (_lookup(getattr(file, side, None), name) for side in ("lower", "upper"))
        if lower is not None and upper is not None and _bounded(kind):
            facts.append((index, STATISTICS, lower, upper))
    return facts


def _lookup(values: Mapping[str, str] | None, name: str) -> str | None:
    return next((value for key, value in (values or {}).items() if key.lower() == name), None)


def _ruled_out(term: dict, name: str, kind: str, alias: str, facts: list, params: Mapping) -> set[int]:
    """The indexes of the files one of whose facts leaves no row passing `term` (which reads `name` alone)."""
    ranges = _ranges(name, kind)
    query = select_node(f"SELECT DISTINCT {_FILE} FROM ({ranges}) AS {quote_identifier(alias)}")
    single = f"{_VALUE} IS NULL OR ({_TRANSFORM} = 'identity' AND {quote_identifier(name)} IS NOT NULL)"
    where = expression(f"(CASE WHEN {single} THEN {PREFIX}term WHEN {quote_identifier(name)} IS NULL "
                       f"OR {_HI} IS NULL THEN TRUE ELSE {PREFIX}interval END) IS NOT TRUE",
                       **{f"{PREFIX}term": term, f"{PREFIX}interval": _over_interval(term, name)})
    text = to_sql({**query, "where_clause": where})
    used = {key: value for key, value in params.items() if key in parameter_names(text)}
    columns = dict(zip((_FILE, _TRANSFORM, _VALUE, _UPPER), map(list, zip(*facts))))
    with parser() as con:
        return {index for (index,) in con.execute(text, {**used, **columns}).fetchall()}


def _ranges(name: str, kind: str) -> str:
    """SQL of one row per fact: its file, transform, value, and lo (named as the column) and hi, of type `kind`.
    lo and hi are NULL where the fact's value does not read as that type: the file is then kept."""
    value, upper = f"TRY_CAST({_VALUE} AS {kind})", f"TRY_CAST({_UPPER} AS {kind})"
    lo, hi = {"identity": value}, {"identity": value}
    if kind in TEMPORAL:
        for transform, unit in UNITS.items():
            start = f"try(TIMESTAMP '1970-01-01' + to_{unit.lower()}s(TRY_CAST({_VALUE} AS BIGINT)))"
            if transform == "day":  # a manifest read with read_avro gives a day as a DATE
                start = f"COALESCE({start}, TRY_CAST(TRY_CAST({_VALUE} AS DATE) AS TIMESTAMP))"
            lo[transform] = f"CAST({start} AS {kind})"
            hi[transform] = f"CAST(try({start} + INTERVAL 1 {unit} - INTERVAL 1 MICROSECOND) AS {kind})"
    if _bounded(kind):
        # Delta truncates timestamp statistics to milliseconds: widen both ends by what that may lose.
        slack = " INTERVAL 999 MICROSECOND" if kind.startswith("TIMESTAMP") else ""
        lo[STATISTICS] = f"try({value} -{slack})" if slack else value
        hi[STATISTICS] = f"try({upper} +{slack})" if slack else upper

    def case(ends: dict[str, str]) -> str:
        whens = " ".join(f"WHEN '{transform}' THEN {end}" for transform, end in ends.items())
        return f"CASE {_TRANSFORM} {whens} END"

    facts = ", ".join(f"unnest(CAST(${part} AS {element}[])) AS {part}" for part, element in (
        (_FILE, "BIGINT"), (_TRANSFORM, "VARCHAR"), (_VALUE, "VARCHAR"), (_UPPER, "VARCHAR")))
    return (f"SELECT {_FILE}, {_TRANSFORM}, {_VALUE}, {case(lo)} AS {quote_identifier(name)}, {case(hi)} AS {_HI} "
            f"FROM (SELECT {facts})")


def _bounded(kind: str) -> bool:
    """Whether statistics of type `kind` bound every value exactly."""
    return kind in BOUNDED or kind.startswith("DECIMAL(")


def _over_interval(term: dict, name: str) -> dict:
    """Whether `term` can hold somewhere in [lo, hi] (the column stands for lo; fanout_hi is hi), in the
    forms where that is exact; TRUE for any other term."""
    kind = term.get("type")
    if term.get("class") == "COMPARISON" and kind in _COMPARISONS | {"COMPARE_EQUAL"}:
        sides = [side for side in ("left", "right") if _is_column(term[side], name)]
        other = {"left": "right", "right": "left"}[sides[0]] if len(sides) == 1 else None
        if other and _constant(term[other]):
            if kind == "COMPARE_EQUAL":
                return _around(term[sides[0]], [term[other]])
            return expression("a OR b", a=term, b={**term, sides[0]: column(_HI)})
    if term.get("class") == "OPERATOR" and kind == "COMPARE_IN" and _is_column(term["children"][0], name) \
            and all(_constant(child) for child in term["children"][1:]):
        return _around(term["children"][0], term["children"][1:])
    if term.get("class") == "BETWEEN" and _is_column(term["input"], name) \
            and _constant(term["lower"]) and _constant(term["upper"]):
        return expression(f"{_LO} <= b AND {_HI} >= a", **{_LO: term["input"]}, a=term["lower"], b=term["upper"])
    return expression("TRUE")


def _around(lo: dict, constants: list[dict]) -> dict:
    """Some of `constants` lies in [lo, hi]."""
    checks = [expression(f"{_LO} <= c AND c <= {_HI}", **{_LO: lo}, c=constant) for constant in constants]
    return checks[0] if len(checks) == 1 else {**expression("a OR b"), "children": checks}


def _is_column(node: dict, name: str) -> bool:
    return node.get("class") == "COLUMN_REF" and node["column_names"][-1].lower() == name


def _constant(node: dict) -> bool:
    """Whether `node` reads no column (columns_read has already refused subqueries and the like)."""
    return not any(part.get("class") == "COLUMN_REF" for part in walk(node))
