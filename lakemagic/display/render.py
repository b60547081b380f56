"""Static renderings of results and errors: HTML for notebooks, text for terminals.

The widget uses the same HTML for its table, and these forms are what an
executed notebook shows where no widget front end runs (papermill,
nbconvert, GitHub).
"""

from __future__ import annotations

import html
import math
from typing import NamedTuple

from lakelambda.protocol import Column, Profile, SortKey, SummariesAnswer, Summary

from ..client import CallStats, FanoutReceipt
from ..decode import TextRow
from ..engines import LambdaFigures
from . import cells

# Colours are the front end's own (JupyterLab's CSS variables, light or dark), with fallbacks for pages without them.
# `table.lakemagic-table` outranks JupyterLab's rules for static HTML (`.jp-RenderedHTMLCommon table`, 13 px and
# 0.5em padding), which would otherwise write a static table's values (a listing, a papermill copy) wider than the
# columns made for them, and cut them.
_STYLE = """<style>
table.lakemagic-table {border-collapse: separate; border-spacing: 0; table-layout: fixed; font-size: 12px;
  font-variant-numeric: tabular-nums; font-family: var(--jp-code-font-family, monospace);
  color: var(--jp-content-font-color1, inherit);}
table.lakemagic-table th, table.lakemagic-table td {padding: 2px 8px; border-bottom: 1px solid var(--jp-border-color2, #ddd);
  text-align: left; white-space: pre; line-height: 1.4; overflow: hidden; text-overflow: ellipsis; box-sizing: border-box;}
table.lakemagic-table th {vertical-align: bottom; position: sticky; top: 0; background: var(--jp-layout-color1, #fff);}
table.lakemagic-table .lm-num {text-align: right;}
.lm-type {font-weight: normal; color: var(--jp-ui-font-color2, #777); font-size: 10px;}
table.lakemagic-table .lm-null {color: var(--jp-ui-font-color3, #999); font-style: italic;}
table.lakemagic-table .lm-rownum {color: var(--jp-ui-font-color2, #777); text-align: right;}
.lakemagic-table td[title] {cursor: help;}
.lakemagic-summary {font-size: 12px; color: var(--jp-ui-font-color2, #555); margin: 4px 0;}
.lakemagic-profile {font-size: 12px; font-family: var(--jp-code-font-family, monospace); margin: 4px 0;
  color: var(--jp-content-font-color1, inherit);}
.lakemagic-profile .lm-bar {background: var(--jp-brand-color1, #4c8bf5); height: 10px; display: inline-block;}
.lakemagic-profile table {border-collapse: collapse;}
.lakemagic-profile table td {padding: 0 6px; line-height: 1.3; white-space: pre; border: none; text-align: left;}
.lakemagic-profile table td.lm-num {text-align: right;}
.lm-scroll .lm-rownum, .lm-scroll .lm-corner {position: sticky; left: 0; z-index: 1; background: var(--jp-layout-color1, #fff);}
.lm-scroll .lm-head {position: sticky; top: 0; z-index: 2; background: var(--jp-layout-color1, #fff);}
.lm-scroll {display: flex; flex-direction: column; align-items: flex-start;}
.lm-scroll > div {flex: 0 0 auto;}
.lm-names {display: grid;}
.lm-names button {width: 100%; height: 28px; line-height: 28px; margin: 0; padding: 0 8px; border: none;
  border-bottom: 1px solid var(--jp-border-color1, #bbb); border-radius: 0; box-shadow: none; box-sizing: border-box;
  background: var(--jp-layout-color1, #fff); color: var(--jp-content-font-color1, #000); cursor: pointer;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; font-weight: 600; text-align: left;
  overflow: hidden; white-space: nowrap; text-overflow: ellipsis;}
.lm-names button:hover {background: var(--jp-layout-color2, #eee);}
.lm-names button.lm-num {text-align: right;}
.lm-names button:not(.lm-sorted)::after {content: " ⇅"; opacity: 0.35;}
.lm-types {display: grid; line-height: 18px;}
.lm-types > div {padding: 0 8px; overflow: hidden; text-overflow: ellipsis; white-space: pre; box-sizing: border-box;
  border-bottom: 1px solid var(--jp-border-color2, #ddd);}
.lm-types .lm-num {text-align: right;}
.lm-glance {font-size: 10px; color: var(--jp-ui-font-color2, #777); overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; line-height: 14px;}
.lm-strip {display: flex; align-items: flex-end; gap: 1px; height: 16px;}
.lm-strip .lm-bin {flex: 1 1 0; background: var(--jp-brand-color1, #4c8bf5); min-width: 2px;}
.lm-glance [data-column], .lm-strip [data-column] {cursor: pointer;}
.lm-strip .lm-bin[data-column]:hover {background: var(--jp-brand-color0, #1a5fd0) !important;}
.lm-glance .lm-value[data-column]:hover, .lm-glance .lm-nulls[data-column]:hover {text-decoration: underline;
  color: var(--jp-content-font-color1, #000);}
.lm-scroll:focus-visible {outline: 1px solid var(--jp-brand-color1, #4c8bf5);}
</style>"""
# Pixels per character of the table's 12 px monospace font, and each cell's padding and border.
CHAR_PX = 7.5
CELL_PX = 18
MAX_COLUMN_CHARS = 40
SORT_ARROWS = {False: "▲", True: "▼"}  # an unsorted name shows a faint ⇅ (the stylesheet)


def rows_label(offset: int, row_count: int, total_rows: int) -> str:
    if total_rows == 0:
        return "no rows"
    if row_count == 0:
        return f"no rows of {total_rows:,}"
    if total_rows == 1:
        return "row 1 of 1"
    return f"rows {offset + 1:,}–{offset + row_count:,} of {total_rows:,}"


def stats_label(stats: CallStats, total_rows: int | None, reuse_note: str = "", rows_call: CallStats | None = None) -> str:
    """The footer's figures: those of the query that made the result (`stats`), and where the rows on show
    came by a later call to a remote engine (a page or a sort and filter: `rows_call`), that call's.
    A later call's figures on this machine (the kernel engine holding an inline result, the embedded
    engine) are left out: a millisecond of local work is no news, and read as the query's it would be false.
    `reuse_note` says when the engine answered from an earlier run's result; `total_rows` None leaves the
    count to a filter's label, which says it with the whole result's."""
    engine = stats.engine
    parts = ([] if total_rows is None else [count(total_rows, "row")]) + ([reuse_note] if reuse_note else [])
    parts += [f"query: engine {engine.engine_ms:,.0f} ms", f"round trip {stats.round_trip_ms:,.0f} ms"]
    warmth = _warmth(stats)
    parts += ([warmth] if warmth else []) + [f"DuckDB {engine.duckdb_version or '?'}"]
    label = " · ".join(parts) + _lambda_label(stats.lambda_figures) + _fanout_label(stats.fanout)
    if rows_call is not None:
        warmth = _warmth(rows_call)
        label += (f" · these rows: round trip {rows_call.round_trip_ms:,.0f} ms" + (f", {warmth}" if warmth else "")
                  + _lambda_label(rows_call.lambda_figures))
    return label


def count(number: int, noun: str) -> str:
    """`1 row`, `2,097,270 rows`."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _warmth(stats: CallStats) -> str:
    """Whether the call paid for a start: a Lambda container's (cold start or warm, as the platform reported
    the call), or the embedded engine's own in this kernel (said once, when it happened)."""
    if stats.lambda_figures is not None:
        return "cold start" if stats.engine.cold else "warm"
    return "first query in this kernel" if stats.engine.cold else ""


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
    widths: list[int]  # pixels: the row numbers' column, then each column's
    head: str  # the names and types, as <thead>
    body: str  # the rows, as <tbody>

    def html(self, head: bool = True) -> str:
        """The table; without its names and types (`head` False) inside the widget, whose header row is its own."""
        cols = "".join(f"<col style='width:{width}px'>" for width in self.widths)
        return (f"{_STYLE}<table class='lakemagic-table' style='width:{sum(self.widths)}px'><colgroup>{cols}</colgroup>"
                f"{self.head if head else ''}{self.body}</table>")


def html_table(rows: tuple[TextRow, ...], columns: tuple[Column, ...], first_row_number: int = 1,
               types: bool = True, widest: int = MAX_COLUMN_CHARS, summaries: SummariesAnswer | None = None) -> Table:
    """An HTML table of rows as DuckDB writes them (numbers right-aligned on their decimal points, text
    left-aligned, NULL marked), and its columns' widths.

    A column is as wide as its name with a sort glyph, its type and the page's values, at most `widest`
    characters; a longer value shows whole on hover. Inside the widget the names and types
    are its own header row, laid out with the same widths (`types` False: names only, as a listing needs),
    and `summaries` a row under them of each column at a glance (glance_html).
    Alignment is written on each
    cell as well, for static output shown without the stylesheet (untrusted notebooks, GitHub).
    """
    shown = cells.shown_columns(rows, columns, cells.FIGURE_SPACE)
    numbers = [cells.is_number(column.type) for column in columns]
    last_number = first_row_number + len(rows) - 1
    chars = [len(f"{max(1, last_number):,}")]
    for column, texts in zip(columns, shown):
        longest = max((len(text) for text in texts if text is not None), default=4)
        chars.append(min(widest, max(len(column.name) + 2, len(column.type) if types else 0, longest)))
    widths = [math.ceil(count * CHAR_PX) + CELL_PX for count in chars]
    cell_lists = [[_cell(text, number, widest) for text in texts] for texts, number in zip(shown, numbers)]
    body = "".join(f"<tr><td class='lm-rownum'>{number:,}</td>{''.join(row)}</tr>"
                   for number, row in enumerate(zip(*cell_lists), start=first_row_number))
    if not rows:  # said in the grid, where the eye looks for rows (an empty listing, a filter that keeps none)
        body = (f"<tr><td class='lm-rownum'></td><td class='lm-null' colspan='{len(columns)}' "
                f"style='color:#999;font-style:italic;text-align:left'>no rows</td></tr>")
    names = "".join(f"<th{_align(number)}>{html.escape(c.name)}{_type_line(c) if types else ''}</th>"
                    for c, number in zip(columns, numbers))
    glances = "" if summaries is None else (
        "<tr><th class='lm-corner'></th>"
        + "".join(f"<th>{glance_html(s, summaries.rows, number=number)}</th>"
                  for s, number in zip(summaries.columns, numbers)) + "</tr>")
    return Table(widths, f"<thead><tr><th class='lm-corner'></th>{names}</tr>{glances}</thead>",
                 f"<tbody>{body}</tbody>")


def _type_line(column: Column) -> str:
    return f"<br><span class='lm-type'>{html.escape(column.type)}</span>"


def _align(number: bool) -> str:
    return " class='lm-num' style='text-align:right;font-variant-numeric:tabular-nums'" if number else " style='text-align:left'"


def _cell(text: str | None, number: bool, widest: int) -> str:
    if text is None:
        return "<td class='lm-null' style='color:#999;font-style:italic'>NULL</td>"
    whole = f" title='{html.escape(text.strip())}'" if len(text) > widest else ""
    return f"<td{_align(number)}{whole}>{html.escape(text)}</td>"


def name_row(columns: tuple[Column, ...], widths: list[int], sort: tuple[SortKey, ...]) -> str:
    """The widget's row of column names on the table's grid, each a button that sorts by it (marked with its
    column for the grid's front end), an arrow on the sorted one."""
    template = " ".join(f"{width}px" for width in widths)
    keys = {key.column: key for key in sort}
    names = []
    for index, column in enumerate(columns):
        key = keys.get(column.name)
        classes = ("lm-num" if cells.is_number(column.type) else "lm-text") + (" lm-sorted" if key else "")
        arrow = f" {SORT_ARROWS[key.descending]}" if key else ""
        names.append(f"<button class='{classes}' data-column='{index}' data-sort='' "
                     f"title='{html.escape(f'{column.name} {column.type}: click to sort')}'>"
                     f"{html.escape(column.name + arrow)}</button>")
    return (f"<div class='lm-names' style='grid-template-columns:{template};width:{sum(widths)}px'>"
            f"<div class='lm-corner'></div>{''.join(names)}</div>")


def type_row(columns: tuple[Column, ...], widths: list[int]) -> str:
    """The widget's row of column types, on the table's grid: right over numbers, left over text."""
    template = " ".join(f"{width}px" for width in widths)
    types = "".join(f"<div class='lm-type{' lm-num' if cells.is_number(c.type) else ''}' title='{html.escape(c.type)}'>"
                    f"{html.escape(c.type)}</div>" for c in columns)
    return f"<div class='lm-types' style='grid-template-columns:{template}'><div class='lm-corner'></div>{types}</div>"


# How tall a summary's tallest bar is, in pixels.
STRIP_PX = 16


def glance_html(summary: Summary, rows: int, column: int | None = None, number: bool = False) -> str:
    """One column at a glance, under its header: a strip of its histogram's bars, or its top values with their
    shares (a `number` column's grouped by thousands, as its cells are); and its nulls' share. Sizes and colours
    are inline too, for static output without the stylesheet.

    In the widget (`column`: the column's position) each bar and the null share carry their position, which
    the summary strip sends back when clicked to filter to them."""
    def mark(bar: int | None = None) -> str:
        if column is None:
            return ""
        return f" data-column='{column}' " + ("data-nulls=''" if bar is None else f"data-bar='{bar}'")

    def title(text: str) -> str:
        return html.escape(text + ("\nclick to filter to these rows" if column is not None else ""))

    nulls = (f"<span class='lm-nulls'{mark()} title='{title(f'{summary.nulls:,} NULL')}'>"
             f"{html.escape(f'null {_share(summary.nulls, rows)}')}</span> ") if summary.nulls else ""
    if summary.bars_kind == "histogram":
        most = max((bar.count for bar in summary.bars), default=0) or 1
        bins = "".join(
            f"<span class='lm-bin'{mark(index)} title='{title(f'{bar.label}: {bar.count:,} ({_share(bar.count, rows)})')}' "
            f"style='display:inline-block;width:6px;background:#4c8bf5;"
            f"height:{max(1, round(STRIP_PX * bar.count / most)) if bar.count else 0}px'></span>"
            for index, bar in enumerate(summary.bars))
        strip = f"<div class='lm-strip' style='height:{STRIP_PX}px'>{bins}</div>"
        return f"<div class='lm-glance'>{strip}{nulls}</div>" if nulls else strip
    labels = [cells.grouped_number(bar.label) if number else bar.label for bar in summary.bars]
    values = " · ".join(
        f"<span class='lm-value'{mark(index)} title='{title(f'{label}: {bar.count:,} ({_share(bar.count, rows)})')}'>"
        f"{html.escape(f'{_short(label, 20)} {_share(bar.count, rows)}')}</span>"
        for index, (bar, label) in enumerate(zip(summary.bars, labels)))
    return f"<div class='lm-glance'>{nulls}{values or 'no values'}</div>"


def glance_row(summaries: SummariesAnswer, widths: list[int]) -> str:
    """The widget's row of column summaries, on the table's grid under the types, each bar marked to be clicked."""
    template = " ".join(f"{width}px" for width in widths)
    numbers = [cells.is_number(column.type) for column in summaries.result.columns]
    glances = "".join(f"<div>{glance_html(s, summaries.rows, index, number)}</div>"
                      for index, (s, number) in enumerate(zip(summaries.columns, numbers)))
    return (f"<div class='lm-types' style='grid-template-columns:{template}'>"
            f"<div class='lm-corner'></div>{glances}</div>")


def glance_note(summaries: SummariesAnswer | None) -> str:
    """For a footer: where the columns' summaries come from when not from every row."""
    if summaries is None or not summaries.sampled:
        return ""
    return f"column summaries from a sample of {summaries.rows:,} of the {summaries.result.total_rows:,} rows"


def _share(part: int, whole: int) -> str:
    """`25%`, `0.4%`, `<0.1%`: a share as the eye reads it."""
    if whole == 0 or part == 0:
        return "0%"
    percent = 100 * part / whole
    if percent < 0.1:
        return "<0.1%"
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.1f}%"


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
    # Counted exactly up to the engine's limit; above it an estimate (HyperLogLog), which can miss either way
    # (by 15% for a hundred values, seen here): said as one, and never more than the values there are.
    if profile.distinct_exact:
        distinct = ("distinct", f"{profile.distinct:,}")
    else:
        distinct = ("distinct (estimate)", f"about {min(profile.distinct, profile.rows - profile.nulls):,}")
    figures = [("rows", f"{profile.rows:,}"), ("nulls", f"{profile.nulls:,}"), distinct]
    figures += [(name, _rounded(value)) for name, value in (("min", profile.min), ("max", profile.max),
                                                             ("mean", profile.mean)) if value is not None]
    head = " · ".join(f"{name} <b>{html.escape(value)}</b>" for name, value in figures)
    most = max((bar.count for bar in profile.bars), default=0) or 1
    number = profile.bars_kind == "top" and cells.is_number(profile.type)  # top values: grouped as the cells are
    labels = [cells.grouped_number(bar.label) if number else bar.label for bar in profile.bars]
    rows = "".join(
        f"<tr><td title='{html.escape(label)}'>{html.escape(_short(label))}</td>"
        f"<td class='lm-num' style='text-align:right'>{bar.count:,}</td>"
        f"<td><span class='lm-bar' style='width:{max(1, round(200 * bar.count / most)) if bar.count else 0}px'></span></td></tr>"
        for bar, label in zip(profile.bars, labels)
    )
    kind = "histogram" if profile.bars_kind == "histogram" else "top values"
    return (f"{_STYLE}<div class='lakemagic-profile'><b>{html.escape(profile.column)}</b> "
            f"<span class='lm-type'>{html.escape(profile.type)}</span> · {head}"
            f"<div>{kind}</div><table>{rows}</table></div>")


def _rounded(text: str) -> str:
    """A long decimal number (a mean) to 6 significant digits, a short one grouped by thousands as the cells are;
    any other text as it is."""
    try:
        number = float(text)
    except ValueError:
        return text
    return cells.grouped_number(text) if len(text) <= 10 else f"{number:,.6g}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def static_html(first_page_table: str, row_count: int, total_rows: int, stats: CallStats, view: str = "",
                reuse_note: str = "") -> str:
    """The result as an executed notebook keeps it: the first page's table (scrolling under its names where
    a stylesheet applies) and a summary (`view`: its sort and filter, as view_label says them)."""
    figures = stats_label(stats, None if view else total_rows, reuse_note)
    summary = f"showing {rows_label(0, row_count, total_rows)} · {figures}"
    return (f"<div class='lm-static' style='overflow:auto; max-height:560px'>{first_page_table}</div>"
            f"<div class='lakemagic-summary'>{view}{html.escape(summary)}</div>")


def static_text(rows: tuple[TextRow, ...], columns: tuple[Column, ...], total_rows: int, stats: CallStats,
                reuse_note: str = "") -> str:
    """The result as a terminal or a text-only front end shows it: its first ten rows as DuckDB writes them."""
    schema = ", ".join(f"{c.name} {c.type}" for c in columns)
    return (
        f"lakesql result: {count(total_rows, 'row')} × {count(len(columns), 'column')} ({schema})\n"
        f"{text_grid(rows[:10], columns)}\n"
        f"showing {rows_label(0, min(len(rows), 10), total_rows)} · {stats_label(stats, total_rows, reuse_note)}"
    )


def text_grid(rows: tuple[TextRow, ...], columns: tuple[Column, ...], widest: int = MAX_COLUMN_CHARS) -> str:
    """Rows under their columns' names in fixed-width text, numbers right-aligned, text left-aligned."""
    shown = cells.shown_columns(rows, columns)
    lines = [[c.name for c in columns]] + [[_short("NULL" if text is None else text, widest) for text in row]
                                           for row in zip(*shown)]
    widths = [max(len(line[index]) for line in lines) for index in range(len(columns))]
    numbers = [cells.is_number(c.type) for c in columns]
    return "\n".join(" ".join(text.rjust(width) if number else text.ljust(width)
                              for text, width, number in zip(line, widths, numbers)).rstrip() for line in lines)


def note_html(text: str) -> str:
    return f"<div class='lakemagic-summary'>{html.escape(text)}</div>"


def error_html(error_text: str) -> str:
    return (
        "<pre class='lm-error' style='color:var(--jp-error-color1, #b00020); padding:4px 6px; margin:0; "
        "white-space:pre-wrap; background:var(--jp-layout-color2, #fff5f5); "
        f"border-left:3px solid var(--jp-error-color1, #b00020)'>{html.escape(error_text)}</pre>"
    )
