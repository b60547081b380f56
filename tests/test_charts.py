"""Charts aggregate in the engine and draw with matplotlib.

Every chart runs on real DuckDB through the embedded engine over a lake
built by `build_lake`. Expected values come from the raw data read with
DuckDB directly and aggregated with numpy or pandas, never from the engine.
"""

from __future__ import annotations

import io
import json
import math
import os

import duckdb
import numpy as np
import pandas as pd
import pytest

from lakemagic import charts, client
from lakemagic.engines import Engine, Reply
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError
from lakemagic.taxi import build_lake

ROWS = 20_000
MILLION = 1_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class CountingEngine(Engine):
    """The embedded engine, counting the bytes of every answer as they cross the wire."""

    name = "counting"
    concurrency = 1
    shares_files = True

    def __init__(self, inner: EmbeddedEngine):
        self.inner = inner
        self.answer_bytes = 0
        self.calls = 0

    def call(self, request: dict) -> Reply:
        reply = self.inner.call(request)
        self.answer_bytes += len(json.dumps(reply.answer))
        self.calls += 1
        return reply


def values_around_edges(lo: float, hi: float, bins: int) -> list[float]:
    """lo, hi, and each inner bin edge as the engine computes it, with its neighbours one ulp away.

    For many of these, floor((x - lo) / width) lands one bin off the edges.
    """
    values = [lo, hi]
    for i in range(1, bins):
        edge = lo + i * (hi - lo) / bins
        values += [math.nextafter(edge, -math.inf), edge, math.nextafter(edge, math.inf)]
    return values


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> str:
    """The taxi lake plus small hand-made tables and a 1M-row one, all written by DuckDB."""
    folder = str(tmp_path_factory.mktemp("charts_lake"))
    build_lake(folder, rows=ROWS)
    dataset = os.path.join(folder, "dataset")
    with duckdb.connect() as con:
        # Values on bin edges (k/10 for 30 bins over 0..30), and NULL, NaN and infinities to leave out.
        con.execute(
            "COPY (SELECT range / 10 AS v FROM range(0, 301) "
            "UNION ALL SELECT * FROM (VALUES (NULL::DOUBLE), ('nan'::DOUBLE), ('inf'::DOUBLE), ('-inf'::DOUBLE))) "
            f"TO '{dataset}/steps.parquet' (FORMAT parquet)"
        )
        # A table name that is not a bare identifier, with a column named by a keyword.
        con.execute(
            "COPY (SELECT range % 3 AS \"order\", range AS amount FROM range(10)) "
            f"TO '{dataset}/odd-name.parquet' (FORMAT parquet)"
        )
        con.register("edges", pd.DataFrame({"v": values_around_edges(0.0, 79.99, 30)}))
        con.execute(f"COPY (SELECT v FROM edges) TO '{dataset}/edges.parquet' (FORMAT parquet)")
        con.execute(
            f"COPY (SELECT (hash(range) % 100000) / 100.0 AS v FROM range({MILLION})) "
            f"TO '{dataset}/million.parquet' (FORMAT parquet)"
        )
    return folder


@pytest.fixture(scope="module")
def engine(lake) -> EmbeddedEngine:
    return EmbeddedEngine(lake)


@pytest.fixture(scope="module")
def run(engine) -> charts.Run:
    return lambda sql: client.run_query(engine, sql).to_dataframe()


@pytest.fixture(scope="module")
def trips(lake) -> pd.DataFrame:
    """The raw taxi rows, read with DuckDB directly."""
    return duckdb.sql(f"SELECT * FROM read_parquet('{lake}/dataset/taxi_2019_04.parquet')").df()


def raw(lake: str, name: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{lake}/dataset/{name}.parquet')").df()


def edges_of(chart: charts.Chart) -> np.ndarray:
    return np.append(chart.data["left_edge"].to_numpy(), chart.data["right_edge"].iloc[-1])


def assert_histogram(chart: charts.Chart, values: pd.Series, bins: int) -> None:
    """Counts equal numpy's with the chart's edges, and the edges are numpy's own."""
    finite = values.dropna().to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    assert list(chart.data.columns) == ["bin", "left_edge", "right_edge", "count"]
    assert list(chart.data["bin"]) == list(range(bins))
    assert chart.data["count"].sum() == len(finite)
    edges = edges_of(chart)
    np.testing.assert_allclose(edges, np.histogram_bin_edges(finite, bins=bins), rtol=1e-12)
    expected, _ = np.histogram(finite, bins=edges)
    assert chart.data["count"].tolist() == expected.tolist()
    axes = chart.figure.axes[0]
    assert len(axes.patches) == bins


@pytest.mark.parametrize(("column", "bins"), [("trip_distance", 30), ("fare_amount", 7), ("passenger_count", 5), ("tip_amount", 1)])
def test_histogram_counts_equal_numpy_on_the_same_edges(run, trips, column, bins):
    chart = charts.histogram(run, "taxi_2019_04", column, bins=bins)
    assert_histogram(chart, trips[column], bins)
    assert chart.data["count"].sum() == ROWS


def test_histogram_puts_values_on_edges_where_numpy_does_and_leaves_out_null_nan_and_inf(run, lake):
    values = raw(lake, "steps")["v"]
    for bins in (30, 7, 3):
        chart = charts.histogram(run, "steps", "v", bins=bins)
        assert_histogram(chart, values, bins)
        # numpy's own edges, too: the max (30.0) is in the last bin
        expected, _ = np.histogram(values[np.isfinite(values)], bins=bins)
        assert chart.data["count"].tolist() == expected.tolist()
        assert chart.data["right_edge"].iloc[-1] == 30.0


def test_histogram_bins_a_value_on_an_edge_by_the_edges_it_reports(run, lake):
    chart = charts.histogram(run, "edges", "v", bins=30)
    values = raw(lake, "edges")["v"].to_numpy()
    expected, _ = np.histogram(values, bins=edges_of(chart))
    assert chart.data["count"].tolist() == expected.tolist()
    assert chart.data["count"].tolist() == [2] + [3] * 29


def test_histogram_of_a_query_with_nulls_and_a_where(run, trips):
    source = "(SELECT CASE WHEN pickup_location_id % 7 = 0 THEN NULL ELSE fare_amount END AS fare, vendor_id FROM taxi_2019_04)"
    chart = charts.histogram(run, source, "fare", bins=20, where="vendor_id = '1' OR vendor_id = '3'")
    kept = trips[trips["vendor_id"] == "1"]
    fare = kept["fare_amount"].where(kept["pickup_location_id"] % 7 != 0)
    assert fare.isna().any()
    assert chart.data["count"].sum() == fare.notna().sum()
    assert_histogram(chart, fare, 20)


def test_histogram_of_equal_values_spans_the_value_plus_minus_a_half(run, trips):
    chart = charts.histogram(run, "taxi_2019_04", "mta_tax", bins=30)
    assert_histogram(chart, trips["mta_tax"], 30)
    assert (chart.data["left_edge"].iloc[0], chart.data["right_edge"].iloc[-1]) == (0.0, 1.0)
    assert chart.data["count"].max() == ROWS


def test_histogram_of_no_rows_is_an_empty_chart(run):
    chart = charts.histogram(run, "taxi_2019_04", "trip_distance", where="trip_distance < 0")
    assert chart.data.empty
    assert chart._repr_png_().startswith(PNG_MAGIC)
    assert "0 rows" in repr(chart)


def test_bar_top_counts_equal_a_pandas_groupby(run, trips):
    chart = charts.bar(run, "taxi_2019_04", "pickup_location_id", top=20)
    expected = (
        trips.groupby("pickup_location_id").size().reset_index(name="count")
        .sort_values(["count", "pickup_location_id"], ascending=[False, True]).head(20)
    )
    assert chart.data["pickup_location_id"].tolist() == expected["pickup_location_id"].tolist()
    assert chart.data["count"].tolist() == expected["count"].tolist()
    assert len(chart.figure.axes[0].patches) == 20
    assert [t.get_text() for t in chart.figure.axes[0].get_xticklabels()] == [str(v) for v in expected["pickup_location_id"]]


@pytest.mark.parametrize("agg", ["sum", "avg", "min", "max"])
def test_bar_aggregates_equal_a_pandas_groupby(run, trips, agg):
    chart = charts.bar(run, "taxi_2019_04", "payment_type", "fare_amount", agg=agg, top=3, where="vendor_id = '2'")
    kept = trips[trips["vendor_id"] == "2"]
    expected = (  # largest first, ties broken by the category, as the chart promises
        kept.assign(fare=kept["fare_amount"].astype(float))
        .groupby("payment_type")["fare"].agg("mean" if agg == "avg" else agg)
        .reset_index().sort_values(["fare", "payment_type"], ascending=[False, True])
        .set_index("payment_type")["fare"].head(3)
    )
    assert chart.data["payment_type"].tolist() == expected.index.tolist()
    assert chart.data[f"{agg}(fare_amount)"].tolist() == pytest.approx(expected.tolist(), rel=1e-9)
    groups = kept["payment_type"].nunique()
    assert groups > 3 and chart.title == f"{agg}(fare_amount) by payment_type, top 3 of {groups} where vendor_id = '2'"
    assert len(chart.figure.axes[0].patches) == len(expected)


def test_line_over_partitioned_has_one_point_per_day_in_order(run, trips):
    chart = charts.line(run, "partitioned", "date")
    expected = trips.groupby(trips["pickup_at"].dt.normalize()).size()
    assert len(chart.data) == 30 == len(expected)
    assert chart.data["date"].is_monotonic_increasing and chart.data["date"].is_unique
    assert chart.data["date"].tolist() == expected.index.tolist()
    assert chart.data["count"].tolist() == expected.tolist()
    (plotted,) = chart.figure.axes[0].lines
    assert len(plotted.get_xdata()) == 30
    assert chart.figure.axes[0].get_xlabel() == "date" and chart.figure.axes[0].get_ylabel() == "count"
    # the month under the axis is the data's own, not the next one's first day in a margin
    chart.figure.savefig(io.BytesIO(), format="png")
    assert chart.figure.axes[0].xaxis.get_major_formatter().get_offset() == "2019-Apr"


def test_line_of_an_expression_with_an_aggregate(run, trips):
    chart = charts.line(run, "taxi_2019_04", "hour(pickup_at)", "tip_amount", agg="avg")
    expected = trips["tip_amount"].astype(float).groupby(trips["pickup_at"].dt.hour).mean()
    assert chart.data.iloc[:, 0].tolist() == list(range(24)) == expected.index.tolist()
    assert chart.data["avg(tip_amount)"].tolist() == pytest.approx(expected.tolist(), rel=1e-9)
    assert len(chart.figure.axes[0].lines[0].get_xdata()) == 24


def test_names_are_quoted(run, lake):
    table = raw(lake, "odd-name")
    chart = charts.bar(run, "odd-name", "order", "amount", agg="sum")
    expected = table.groupby("order")["amount"].sum().sort_values(ascending=False)
    assert chart.data["order"].tolist() == expected.index.tolist()
    assert chart.data["sum(amount)"].tolist() == expected.tolist()
    assert '"odd-name"' in chart.sql and '"order"' in chart.sql


def test_every_chart_displays_as_a_png(run):
    shown = [
        charts.histogram(run, "taxi_2019_04", "trip_distance"),
        charts.bar(run, "taxi_2019_04", "vendor_id"),
        charts.line(run, "partitioned", "date", "fare_amount", agg="sum"),
        charts.plot_frame(pd.DataFrame({"a": [1, 2, 2]}), "hist", "a"),
    ]
    for chart in shown:
        assert chart._repr_png_().startswith(PNG_MAGIC)
        bundle = chart._repr_mimebundle_()
        assert bundle["image/png"].startswith(PNG_MAGIC)
        assert bundle["text/plain"] == repr(chart)
        assert chart.title in bundle["text/plain"] and f"{len(chart.data)} rows" in bundle["text/plain"]
        assert chart.figure.get_size_inches().tolist() == [8, 4]
    assert shown[0].sql.startswith("WITH") and shown[3].sql is None


def test_a_histogram_of_a_million_rows_moves_only_the_aggregate(engine):
    counting = CountingEngine(engine)
    chart = charts.histogram(lambda sql: client.run_query(counting, sql).to_dataframe(), "million", "v", bins=30)
    assert chart.data["count"].sum() == MILLION
    assert counting.calls == 1
    print(f"\n1M-row histogram: {counting.answer_bytes:,} bytes on the wire in {counting.calls} call")
    assert counting.answer_bytes < 20_000


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (lambda run: charts.bar(run, "taxi_2019_04", "payment_typ"), "no column payment_typ; did you mean payment_type?"),
        (lambda run: charts.histogram(run, "taxi_2019_04", "trip_distanc"), "no column trip_distanc; did you mean trip_distance?"),
        (lambda run: charts.bar(run, "taxi_2019_04", "vendor_id", "tolls_amont", agg="sum"),
         "no column tolls_amont; did you mean tolls_amount or "),
        (lambda run: charts.line(run, "taxi_2019_04", "date_trunc('day', pickup_att)"),
         "no column pickup_att; did you mean pickup_at"),
        (lambda run: charts.bar(run, "taxi_2019_04", "vendor_id", where="passenger_cont > 1"),
         "no column passenger_cont; did you mean passenger_count?"),
        (lambda run: charts.bar(run, "odd-name", "amont"), "no column amont; did you mean amount?"),
        (lambda run: charts.histogram(run, "steps", "zzz"), "no column zzz; the columns are v"),
    ],
)
def test_a_misspelt_column_is_named_with_the_closest_of_the_source(run, draw, message):
    with pytest.raises(LakeQueryError) as raised:
        draw(run)
    assert str(raised.value).startswith(f"BinderException: {message}")  # the closest first
    assert "alias" not in str(raised.value) and "LINE" not in str(raised.value)  # nothing about the generated SQL


def test_other_sql_errors_come_from_the_engine_as_they_are(run):
    with pytest.raises(LakeQueryError) as raised:  # the source itself does not bind: DuckDB's words, pointing into it
        charts.bar(run, "(SELECT fare_amont FROM taxi_2019_04)", "fare_amont")
    assert raised.value.error_type == "BinderException" and 'Referenced column "fare_amont" not found' in raised.value.message
    with pytest.raises(LakeQueryError) as raised:
        charts.bar(run, "no_such_table", "x")
    assert "no table no_such_table in the lake" in raised.value.message


def test_a_title_says_what_is_drawn(run, trips):
    payments = trips["payment_type"].nunique()
    assert payments < 20
    every = charts.bar(run, "taxi_2019_04", "payment_type")
    assert len(every.data) == payments and every.title == "count by payment_type"  # no "top 20" over them
    assert every.figure.axes[0].get_title() == every.title
    zones = trips["pickup_location_id"].nunique()
    assert charts.bar(run, "taxi_2019_04", "pickup_location_id", top=5).title == f"count by pickup_location_id, top 5 of {zones}"
    filtered = charts.line(run, "partitioned", "date", where="passenger_count > 2")
    assert filtered.title == "count by date where passenger_count > 2"
    assert charts.histogram(run, "taxi_2019_04", "fare_amount", where="fare_amount < 80").title == \
        "histogram of fare_amount where fare_amount < 80"


@pytest.mark.parametrize(("agg", "y"), [("count", None), ("sum", "fare_amount")])
def test_count_and_sum_axes_start_at_zero(run, agg, y):
    for chart in (charts.line(run, "partitioned", "date", y, agg=agg), charts.bar(run, "taxi_2019_04", "vendor_id", y, agg=agg)):
        assert chart.data.iloc[:, 1].min() > 0
        assert chart.figure.axes[0].get_ylim()[0] == 0
    assert charts.histogram(run, "taxi_2019_04", "trip_distance").figure.axes[0].get_ylim()[0] == 0


def test_an_average_axis_is_left_to_the_data(run):
    chart = charts.line(run, "partitioned", "date", "fare_amount", agg="avg")
    assert chart.figure.axes[0].get_ylim()[0] > 0


def test_lakeplot_names_a_misspelt_column_in_one_line(ipython, lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {lake!r}")
    with pytest.raises(LakeQueryError) as raised:
        ipython.run_line_magic("lakeplot", "bar payment_typ --from taxi_2019_04")
    assert raised.value._render_traceback_() == ["BinderException: no column payment_typ; did you mean payment_type?"]
    chart = ipython.run_line_magic("lakeplot", "bar payment_type --from taxi_2019_04 --where \"vendor_id = '2'\"")
    assert chart.title == "count by payment_type where vendor_id = '2'"


def never(sql: str) -> pd.DataFrame:
    raise AssertionError(f"bad input reached the engine: {sql}")


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (lambda: charts.histogram(never, "t", "x", bins=0), "bins must be a positive integer, got 0"),
        (lambda: charts.histogram(never, "t", "x", bins=2.5), "bins must be a positive integer"),
        (lambda: charts.histogram(never, "t", ""), "column must be a column name"),
        (lambda: charts.histogram(never, "  ", "x"), "source must be a table name"),
        (lambda: charts.histogram(never, "t", "x", where=" "), "where must be an SQL condition"),
        (lambda: charts.bar(never, "t", "x", agg="median"), "agg must be one of count, sum, avg, min, max; got 'median'"),
        (lambda: charts.bar(never, "t", "x", agg="sum"), "agg='sum' needs a y column"),
        (lambda: charts.bar(never, "t", "x", top=0), "top must be a positive integer"),
        (lambda: charts.bar(never, "t", "", "y", agg="sum"), "x must be a column name"),
        (lambda: charts.line(never, "t", "x", "", agg="avg"), "y must be a column name"),
        (lambda: charts.line(never, "t", "x", agg="max"), "agg='max' needs a y column"),
    ],
)
def test_bad_inputs_are_named_before_any_sql_runs(draw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        draw()


def test_plot_frame_draws_a_dataframe():
    df = pd.DataFrame({"zone": ["a", "b", "b", "c", "c", "c", None], "fare": [1.0, 2.0, 2.5, 3.0, np.nan, 4.0, 5.0]})

    counts = charts.plot_frame(df, "bar", "zone")
    assert counts.data["count"].tolist() == [3, 2, 1, 1]
    assert [t.get_text() for t in counts.figure.axes[0].get_xticklabels()] == ["c", "b", "a", "NULL"]

    given = charts.plot_frame(df.dropna(), "bar", "zone", "fare", title="fares")
    assert given.title == "fares" and len(given.figure.axes[0].patches) == 5

    per_zone = charts.plot_frame(df, "line", "zone")
    assert per_zone.data["zone"].tolist() == ["a", "b", "c"]
    assert len(per_zone.figure.axes[0].lines[0].get_xdata()) == 3

    hist = charts.plot_frame(df, "hist", "fare", bins=4)
    assert hist.data["count"].tolist() == np.histogram([1.0, 2.0, 2.5, 3.0, 4.0, 5.0], bins=4)[0].tolist()
    assert len(hist.figure.axes[0].patches) == 4
    assert hist.sql is None


@pytest.mark.parametrize(
    ("kind", "x", "y", "message"),
    [
        ("pie", "zone", None, "kind must be one of bar, line, hist; got 'pie'"),
        ("bar", "nope", None, "x='nope' is not a column of the DataFrame"),
        ("line", "zone", "nope", "y='nope' is not a column of the DataFrame"),
        ("hist", "fare", "zone", "a histogram takes one column, x; y must be None"),
    ],
)
def test_plot_frame_bad_inputs(kind, x, y, message):
    df = pd.DataFrame({"zone": ["a"], "fare": [1.0]})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        charts.plot_frame(df, kind, x, y)
