"""Static renderings of results and errors: HTML for notebooks, text for terminals.

The widget uses the same HTML for its table, and these forms are what an
executed notebook shows where no widget front end runs (papermill,
nbconvert, GitHub).
"""

from __future__ import annotations

import html

import pandas as pd

from lakelambda.protocol import Column

from ..client import CallStats
from ..engines import LambdaFigures

_STYLE = """<style>
.lakemagic-table {border-collapse: collapse; font-size: 12px; font-family: var(--jp-code-font-family, monospace);}
.lakemagic-table th, .lakemagic-table td {padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: pre; line-height: 1.4;}
.lakemagic-table th {vertical-align: bottom;}
.lakemagic-table .lm-type {font-weight: normal; color: #888; font-size: 10px;}
.lakemagic-table .lm-null {color: #aaa; font-style: italic;}
.lakemagic-table .lm-rownum {color: #888;}
.lakemagic-summary {font-size: 12px; color: #555; margin: 4px 0;}
</style>"""


def rows_label(offset: int, row_count: int, total_rows: int) -> str:
    if row_count == 0:
        return f"no rows of {total_rows:,}"
    return f"rows {offset + 1:,}–{offset + row_count:,} of {total_rows:,}"


def stats_label(stats: CallStats, total_rows: int) -> str:
    engine = stats.engine
    warmth = "cold start" if engine.cold else "warm"
    label = (
        f"{total_rows:,} rows · engine {engine.engine_ms:,.0f} ms · "
        f"round trip {stats.round_trip_ms:,.0f} ms · {warmth} · DuckDB {engine.duckdb_version or '?'}"
    )
    return label + _lambda_label(stats.lambda_figures)


def _lambda_label(figures: LambdaFigures | None) -> str:
    """The Lambda's own figures: what the call was billed, and what that costs."""
    if figures is None or figures.billed_ms is None:
        return ""
    label = f" · billed {figures.billed_ms:,} ms at {figures.memory_mb or '?':,} MB"
    if figures.cost_usd is not None:
        label += f" · about ${figures.cost_usd:.7f}"
    return label


def html_table(frame: pd.DataFrame, columns: tuple[Column, ...], first_row_number: int = 1) -> str:
    """An HTML table with each column's DuckDB type under its name, and NULLs marked."""
    head = "".join(
        f"<th>{html.escape(c.name)}<br><span class='lm-type'>{html.escape(c.type)}</span></th>"
        for c in columns
    )
    body = []
    for number, row in enumerate(frame.itertuples(index=False, name=None), start=first_row_number):
        cells = "".join(_cell(value) for value in row)
        body.append(f"<tr><td class='lm-rownum'>{number:,}</td>{cells}</tr>")
    return f"{_STYLE}<table class='lakemagic-table'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value) -> str:
    if _is_null(value):
        return "<td class='lm-null'>NULL</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _is_null(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts and arrays are values, not NULL
        return False


def static_html(first_page_table: str, row_count: int, total_rows: int, stats: CallStats) -> str:
    """The result as an executed notebook keeps it: the first page's table and a summary."""
    summary = f"showing {rows_label(0, row_count, total_rows)} · {stats_label(stats, total_rows)}"
    return f"{first_page_table}<div class='lakemagic-summary'>{html.escape(summary)}</div>"


def static_text(frame: pd.DataFrame, columns: tuple[Column, ...], total_rows: int, stats: CallStats) -> str:
    schema = ", ".join(f"{c.name} {c.type}" for c in columns)
    preview = frame.head(10).to_string(index=False) if len(frame.columns) else ""
    return (
        f"lakesql result: {total_rows:,} rows × {len(columns)} columns ({schema})\n"
        f"{preview}\n"
        f"showing {rows_label(0, min(len(frame), 10), total_rows)} · {stats_label(stats, total_rows)}"
    )


def error_html(error_text: str) -> str:
    return (
        "<pre style='color:#b00020; background:#fff5f5; padding:6px; margin:0; white-space:pre-wrap'>"
        f"{html.escape(error_text)}</pre>"
    )
