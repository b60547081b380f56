"""Sort, filter, profile and summarize a result that already exists, without running the user's query again.

The result operations (results.py) use it over a result's file, in the
handler or in the notebook's kernel engine. Either way the result is read
through `source_sql`, which restores the declared column types
and numbers the rows, and the filter the user typed is the one piece of text
from outside: it is checked on DuckDB's parse tree of the very statement that
will run, before anything runs. A filter may hold the result's columns,
constants, operators and an allow-list of pure scalar functions; nothing that
reads a table, a file, a setting or the environment.
"""

from __future__ import annotations

import math
import os
import secrets
from typing import Iterable, Literal, NamedTuple

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from . import page_format
from .errors import ColumnNotFound, PermissionDenied, SqlError
from .protocol import MAX_FILTER_CHARS, Bar, Column, Profile, SortKey, Summary
from .sql import (character_offsets, duckdb_error, parse_tree, parser, quote_identifier, quote_literal, walk,
                  without_locations)

# Scalar functions a filter may call: pure computations on their arguments. Operators appear in the
# parse tree as functions too (LIKE is ~~, ILIKE ~~*, GLOB ~~~, SIMILAR TO regexp_full_match, || concat).
FILTER_FUNCTIONS = frozenset({
    "+", "-", "*", "/", "//", "%", "**", "^", "&", "|", "<<", ">>", "~", "@", "||",
    "~~", "!~~", "~~*", "!~~*", "~~~", "!~~~", "regexp_full_match", "regexp_matches", "regexp_extract",
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt", "ln", "log", "log2", "log10",
    "exp", "pow", "power", "mod", "greatest", "least", "isnan", "isinf", "isfinite",
    "coalesce", "ifnull", "nullif", "lower", "upper", "lcase", "ucase", "length", "len", "strlen",
    "char_length", "character_length", "trim", "ltrim", "rtrim", "substr", "substring", "left", "right",
    "concat", "contains", "starts_with", "ends_with", "prefix", "suffix", "replace", "strpos", "instr",
    "position", "lpad", "rpad", "reverse", "split_part", "string_split", "like_escape", "ilike_escape",
    "date_trunc", "datetrunc", "date_part", "datepart", "date_diff", "datediff", "date_sub", "datesub",
    "date_add", "age", "year", "month", "day", "hour", "minute", "second", "millisecond", "microsecond",
    "dayofweek", "isodow", "dayofmonth", "dayofyear", "week", "weekofyear", "yearweek", "quarter", "epoch",
    "epoch_ms", "epoch_us", "strftime", "strptime", "make_date", "make_time", "make_timestamp", "last_day",
    "to_years", "to_months", "to_weeks", "to_days", "to_hours", "to_minutes", "to_seconds",
    "to_milliseconds", "to_microseconds",
    "list_contains", "list_has", "array_contains", "array_has", "list_extract", "list_element",
    "array_extract", "array_length", "list_value", "struct_extract", "map_extract", "element_at",
})
# Expression nodes a filter may hold; subqueries, windows, stars, $parameters and lambdas may not.
FILTER_EXPRESSIONS = frozenset({
    "CONSTANT", "COLUMN_REF", "COMPARISON", "CONJUNCTION", "OPERATOR", "BETWEEN", "CASE", "CAST", "FUNCTION",
    "COLLATE",
})
HISTOGRAM_BINS = 12
TOP_VALUES = 10
# Above this many rows, a result's summaries are computed on a sample of this many (fixed seed: the same each time).
SUMMARY_SAMPLE_ROWS = 100_000
# Up to this many rows a profile counts distinct values exactly (count(DISTINCT): about 50 ms here for 100,000
# different texts, half a second for a million); above, it estimates them (approx_count_distinct, HyperLogLog,
# which can miss either way) and says so.
EXACT_DISTINCT_ROWS = 100_000
SAMPLE_SEED = 42
# Readable bin widths for times, in microseconds: round seconds, minutes, hours, days, then whole days.
_SECOND, _DAY = 1_000_000, 86_400_000_000
_TIME_WIDTHS = tuple(_SECOND * s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                                           21600, 43200, 86400, 172800, 604800))
# The statement a filter is checked within: the one that runs, with the filter in its own lines.
_FILTER_OPEN, _FILTER_CLOSE = "WHERE (\n", "\n)"

INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                           "UINTEGER", "UBIGINT", "UHUGEINT"})
NUMERIC_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                           "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"})
TEMPORAL_TYPES = frozenset({"DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS",
                            "TIMESTAMP_NS"})


def row_column(columns: Iterable[Column]) -> str:
    """A name for the row number that none of the result's columns has."""
    taken = {c.name.lower() for c in columns}
    name = "lakemagic_row"
    while name in taken:
        name = "_" + name
    return name


def source_sql(path: str, columns: tuple[Column, ...]) -> str:
    """A subquery over a Parquet file in the page format: the declared types back, and the row number.

    The types are the handler's own, or an answer's read by DuckDB's type parser when it arrived.
    """
    stored = [f"c{i}" for i in range(len(columns))]
    restored = ", ".join(f"CAST({s} AS {c.type}) AS {quote_identifier(c.name)}"
                         for s, c in zip(stored, columns))
    return (f"(SELECT {restored}, row_number AS {quote_identifier(row_column(columns))} "
            f"FROM read_parquet({quote_literal(path)}, file_row_number = true) AS r({', '.join(stored)}, row_number))")


def table_source_sql(table: str, columns: tuple[Column, ...]) -> str:
    """source_sql's subquery over a result kept in memory (results.ResultStore.keep_in_memory): the table
    made from the query, of the declared types already, its row id the row number."""
    held = [f"c{i}" for i in range(len(columns))]
    named = ", ".join(f"{h} AS {quote_identifier(c.name)}" for h, c in zip(held, columns))
    return f"(SELECT {named}, rowid AS {quote_identifier(row_column(columns))} FROM {table} AS r({', '.join(held)}))"


class Derived(NamedTuple):
    """A statement of this module's making, with the user's filter (if any) right after `prefix`."""

    text: str
    where: str | None = None
    prefix: str = ""

    def run(self, con, before: str = "", after: str = ""):
        """Run it inside `before` ... `after`; DuckDB's error points into the filter when it is there."""
        try:
            return con.execute(before + self.text + after)
        except duckdb.Error as exc:
            if self.where is None:
                raise duckdb_error(exc) from None
            raise duckdb_error(exc, self.where, before + self.prefix) from None


def derived_select(source: str, columns: tuple[Column, ...], sort: tuple[SortKey, ...], where: str | None) -> Derived:
    """The SELECT of the result sorted and filtered, in the page format, with ties kept in result order.

    The filter is checked here, within this very statement (see check_filter).
    """
    for key in sort:
        column_named(columns, key.column)
    # Qualified, so a key is the restored column, not the select list's stored form of it.
    order = [f"result.{quote_identifier(k.column)} {'DESC' if k.descending else 'ASC'} NULLS LAST" for k in sort]
    order.append(f"result.{quote_identifier(row_column(columns))}")
    head = f"SELECT {page_format.storage_projection(columns)} FROM {source} AS result "
    tail = f" ORDER BY {', '.join(order)}"
    if where is None:
        return Derived(head + tail)
    check_filter(where, columns, head, tail)
    return Derived(head + _FILTER_OPEN + where + _FILTER_CLOSE + tail, where, head + _FILTER_OPEN)


def store_derived(con, results, derived: Derived, columns: tuple[Column, ...]):
    """Write the derived rows as a new result of `results` (a ResultStore): stored, or inline if small."""
    result_id, path = results.new_result()
    try:
        rows = derived.run(con, "COPY (", f") TO {quote_literal(path)} ({results.copy_options(columns)})")
        rows = rows.fetchone()[0]
    except BaseException:  # a partial file would only fill the disk
        if os.path.exists(path):
            os.remove(path)
        raise
    return results.keep(result_id, path, columns, rows, writer=con)


def check_filter(where: str, columns: tuple[Column, ...], head: str, tail: str) -> None:
    """Refuse a filter unless the statement it makes is `head WHERE (condition) tail` and the condition
    holds only the result's columns, constants, operators and FILTER_FUNCTIONS.

    The whole statement's tree, less its WHERE clause, must equal that of the same statement with
    the condition TRUE: so no text of the filter reaches outside its parentheses.
    """
    if not where.strip():
        raise SqlError("the filter is empty; write a condition such as trip_distance > 10", None, "ParserException")
    if len(where) > MAX_FILTER_CHARS:
        raise PermissionDenied(f"a filter is at most {MAX_FILTER_CHARS:,} characters")
    prefix = head + _FILTER_OPEN
    statement = prefix + where + _FILTER_CLOSE + tail
    try:
        with parser() as con:
            count = len(con.extract_statements(statement))
    except duckdb.Error as exc:
        raise duckdb_error(exc, where, prefix) from None
    if count != 1:
        raise PermissionDenied("a filter is one condition, not several statements")
    try:
        tree = parse_tree(statement)
    except RecursionError:
        raise PermissionDenied("this filter is nested too deeply to be checked") from None
    if tree.get("error") or len(tree["statements"]) != 1:
        raise PermissionDenied(f"this filter cannot be checked, so it cannot run ({tree.get('error_message')})")
    node = tree["statements"][0]["node"]
    expected = parse_tree(prefix + "TRUE" + _FILTER_CLOSE + tail)["statements"][0]["node"]
    try:  # what reaches outside the parentheses (a GROUP BY, say) may be nested too deeply to compare
        reaches_outside = node.get("type") != "SELECT_NODE" or _without(node) != _without(expected)
    except RecursionError:
        reaches_outside = True
    if reaches_outside:
        raise PermissionDenied("a filter is one condition on the result's columns; this one reaches outside it")
    _check_condition(node["where_clause"], {c.name.lower() for c in columns}, where, len(prefix.encode()))


def _without(node: dict) -> object:
    """The SELECT's tree with no WHERE clause and no query locations: its shape. The WHERE clause
    (the filter, walked without recursion by _check_condition) goes first: it may be nested deeply."""
    return without_locations({key: value for key, value in node.items() if key != "where_clause"})


def _check_condition(condition, names: set[str], where: str, prefix_bytes: int) -> None:
    """Check every node of the condition (sql.walk); what is not known to be harmless is refused."""
    for node in walk(condition):
        kind = node.get("class")
        if kind is not None:
            _check_expression(node, kind, names, where, prefix_bytes)
        elif node.get("type") in ("SELECT_NODE", "SET_OPERATION_NODE", "BASE_TABLE", "TABLE_FUNCTION"):
            _refuse("a filter cannot read tables", node, where, prefix_bytes)


def _check_expression(node: dict, kind: str, names: set[str], where: str, prefix_bytes: int) -> None:
    if kind not in FILTER_EXPRESSIONS:
        what = {"SUBQUERY": "a subquery", "WINDOW": "a window function", "STAR": "*",
                "PARAMETER": "a $parameter", "LAMBDA": "a lambda"}.get(kind, f"a {kind} expression")
        _refuse(f"a filter cannot hold {what}: only the result's columns, constants, operators and plain "
                "functions", node, where, prefix_bytes)
    if kind == "COLUMN_REF":
        column = node["column_names"][0]
        if column.lower() not in names:
            _refuse(f"the result has no column {column!r}", node, where, prefix_bytes, ColumnNotFound)
    elif kind == "FUNCTION":
        name = node.get("function_name", "")
        if (name.lower() not in FILTER_FUNCTIONS or node.get("schema") or node.get("catalog")
                or node.get("distinct") or node.get("filter") or node.get("export_state")
                or (node.get("order_bys") or {}).get("orders")):
            _refuse(f"{name}() is not available in a filter", node, where, prefix_bytes)


def _refuse(message: str, node: dict, where: str, prefix_bytes: int, error=PermissionDenied) -> None:
    """Raise `error`, pointing into the filter where the parser saw `node` (bytes in, characters out)."""
    location = node.get("query_location")
    offset = location - prefix_bytes if isinstance(location, int) else -1
    at = character_offsets(where)
    raise error(message, at[offset] if 0 <= offset < len(at) else None)


def column_named(columns: tuple[Column, ...], name: str) -> Column:
    for column in columns:
        if column.name == name:
            return column
    raise ColumnNotFound(f"the result has no column {name!r}")


def profile(con, source: str, column: Column, total_rows: int) -> Profile:
    """What one column of the result (of `total_rows` rows) holds: counts, range, mean, and a histogram or
    its top values. Its distinct values are counted exactly up to EXACT_DISTINCT_ROWS rows, else estimated."""
    name = quote_identifier(column.name)
    kind = _kind(column.type)
    ranged = kind in ("numeric", "temporal")
    exact = total_rows <= EXACT_DISTINCT_ROWS
    aggregates = f"count(*), count({name}), {'count(DISTINCT ' if exact else 'approx_count_distinct('}{name})"
    if ranged:
        aggregates += f", CAST(min({name}) AS VARCHAR), CAST(max({name}) AS VARCHAR), CAST(avg({name}) AS VARCHAR)"
    row = Derived(f"SELECT {aggregates} FROM {source} AS result").run(con).fetchone()
    rows, non_null, distinct = row[:3]
    low, high, mean = row[3:] if ranged else (None, None, None)
    bars_kind, bars = _bars(con, source, column)
    return Profile(column.name, column.type, rows, rows - non_null, distinct, low, high, mean, bars_kind, bars,
                   distinct_exact=exact)


def summaries(con, source: str, columns: tuple[Column, ...], total_rows: int) -> tuple[int, tuple[Summary, ...]]:
    """Every column's nulls and bars (as a profile draws them), over all the rows, or over a fixed-seed
    sample of SUMMARY_SAMPLE_ROWS of them when there are more: how many rows were summarized, and the summaries.

    The rows are copied once into a temporary table of this cursor, so every column sees the same sample.
    """
    table = f"lakemagic_summarized_{secrets.token_hex(8)}"
    sample = f" USING SAMPLE reservoir({SUMMARY_SAMPLE_ROWS} ROWS) REPEATABLE ({SAMPLE_SEED})" \
        if total_rows > SUMMARY_SAMPLE_ROWS else ""
    Derived(f"CREATE TEMPORARY TABLE {table} AS SELECT * FROM {source} AS result{sample}").run(con)
    try:
        counts = Derived(f"SELECT count(*), {', '.join(f'count({quote_identifier(c.name)})' for c in columns)} "
                         f"FROM {table}").run(con).fetchone()
        rows, non_null = counts[0], counts[1:]
        return rows, tuple(Summary(column.name, rows - present, *_bars(con, table, column))
                           for column, present in zip(columns, non_null))
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _bars(con, source: str, column: Column) -> tuple[Literal["histogram", "top"], tuple[Bar, ...]]:
    """A histogram of a number or time column, else (or if it holds fewer than two values) its top values."""
    name = quote_identifier(column.name)
    kind = _kind(column.type)
    bars = _histogram(con, source, name, kind, column.type) if kind != "other" else None
    if bars is not None:
        return "histogram", bars
    return "top", tuple(Bar(value, count) for value, count in Derived((
        f"SELECT CAST({name} AS VARCHAR) AS value, count(*) AS n FROM {source} AS result "
        f"WHERE {name} IS NOT NULL GROUP BY ALL ORDER BY n DESC, value LIMIT {TOP_VALUES}")).run(con).fetchall())


def _kind(type_name: str) -> str:
    if type_name in NUMERIC_TYPES or type_name.startswith("DECIMAL"):
        return "numeric"
    return "temporal" if type_name in TEMPORAL_TYPES else "other"


def _histogram(con, source: str, name: str, kind: str, type_name: str) -> tuple[Bar, ...] | None:
    """Bins of one readable width (bin_width) over the column's finite values; None when they are
    fewer than two distinct ones."""
    value = f"CAST({name} AS DOUBLE)" if kind == "numeric" else f"CAST(epoch_us(CAST({name} AS TIMESTAMP)) AS DOUBLE)"
    values = f"(SELECT {value} AS x FROM {source} AS result WHERE isfinite({value}))"
    low, high = Derived(f"SELECT min(x), max(x) FROM {values}").run(con).fetchone()
    if low is None or not 0 < (high - low) / HISTOGRAM_BINS < math.inf:  # one value, or a span floats cannot cut
        return None
    width = bin_width(high - low, kind, whole=type_name in INTEGER_TYPES)
    step = _DAY if kind == "temporal" and width > _DAY else width  # bins of days start on the first value's day
    start = math.floor(low / step) * step
    bins = max(1, math.ceil((high - start) / width))  # the highest value, on an edge, goes in the last bin
    counts = dict(Derived((
        f"SELECT least(CAST(floor((x - {start!r}) / {width!r}) AS BIGINT), {bins - 1}) AS bin, count(*) "
        f"FROM {values} GROUP BY bin")).run(con).fetchall())
    edges = [start + i * width for i in range(bins + 1)]
    labels = [_number_label(edge, width) for edge in edges] if kind == "numeric" else _time_labels(con, edges, width)
    return tuple(Bar(f"{labels[i]} – {labels[i + 1]}", counts.get(i, 0)) for i in range(bins))


def bin_width(span: float, kind: str, whole: bool = False) -> float:
    """The narrowest readable width that is at least `span` / HISTOGRAM_BINS (so its bins, from a multiple of it at
    or below the least value, are at most HISTOGRAM_BINS + 1): 1, 2, 2.5 or 5 times
    a power of ten (at least 1 for whole numbers); for times (in microseconds), a round duration."""
    least = span / HISTOGRAM_BINS
    if kind == "temporal":
        for duration in _TIME_WIDTHS:
            if duration >= least:
                return duration
        return _DAY * bin_width(least / _DAY * HISTOGRAM_BINS, "numeric", whole=True)
    power = 10.0 ** math.floor(math.log10(least))
    width = next(power * step for step in (1, 2, 2.5, 5, 10) if power * step >= least)
    return max(width, 1.0) if whole else width


def _number_label(value: float, width: float) -> str:
    """The edge with as many decimals as the width has (bin_width's are round), thousands separated; with
    enough significant digits to tell it from the next where decimals would not do."""
    decimals = next((d for d in range(16) if abs(round(width, d) - width) <= width * 1e-9), None)
    if decimals is None or abs(value) >= 1e15:
        digits = min(17, max(1, math.ceil(math.log10(max(abs(value), width) / width)) + 2))
        return f"{value:.{digits}g}"
    return f"{value:,.{decimals}f}"


def _time_labels(con, edges: list[float], width: float) -> list[str]:
    """Each edge (microseconds since 1970) as DuckDB writes the moment, as precise as the bins are wide: a date for
    day-wide bins, minutes for minute-wide ones. DuckDB's, not Python's: a last edge past 9999-12-31 (Python's
    last date) is a moment DuckDB writes; one past DuckDB's last too is written as its infinity."""
    moment = "TRY(make_timestamp(CAST(round(edge) AS BIGINT)))"
    if width % _DAY == 0:
        text = f"CAST(CAST({moment} AS DATE) AS VARCHAR)"
    else:
        spec = "%H:%M" if width % 60_000_000 == 0 else "%H:%M:%S" if width % 1_000_000 == 0 else "%H:%M:%S.%f"
        text = f"strftime({moment}, '%Y-%m-%d {spec}')"
    listed = ", ".join(repr(float(edge)) for edge in edges)
    return Derived(f"SELECT list_transform([{listed}]::DOUBLE[], edge -> coalesce({text}, 'infinity'))"
                   ).run(con).fetchone()[0]
