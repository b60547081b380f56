"""The filter a click on a column's summary stands for, as a condition the filter box takes; and the columns a
mistyped filter may have meant.

Names and labels come from the engine's answer, which is input like any other: a name is quoted as an
identifier, a top value as a string literal (DuckDB casts it to the column's type, so it matches the value
whose text it is), and a histogram's edges are read as numbers or moments and written anew, never spliced
as they came. The condition then goes through the filter's own check, like one typed by hand.
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import re

from lakelambda.protocol import Column, Summary
from lakelambda.sql import quote_identifier, quote_literal

from ..errors import LakeQueryError

_NUMBER = re.compile(r"-?[\d,]+(\.\d+)?(e[+-]?\d+)?", re.I)  # an edge as explore's _number_label writes it
_RANGE = " – "  # between a bin's edges
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a bare column name where an error points


class NoCondition(ValueError):
    """A bar whose label cannot be read back as a value or a range."""


def nulls(column: Column) -> str:
    return f"{quote_identifier(column.name)} IS NULL"


def bar(column: Column, summary: Summary, index: int) -> str:
    """A histogram bin as a range (the last bin holds its upper edge, as the histogram counts it), or a top
    value as an equality."""
    label = summary.bars[index].label
    name = quote_identifier(column.name)
    if summary.bars_kind == "top":
        return f"{name} = {quote_literal(label)}"
    edges = label.split(_RANGE)
    if len(edges) != 2:
        raise NoCondition(f"the bar {label!r} is not a range of {column.name}")
    low, high = (_edge(edge, column.type) for edge in edges)
    return f"{name} >= {low} AND {name} {'<=' if index == len(summary.bars) - 1 else '<'} {high}"


def _edge(text: str, type_name: str) -> str:
    """A bin's edge as SQL: a number, or a moment in UTC (the histogram's own zone)."""
    if _NUMBER.fullmatch(text):
        try:
            number = decimal.Decimal(text.replace(",", ""))
        except decimal.InvalidOperation:
            number = None
        if number is not None and number.is_finite():
            return str(number)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise NoCondition(f"the bin edge {text!r} is neither a number nor a moment") from None
    if moment.tzinfo is not None:
        raise NoCondition(f"the bin edge {text!r} names a zone; the histogram's are in UTC")
    if type_name == "TIMESTAMP WITH TIME ZONE":
        return f"TIMESTAMPTZ {quote_literal(moment.isoformat(sep=' ') + '+00')}"
    if type_name == "DATE" and moment.time() == datetime.time():
        return f"DATE {quote_literal(moment.date().isoformat())}"
    return f"TIMESTAMP {quote_literal(moment.isoformat(sep=' '))}"


def did_you_mean(error: Exception, columns: tuple[Column, ...]) -> str:
    """For a filter naming no column of the result: the columns closest to the name it gave, as a
    cell's error names them."""
    if not isinstance(error, LakeQueryError) or error.sql is None or error.position is None:
        return ""
    word = _WORD.match(error.sql, error.position)
    names = [column.name for column in columns]
    if word is None or word.group() in names:
        return ""
    close = difflib.get_close_matches(word.group(), names, n=3, cutoff=0.6)
    return f"\ndid you mean {' or '.join(close)}?" if close else ""
