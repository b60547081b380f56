"""Static renderings of results and errors: HTML for notebooks, text for terminals.

The widget uses the same HTML for its table, and these forms are what an
executed notebook shows where no widget front end runs (papermill,
nbconvert, GitHub).
"""

from __future__ import annotations

import html
import math
from typing import NamedTuple

import pandas as pd

from lakelambda.protocol import Column, Profile

from ..client import CallStats, FanoutReceipt
from ..engines import LambdaFigures

_STYLE = """<style>
.lakemagic-table {border-collapse: collapse; font-size: 12px; font-family: var(--jp-code-font-family, monospace);}
.lakemagic-table th, .lakemagic-table td {padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: pre; line-height: 1.4;}
.lakemagic-table th {vertical-align: bottom;}
.lakemagic-table .lm-type {font-weight: normal; color: #888; font-size: 10px;}
.lakemagic-table .lm-null {color: #aaa; font-style: italic;}
.lakemagic-table .lm-rownum {color: #888;}
.lakemagic-summary {font-size: 12px; color: #555; margin: 4px 0;}
.lakemagic-table {table-layout: fixed;}
.lakemagic-table td, .lakemagic-table th {overflow: hidden; text-overflow: ellipsis; box-sizing: border-box;}
.lm-widget .lakemagic-table .lm-name {display: none;}
.lakemagic-profile {font-size: 12px; font-family: var(--jp-code-font-family, monospace); margin: 4px 0;}
.lakemagic-profile .lm-bar {background: #4c8bf5; height: 10px; display: inline-block;}
.lakemagic-profile table {border-collapse: collapse;}
.lakemagic-profile table td {padding: 0 6px; line-height: 1.3; white-space: pre; border: none;}
</style>"""
# Pixels per character of the table's 12 px monospace font, and each cell's padding and border.
CHAR_PX = 7.5
CELL_PX = 18
MAX_COLUMN_CHARS = 40


def rows_label(offset: int, row_count: int, total_rows: int) -> str:
    if row_count == 0:
        return f"no rows of {total_rows:,}"
    return f"rows {offset + 1:,}–{offset + row_count:,} of {total_rows:,}"


def stats_label(stats: CallStats, total_rows: int, reuse_note: str = "") -> str:
    """The footer's figures; `reuse_note` says when the engine answered from an earlier run's result."""
    engine = stats.engine
    warmth = "cold start" if engine.cold else "warm"
    label = (
        f"{total_rows:,} rows · {reuse_note + ' · ' if reuse_note else ''}engine {engine.engine_ms:,.0f} ms · "
        f"round trip {stats.round_trip_ms:,.0f} ms · {warmth} · DuckDB {engine.duckdb_version or '?'}"
    )
    return label + _lambda_label(stats.lambda_figures) + _fanout_label(stats.fanout)


def _fanout_label(receipt: FanoutReceipt | None) -> str:
    """A fanned-out query's receipt over all its invocations, or why it ran on one."""
    if receipt is None:
        return ""
    if receipt.not_split is not None:
        return f" · one invocation: {receipt.not_split}"
    label = (f" · fanned out: {receipt.tasks} tasks over {receipt.partitions} partitions, "
             f"slowest task {receipt.slowest_task_ms:,.0f} ms")
    if receipt.retries:
        label += f", {receipt.retries} retried"
    if receipt.billed_gb_s is not None:
        label += f" · billed {receipt.billed_gb_s:,.3f} GB-s in all"
    if receipt.cost_usd is not None:
        label += f" · about ${receipt.cost_usd:.7f}"
    return label


def _lambda_label(figures: LambdaFigures | None) -> str:
    """The Lambda's own figures: what the call was billed, and what that costs."""
    if figures is None or figures.billed_ms is None:
        return ""
    label = f" · billed {figures.billed_ms:,} ms at {figures.memory_mb or '?':,} MB"
    if figures.cost_usd is not None:
        label += f" · about ${figures.cost_usd:.7f}"
    return label


class Table(NamedTuple):
    html: str
    widths: list[int]  # pixels: the row numbers' column, then each column's


def html_table(frame: pd.DataFrame, columns: tuple[Column, ...], first_row_number: int = 1) -> Table:
    """An HTML table with each column's DuckDB type under its name, NULLs marked, and its columns' widths.

    The columns are as wide as `widths` says (the widest of a column's name with a sort arrow, its type
    and the page's values, at most MAX_COLUMN_CHARS characters), so a row of header buttons laid out
    with the same widths sits right above them; inside the widget (the `lm-widget` class) the buttons
    show the names, and the table only the types. Each value is turned into text once, for both.
    """
    rows = [[None if _is_null(value) else str(value) for value in row]
            for row in frame.itertuples(index=False, name=None)]
    last_number = first_row_number + len(rows) - 1
    chars = [len(f"{max(1, last_number):,}")]
    for index, column in enumerate(columns):
        longest = max((len(row[index]) for row in rows if row[index] is not None), default=0)
        chars.append(min(MAX_COLUMN_CHARS, max(len(column.name) + 2, len(column.type), longest)))
    widths = [math.ceil(count * CHAR_PX) + CELL_PX for count in chars]
    head = "".join(
        f"<th><span class='lm-name'>{html.escape(c.name)}<br></span><span class='lm-type'>{html.escape(c.type)}</span></th>"
        for c in columns
    )
    body = []
    for number, row in enumerate(rows, start=first_row_number):
        cells = "".join("<td class='lm-null'>NULL</td>" if text is None else f"<td>{html.escape(text)}</td>"
                        for text in row)
        body.append(f"<tr><td class='lm-rownum'>{number:,}</td>{cells}</tr>")
    cols = "".join(f"<col style='width:{width}px'>" for width in widths)
    return Table(f"{_STYLE}<table class='lakemagic-table' style='width:{sum(widths)}px'><colgroup>{cols}</colgroup>"
                 f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>", widths)


def _is_null(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts and arrays are values, not NULL
        return False


def view_label(sort, where: str | None, rows: int, all_rows: int) -> str:
    """The active sort and filter, as the footer and the static form say them."""
    parts = []
    if sort:
        parts.append("sorted by " + ", ".join(f"{key.column} {'descending' if key.descending else 'ascending'}"
                                              for key in sort))
    if where is not None:
        parts.append(f"filter {where} ({rows:,} of {all_rows:,} rows)")
    return html.escape(" · ".join(parts)) + " · " if parts else ""


def profile_html(profile: Profile) -> str:
    """A column's profile: its figures, and its histogram or top values as inline bars."""
    figures = [("rows", f"{profile.rows:,}"), ("nulls", f"{profile.nulls:,}"), ("distinct", f"≈{profile.distinct:,}")]
    figures += [(name, _rounded(value)) for name, value in (("min", profile.min), ("max", profile.max),
                                                             ("mean", profile.mean)) if value is not None]
    head = " · ".join(f"{name} <b>{html.escape(value)}</b>" for name, value in figures)
    most = max((bar.count for bar in profile.bars), default=0) or 1
    rows = "".join(
        f"<tr><td>{html.escape(_short(bar.label))}</td><td style='text-align:right'>{bar.count:,}</td>"
        f"<td><span class='lm-bar' style='width:{max(1, round(200 * bar.count / most)) if bar.count else 0}px'></span></td></tr>"
        for bar in profile.bars
    )
    kind = "histogram" if profile.bars_kind == "histogram" else "top values"
    return (f"{_STYLE}<div class='lakemagic-profile'><b>{html.escape(profile.column)}</b> "
            f"<span class='lm-type'>{html.escape(profile.type)}</span> · {head}"
            f"<div>{kind}</div><table>{rows}</table></div>")


def _rounded(text: str) -> str:
    """A long decimal number (a mean) to 6 significant digits; any other text as it is."""
    try:
        number = float(text)
    except ValueError:
        return text
    return text if len(text) <= 10 else f"{number:,.6g}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def static_html(first_page_table: str, row_count: int, total_rows: int, stats: CallStats, view: str = "",
                reuse_note: str = "") -> str:
    """The result as an executed notebook keeps it: the first page's table and a summary (`view`: its sort
    and filter, as view_label says them)."""
    summary = f"showing {rows_label(0, row_count, total_rows)} · {stats_label(stats, total_rows, reuse_note)}"
    return f"{first_page_table}<div class='lakemagic-summary'>{view}{html.escape(summary)}</div>"


def static_text(frame: pd.DataFrame, columns: tuple[Column, ...], total_rows: int, stats: CallStats,
                reuse_note: str = "") -> str:
    schema = ", ".join(f"{c.name} {c.type}" for c in columns)
    # Its own fixed-width text: pandas' to_string costs more than the rest of the table's display.
    lines = [[c.name for c in columns]] + [["NULL" if _is_null(value) else str(value) for value in row]
                                           for row in frame.head(10).itertuples(index=False, name=None)]
    widths = [max(len(line[index]) for line in lines) for index in range(len(columns))]
    preview = "\n".join(" ".join(text.rjust(width) for text, width in zip(line, widths)) for line in lines)
    return (
        f"lakesql result: {total_rows:,} rows × {len(columns)} columns ({schema})\n"
        f"{preview}\n"
        f"showing {rows_label(0, min(len(frame), 10), total_rows)} · {stats_label(stats, total_rows, reuse_note)}"
    )


def note_html(text: str) -> str:
    return f"<div class='lakemagic-summary'>{html.escape(text)}</div>"


def error_html(error_text: str) -> str:
    return (
        "<pre style='color:#b00020; background:#fff5f5; padding:6px; margin:0; white-space:pre-wrap'>"
        f"{html.escape(error_text)}</pre>"
    )
