"""Charts whose aggregation runs in the engine, drawn with matplotlib.

A chart over the lake is one SQL query that aggregates in DuckDB, wherever
the engine runs it (in this kernel or in Lambda), so only the aggregate
(a few dozen rows) crosses the wire, however many rows the table holds.
The result is drawn on a `matplotlib.figure.Figure` (no pyplot, so no global
state and no interactive backend) and a `Chart` displays as a PNG image,
which papermill and nbconvert keep in the executed notebook.

The module never talks to an engine: every chart takes a `Run`, a function
that runs SQL and returns its (small) result, for example::

    from lakemagic.client import run_query
    run = lambda sql: run_query(engine, sql).to_dataframe()
    histogram(run, "taxi_2019_04", "trip_distance").figure

Arguments, as the SQL sees them:

- `source` is a table name (quoted as one identifier, so `odd-name` works)
  or a parenthesised query, `(SELECT ...)`.
- A column (`column`, `x`, `y`) that is a bare name (letters, digits,
  underscores) is quoted, so names like `date` or `order` work; anything
  else is an SQL expression used as written, e.g. `date_trunc('day', pickup_at)`.
  A column whose name is not bare is written quoted: `'"fare amount"'`.
- `where` is an SQL condition on the source's rows, applied before aggregating.

SQL errors are the engine's, raised by `run`, but for a column the source
lacks: that one is named with the closest of the source's columns
(`no column payment_typ; did you mean payment_type?`), not by the binder's
words about the generated SQL. A title says what is drawn: the filter, and
"top N of M" only when bars were left out. Counts and sums are drawn on an
axis from zero.

matplotlib is an optional extra (`notebooks`), so it is imported only when
a chart is drawn.
"""

from __future__ import annotations

import io
import re
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import duckdb
import numpy as np
import pandas as pd

from lakelambda.catalog import closest_names
from lakelambda.sql import quote_identifier, tokens

from .errors import LakeQueryError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Run = Callable[[str], pd.DataFrame]
"""Runs one SQL query on the engine and returns its whole result."""

AGGREGATES = ("count", "sum", "avg", "min", "max")
KINDS = ("bar", "line", "hist")

_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# More category labels than this are turned so they do not overlap.
_UPRIGHT_LABELS = 8
# A title longer than this goes on to a second line rather than past the figure's edge.
_TITLE_WIDTH = 90
# The number of groups a bar chart's query counts beside its top ones (a window over the groups, before LIMIT).
_GROUPS = "_chart_groups"


@dataclass(repr=False)
class Chart:
    """A drawn chart with the aggregate behind it and the SQL that computed it.

    Jupyter (and papermill, nbconvert) show it as a PNG; `figure` can be
    changed before display, since the image is rendered each time.
    """

    figure: Figure
    data: pd.DataFrame
    sql: str | None  # None for a chart of a DataFrame (`plot_frame`)
    title: str

    def __repr__(self) -> str:
        rows = len(self.data)
        return f"<Chart: {self.title} ({rows:,} row{'' if rows == 1 else 's'})>"

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, object]:
        return {"image/png": self._repr_png_(), "text/plain": repr(self)}


def histogram(run: Run, source: str, column: str, bins: int = 30, where: str | None = None) -> Chart:
    """Counts of `column` in `bins` equal-width bins from its min to its max, binned by the engine.

    One query: a CTE finds the bounds, each value goes to bin
    `floor((x - min) / width)` (checked against the bin's edges, so a value
    on an edge is counted where numpy would count it with these edges), and
    the engine returns one row per bin (`bin`, `left_edge`, `right_edge`,
    `count`, empty bins included). The last bin includes the max. NULL, NaN
    and infinite values are left out. `column` must be numeric: for dates,
    bin an expression such as `epoch(pickup_at)`, or count per day with `line`.
    If all values are equal, the range is value ± 0.5 (as numpy does), so
    the chart still has a width. No values at all give no rows.
    """
    _check_positive("bins", bins)
    value = _column(column, "column")
    last = bins - 1

    def edge(bin_: str) -> str:
        return f"lo + {bin_} * (hi - lo) / {bins}"

    sql = f"""WITH _chart_values AS (
    SELECT CAST({value} AS DOUBLE) AS x FROM {_source(source)}{_where(where)}
),
_chart_bounds AS (
    SELECT min(x) - CASE WHEN min(x) = max(x) THEN 0.5 ELSE 0 END AS lo,
           max(x) + CASE WHEN min(x) = max(x) THEN 0.5 ELSE 0 END AS hi
    FROM _chart_values WHERE isfinite(x)
),
_chart_bins AS (
    SELECT bin, {edge("bin")} AS left_edge,
           CASE WHEN bin = {last} THEN hi ELSE {edge("(bin + 1)")} END AS right_edge
    FROM _chart_bounds, range({bins}) AS r(bin) WHERE lo IS NOT NULL
),
_chart_guesses AS (
    SELECT x, least(CAST(floor((x - lo) / ((hi - lo) / {bins})) AS BIGINT), {last}) AS guess
    FROM _chart_values, _chart_bounds WHERE isfinite(x)
),
_chart_counts AS (
    -- floor() may be one bin off for a value on an edge: the edges themselves decide
    SELECT CASE WHEN x < left_edge THEN guess - 1
                WHEN x >= right_edge AND guess < {last} THEN guess + 1
                ELSE guess END AS bin,
           count(*) AS "count"
    FROM _chart_guesses JOIN _chart_bins ON bin = guess
    GROUP BY 1
)
SELECT bin, left_edge, right_edge, coalesce("count", 0) AS "count"
FROM _chart_bins LEFT JOIN _chart_counts USING (bin)
ORDER BY bin"""
    data = _run(run, sql, source)
    return _histogram_chart(data, column, _title(f"histogram of {column}", where), sql)


def bar(
    run: Run,
    source: str,
    x: str,
    y: str | None = None,
    agg: str = "count",
    top: int = 20,
    where: str | None = None,
) -> Chart:
    """The `top` values of `x` by `agg` (of `y`, or of rows when `y` is None), largest first.

    Ties are broken by `x`, so the same data always gives the same bars.
    NULL is a category like any other. The title says "top N of M" only
    when there were more than `top` values.
    """
    _check_positive("top", top)
    sql, label = _grouped_sql(source, x, y, agg, where, order="2 DESC, 1", extra=None,
                              groups=f"count(*) OVER () AS {_GROUPS}")
    sql += f"\nLIMIT {top}"
    data = _run(run, sql, source)
    groups = int(data[_GROUPS].iloc[0]) if len(data) else 0
    shown = f"{label} by {x}" + (f", top {top} of {groups:,}" if groups > top else "")
    return _bar_chart(data.drop(columns=_GROUPS), x, label, _title(shown, where), sql, _counted(agg))


def line(run: Run, source: str, x: str, y: str | None = None, agg: str = "count", where: str | None = None) -> Chart:
    """`agg` (of `y`, or of rows when `y` is None) per value of `x`, in order of `x`.

    `x` is typically a DATE column or an expression such as
    `date_trunc('day', pickup_at)`. Rows where `x` is NULL have no place on
    the axis and are left out.
    """
    key = _column(x, "x")
    sql, label = _grouped_sql(source, x, y, agg, where, order="1", extra=f"{key} IS NOT NULL")
    return _line_chart(_run(run, sql, source), x, label, _title(f"{label} by {x}", where), sql, _counted(agg))


def plot_frame(
    df: pd.DataFrame, kind: str, x: str, y: str | None = None, bins: int = 30, title: str | None = None
) -> Chart:
    """A chart of a DataFrame already in the kernel, usually a query's (small) result.

    - "bar": `y` per `x` in the frame's order; without `y`, rows per `x`, most first.
    - "line": `y` per `x` sorted by `x`; without `y`, rows per `x`. NULL `x` is left out.
    - "hist": `x` in `bins` equal-width bins (numpy's), NULL and NaN left out; no `y`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    for what, name in [("x", x)] + ([("y", y)] if y is not None else []):
        if name not in df.columns:
            columns = ", ".join(map(str, df.columns))
            raise ValueError(f"{what}={name!r} is not a column of the DataFrame (its columns: {columns})")
    if kind == "hist":
        if y is not None:
            raise ValueError("a histogram takes one column, x; y must be None")
        _check_positive("bins", bins)
        values = pd.to_numeric(df[x]).to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        counts, edges = np.histogram(values, bins=bins) if len(values) else (np.array([], int), np.array([0.0]))
        data = pd.DataFrame(
            {"bin": range(len(counts)), "left_edge": edges[:-1], "right_edge": edges[1:], "count": counts}
        )
        return _histogram_chart(data, x, title or f"histogram of {x}", None)
    if y is None:
        counts = df.groupby(x, dropna=kind == "line", sort=kind == "line").size().reset_index(name="count")
        if kind == "bar":
            counts = counts.sort_values("count", ascending=False, kind="stable")
        data, label = counts, "count"
    else:
        data, label = df[[x, y]], str(y)
        if kind == "line":
            data = data.dropna(subset=[x]).sort_values(x, kind="stable")
    draw = _bar_chart if kind == "bar" else _line_chart
    return draw(data.reset_index(drop=True), str(x), label, title or f"{label} by {x}", None, y is None)


def _grouped_sql(
    source: str, x: str, y: str | None, agg: str, where: str | None, order: str, extra: str | None,
    groups: str | None = None,
) -> tuple[str, str]:
    """The GROUP BY query behind bar and line, and the label of its value column."""
    if agg not in AGGREGATES:
        raise ValueError(f"agg must be one of {', '.join(AGGREGATES)}; got {agg!r}")
    key = _column(x, "x")
    if y is None:
        if agg != "count":
            raise ValueError(f"agg={agg!r} needs a y column to aggregate")
        value, label = "count(*)", "count"
    else:
        value, label = f"{agg}({_column(y, 'y')})", f"{agg}({y})"
    sql = (
        f"SELECT {key} AS {quote_identifier(x)}, {value} AS {quote_identifier(label)}{', ' + groups if groups else ''}\n"
        f"FROM {_source(source)}{_where(where, extra)}\n"
        f"GROUP BY 1\nORDER BY {order}"
    )
    return sql, label


def _run(run: Run, sql: str, source: str) -> pd.DataFrame:
    """`run(sql)`; a binder error at a name the source has no column of says so, with the closest ones.

    DuckDB's own words would be about the generated SQL (for `x`, that an
    alias "cannot be used as part of an expression in the GROUP BY"). The
    source's columns are asked for only then, so a chart that works costs one query.
    """
    try:
        return run(sql)
    except LakeQueryError as error:
        if error.error_type != "BinderException" or error.position is None:
            raise
        name = _name_at(sql, error.position)
        if name is None:
            raise
        try:
            columns = [str(column) for column in run(f"SELECT * FROM {_source(source)} LIMIT 0").columns]
        except LakeQueryError:
            raise error from None  # the source itself does not bind: DuckDB's error says why
        if name.lower() in {column.lower() for column in columns}:
            raise
        close = closest_names(name, columns)
        hint = f"did you mean {' or '.join(close)}?" if close else f"the columns are {', '.join(columns)}"
        raise LakeQueryError(error.error_type, f"no column {name}; {hint}") from None


def _name_at(sql: str, position: int) -> str | None:
    """The identifier DuckDB's tokenizer finds starting at `position` (unquoted), or None."""
    found = tokens(sql)
    for token, following in zip(found, found[1:] + [None]):
        if token.start == position:
            if token.kind != duckdb.token_type.identifier:
                return None
            text = sql[token.start : following.start if following else len(sql)].rstrip()
            if len(text) > 1 and text.startswith('"') and text.endswith('"'):
                return text[1:-1].replace('""', '"')
            return text
    return None


def _title(drawn: str, where: str | None) -> str:
    return drawn if where is None else f"{drawn} where {where.strip()}"


def _counted(agg: str) -> bool:
    """Whether the values are counts or sums, which are read against zero."""
    return agg in ("count", "sum")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _source(source: str) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source must be a table name or a parenthesised query, got {source!r}")
    source = source.strip()
    if source.startswith("(") and source.endswith(")"):
        # Parenthesised once more, so `(SELECT ...) UNION (SELECT ...)` is one source too.
        return f"({source})"
    return quote_identifier(source)


def _column(text: str | None, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be a column name or SQL expression, got {text!r}")
    text = text.strip()
    return quote_identifier(text) if _BARE_NAME.fullmatch(text) else text


def _where(where: str | None, extra: str | None = None) -> str:
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise ValueError(f"where must be an SQL condition or None, got {where!r}")
    conditions = [] if where is None else [f"({where.strip()})"]  # so an OR in it cannot swallow `extra`
    if extra is not None:
        conditions.append(extra)
    return f"\nWHERE {' AND '.join(conditions)}" if conditions else ""


def _axes(title: str, xlabel: str, ylabel: str, empty: bool) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(8, 4), layout="tight")
    axes = figure.add_subplot()
    axes.set_title(textwrap.fill(title, _TITLE_WIDTH))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.12g}"))  # 1,234,567 and 0.3
    if empty:
        axes.text(0.5, 0.5, "no rows", transform=axes.transAxes, ha="center", va="center", color="grey")
    return figure, axes


def _from_zero(axes: Axes, values: np.ndarray) -> None:
    """An axis of counts or sums reaches zero, so bar heights and line levels compare as ratios."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0:
        axes.set_ylim(bottom=0)
    elif finite.size and finite.max() <= 0:
        axes.set_ylim(top=0)


def _histogram_chart(data: pd.DataFrame, column: str, title: str, sql: str | None) -> Chart:
    figure, axes = _axes(title, column, "count", data.empty)
    left, right = data["left_edge"].to_numpy(float), data["right_edge"].to_numpy(float)
    counts = data["count"].to_numpy(float)
    axes.bar(left, counts, width=right - left, align="edge", edgecolor="white", linewidth=0.5)
    _from_zero(axes, counts)
    return Chart(figure, data, sql, title)


def _bar_chart(data: pd.DataFrame, x: str, label: str, title: str, sql: str | None, counted: bool) -> Chart:
    figure, axes = _axes(title, x, label, data.empty)
    positions = np.arange(len(data))
    values = pd.to_numeric(data.iloc[:, 1]).to_numpy(float)
    axes.bar(positions, values)
    names = ["NULL" if pd.isna(value) else str(value) for value in data.iloc[:, 0]]
    turned = len(names) > _UPRIGHT_LABELS
    axes.set_xticks(positions, names, rotation=45 if turned else 0, ha="right" if turned else "center")
    if counted:
        _from_zero(axes, values)
    return Chart(figure, data, sql, title)


def _line_chart(data: pd.DataFrame, x: str, label: str, title: str, sql: str | None, counted: bool) -> Chart:
    figure, axes = _axes(title, x, label, data.empty)
    values = pd.to_numeric(data.iloc[:, 1]).to_numpy(float)
    axes.plot(data.iloc[:, 0], values, marker="o", markersize=3)
    if counted:
        _from_zero(axes, values)
    if pd.api.types.is_datetime64_any_dtype(data.iloc[:, 0]):
        from matplotlib.dates import ConciseDateFormatter

        # Month and year once, days below: dates stay readable without turning them. No margin past the data,
        # or a tick on the next month's first day names that month under a chart of this one.
        axes.margins(x=0)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(axes.xaxis.get_major_locator()))
    return Chart(figure, data, sql, title)
