"""Each value as the table shows it: DuckDB's own text of it, numbers grouped by thousands with their decimals lined up.

The text comes from the decoder (decode.page_text; file_text for a first page
read where its result is, in-process), so the live table, the
static HTML and the text form all read what DuckDB's CLI would print, never
pandas' idea of a FLOAT, a DATE or a HUGEINT.
"""

from __future__ import annotations

import re

from lakelambda.protocol import Column

from ..client import QueryResult
from ..decode import TextRow

NUMBER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                          "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"})
_PLAIN_NUMBER = re.compile(r"(-?)(\d+)(\.\d+)?")
# A blank as wide as a digit, which no HTML renderer collapses (trailing spaces need a stylesheet's
# `white-space: pre`, which an untrusted notebook or GitHub drops): what pads decimals in HTML.
FIGURE_SPACE = "\u2007"


def text_rows(result: QueryResult, offset: int, limit: int) -> tuple[TextRow, ...]:
    """Rows [offset, offset + limit) of `result` as DuckDB writes each value: from its first page where that
    holds them (written as text once), else the page its engine serves."""
    if min(offset + limit, result.total_rows) <= result.first_page.row_count:
        return result.first_page.text()[offset : offset + limit]
    return result.page(offset, limit).text()


def is_number(type_name: str) -> bool:
    return type_name in NUMBER_TYPES or type_name.startswith("DECIMAL(")


def shown_columns(rows: tuple[TextRow, ...], columns: tuple[Column, ...], pad: str = " ") -> list[list[str | None]]:
    """Each column's texts (None for NULL), numbers with thousands separators and, padded on the right with
    `pad`, their decimal points in one line down the page (no digit added: `6,148.3` stays DuckDB's text)."""
    shown = []
    for index, column in enumerate(columns):
        texts = [row[index] for row in rows]
        shown.append(_aligned(texts, pad) if is_number(column.type) else texts)
    return shown


def _aligned(texts: list[str | None], pad: str) -> list[str | None]:
    grouped = [None if text is None else _grouped(text) for text in texts]
    width = max((tail for _, tail in filter(None, grouped)), default=0)
    return [None if shown is None else shown[0] + pad * (width - shown[1]) for shown in grouped]


def grouped_number(text: str) -> str:
    """`1234567.25` as `1,234,567.25`; DuckDB's other number texts (`1e+20`, `inf`, `nan`) as they are."""
    return _grouped(text)[0]


def _grouped(text: str) -> tuple[str, int]:
    """grouped_number's text, and how many of its characters are from its decimal point on (0 without one):
    one match of each value, which a page of numbers makes 150 of."""
    match = _PLAIN_NUMBER.fullmatch(text)
    if not match:
        return text, 0
    decimals = match[3] or ""
    return f"{match[1]}{int(match[2]):,}{decimals}", len(decimals)
