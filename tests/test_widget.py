"""The result widget's buttons, page sizes, memory bound, inline errors and static form."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import duckdb
import ipywidgets
import pytest
from ipywidgets.widgets.widget import _instances

from lakelambda import protocol
from lakemagic import client
from lakemagic.display import conditions, frontend, grid, pager, widget
from lakemagic.engines.embedded import EmbeddedEngine

SQL = "SELECT range AS n, 'row ' || range AS label FROM range(1234) ORDER BY n DESC"


class CountingEngine(EmbeddedEngine):
    def __init__(self, lake: str):
        super().__init__(lake)
        self.calls = 0

    def call(self, request: dict):
        self.calls += 1
        return super().call(request)

    def query_here(self, request, take=None):
        self.calls += 1
        return super().query_here(request, take)


@pytest.fixture(params=["inline", "stored"])
def table(request, tmp_path, monkeypatch):
    """The same table over a result small enough to come whole (paged in the kernel) and over a stored one."""
    if request.param == "stored":
        monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    engine = CountingEngine(str(tmp_path))
    result = client.run_query(engine, SQL, page_size=50)
    assert result.inline == (request.param == "inline")
    table = widget.ResultTable(result, page_size=50)
    table.ran_on = engine  # the engine the query ran on; an inline result's pages are the kernel engine's
    return table


@pytest.fixture
def stored_table(table):
    if table.result.inline:
        pytest.skip("an inline result has no stored file and makes no further calls")
    return table


def shown_rows(page_html: str) -> list[list[str]]:
    """Each row's cells as the table's HTML shows them (the row number first), as the eye reads them."""
    body = page_html.split("<tbody>", 1)[1]
    return [[html.unescape(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body)]


def from_the_pager(table, content) -> None:
    """A message as the pager's front end sends it, through the widget's comm handler."""
    table.pager._handle_custom_msg(content, [])


def press(table, to: str) -> None:
    """A click on First, Previous, Next or Last."""
    from_the_pager(table, {"kind": "page", "to": to})


def open_tools(table) -> None:
    """A click on the pager's `Filter, profile, go to, export`."""
    from_the_pager(table, {"kind": "tools"})


def shown_numbers(table) -> list[int]:
    """The values of column n as the table's HTML shows them."""
    return [int(row[1].replace(",", "")) for row in shown_rows(table.grid.rows)]


def expected_numbers(offset: int, limit: int) -> list[int]:
    return [row[0] for row in duckdb.sql(SQL).fetchall()[offset : offset + limit]]


def test_first_page_and_disabled_buttons_at_the_start(table):
    assert shown_numbers(table) == expected_numbers(0, 50)
    assert "page 1 of 25 · rows 1–50 of 1,234" == table.pager.position
    assert table.pager.at_start and not table.pager.at_end  # First and Previous disabled, Next and Last not


@pytest.mark.parametrize(("sql", "position", "summary"), [
    ("SELECT 1 AS n WHERE false", "page 1 of 1 · no rows", "0 rows"),
    ("SELECT 1 AS n", "page 1 of 1 · row 1 of 1", "1 row"),
])
def test_an_empty_and_a_one_row_result_say_so(tmp_path, sql, position, summary):
    result = client.run_query(EmbeddedEngine(str(tmp_path)), sql, page_size=50)
    table = widget.ResultTable(result, page_size=50)
    assert table.pager.position == position and table.pager.at_start and table.pager.at_end
    assert f"showing {position.split(' · ')[1]} · {summary} · " in table._static_bundle()["text/html"]


def test_next_previous_last_first(table):
    press(table, "next")
    assert shown_numbers(table) == expected_numbers(50, 50)
    assert "rows 51–100 of 1,234" in table.pager.position
    press(table, "last")
    assert shown_numbers(table) == expected_numbers(1200, 50)
    assert "page 25 of 25 · rows 1,201–1,234 of 1,234" == table.pager.position
    assert table.pager.at_end and not table.pager.at_start
    press(table, "previous")
    assert shown_numbers(table) == expected_numbers(1150, 50)
    press(table, "first")
    assert shown_numbers(table) == expected_numbers(0, 50)


def test_changing_the_page_size_repages_from_the_current_position(table):
    press(table, "next")
    press(table, "next")  # rows 101-150
    from_the_pager(table, {"kind": "size", "rows": 250})
    assert shown_numbers(table) == expected_numbers(0, 250)
    assert "page 1 of 5" in table.pager.position
    press(table, "next")
    assert shown_numbers(table) == expected_numbers(250, 250)


@pytest.mark.parametrize("content", [
    {"kind": "size", "rows": 7}, {"kind": "size", "rows": "250"}, {"kind": "size", "rows": True},
    {"kind": "size", "rows": 10**9}, {"kind": "tools", "open": False}, {"kind": "page", "to": "p 3"},
    {"kind": "sort", "column": 0}, {"kind": "page"}, ["tools"], None])
def test_a_message_the_pager_never_sends_changes_nothing(table, content):
    press(table, "next")
    before = (table.grid.rows, table.pager.position, table.page_size, table.children)
    from_the_pager(table, content)
    assert (table.grid.rows, table.pager.position, table.page_size, table.children) == before
    assert table.tools is None


def test_only_a_bounded_number_of_pages_stay_in_the_kernel(table):
    for _ in range(20):
        press(table, "next")
    assert len(table._pages) <= widget.CACHED_PAGES
    assert shown_numbers(table) == expected_numbers(1000, 50)


def test_a_fetch_error_shows_inline_and_keeps_the_table(stored_table):
    table = stored_table
    os.remove(table.result.engine.lake + f"/_lakemagic/results/{table.result.result_id}.parquet")
    before = table.grid.rows
    press(table, "next")
    assert "ResultNotFound" in table.message.value
    assert table.grid.rows == before
    assert "rows 1–50" in table.pager.position


def test_footer_shows_rows_engine_time_round_trip_and_warmth(stored_table):
    table = stored_table
    footer = table.footer.value
    query = stats_figures(table.result.stats)
    assert "1,234 rows" in footer and query in footer
    assert "first query in this kernel" in footer  # the embedded engine's first call: no container to start
    assert "cold start" not in footer
    press(table, "next")
    assert table.result.last_call is not table.result.stats  # a page call, on this machine: not the query's figures
    assert query in table.footer.value and "these rows" not in table.footer.value and "warm" not in table.footer.value


def stats_figures(stats) -> str:
    return f"query: engine {stats.engine.engine_ms:,.0f} ms · round trip {stats.round_trip_ms:,.0f} ms"


def test_the_footer_keeps_the_query_s_figures_after_calls_on_this_machine(table):
    """The query's time stays in the footer; a page, a download or a filter served in this kernel adds none
    (it would say `engine 0 ms`, read as the query's)."""
    query = stats_figures(table.result.stats)
    table.result.to_dataframe()  # a download call, as the dashboard makes before showing its table
    press(table, "next")
    table.apply_filter("n > 5")
    assert query in table.footer.value and "these rows" not in table.footer.value
    assert query in table._repr_mimebundle_()["text/plain"]


def test_an_inline_result_pages_without_calling_the_engine_it_ran_on(table):
    if not table.result.inline:
        pytest.skip("a stored result fetches its pages")
    for _ in range(5):
        press(table, "next")
    press(table, "last")
    assert shown_numbers(table) == expected_numbers(1200, 50)
    assert table.ran_on.calls == 1


def test_static_form_for_front_ends_without_widgets(table):
    bundle = table._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "showing rows 1–50 of 1,234" in bundle["text/html"]
    assert shown_rows(bundle["text/html"])[0] == ["1", "1,233", "row 1233"]
    assert bundle["text/plain"].startswith("lakesql result: 1,234 rows × 2 columns (n BIGINT, label VARCHAR)")


def test_each_column_is_summarized_under_its_header_after_the_first_page(table):
    assert table.grid.glances == ""  # the first page is shown first (no kernel here: nothing is scheduled)
    calls = table.ran_on.calls
    table.show_summaries()
    glances = table.grid.glances
    assert glances.count("class='lm-bin'") == 7 and "title='1,200 – 1,400: 34 (2.8%)\nclick to filter" in glances
    values = [html.unescape(text) for text in re.findall(r"<span class='lm-value'[^>]*>([^<]*)</span>", glances)]
    assert values[:3] == ["row 0 <0.1%", "row 1 <0.1%", "row 10 <0.1%"]  # 1 in 1,234 each
    assert table.ran_on.calls == calls + (0 if table.result.inline else 1)  # one call for every column
    assert glances.count("class='lm-bin'") == table._repr_mimebundle_()["text/html"].count("class='lm-bin'")
    sort_click(table, "n")  # sorted: the same rows, the same summaries (on the sorted page's column widths)
    assert table.grid.glances.split("'>", 1)[1] == glances.split("'>", 1)[1]
    table.apply_filter("n < 10")  # they are not of a filter's rows
    assert table.grid.glances == "" and "class='lm-bin'" not in table._repr_mimebundle_()["text/html"]


# --- sort, filter, profile, go to, export -------------------------------------------------------------


def sort_click(table, name: str) -> None:
    """A click on a column's name, as the grid's front end sends it."""
    from_the_front_end(table, {"kind": "sort", "column": [c.name for c in table.base.columns].index(name)})


def shown_name(table, name: str) -> str:
    """A column's name as its button in the grid reads (with the sort's arrow)."""
    names = [html.unescape(text) for text in re.findall(r"<button[^>]*>([^<]*)</button>", table.grid.names)]
    return next(text for text in names if text.split(" ")[0] == name)


def shown_labels(table) -> list[str]:
    return [row[2] for row in shown_rows(table.grid.rows)]


def test_a_header_click_sorts_the_whole_result_then_descending_then_off(table):
    sort_click(table, "label")
    ordered = [row[0] for row in duckdb.sql(f"SELECT label FROM ({SQL}) ORDER BY label").fetchall()]
    assert shown_labels(table) == ordered[:50]
    assert shown_name(table, "label") == "label ▲" and "sorted by label ascending" in table.footer.value
    press(table, "last")
    assert shown_labels(table) == ordered[1200:]
    sort_click(table, "label")
    assert shown_labels(table) == ordered[::-1][:50]
    sort_click(table, "label")
    assert shown_numbers(table) == expected_numbers(0, 50) and shown_name(table, "label") == "label"
    assert "sorted" not in table.footer.value


def test_a_filter_shows_its_rows_and_their_count_and_keeps_the_sort(table):
    open_tools(table)
    sort_click(table, "n")
    table.filter_text.value = "n % 100 = 7"
    assert shown_numbers(table) == [n for n in range(1234) if n % 100 == 7]
    assert "rows 1–13 of 13" in table.pager.position
    assert "filter n % 100 = 7 (13 of 1,234 rows) · query: engine" in table.footer.value  # the count said once
    assert "sorted by n ascending" in table.footer.value
    bundle = table._repr_mimebundle_()
    assert "filter n % 100 = 7 (13 of 1,234 rows)" in bundle["text/html"] and shown_rows(bundle["text/html"])[-1][1] == "1,207"


@pytest.mark.parametrize("where, error", [("n >", "ParserException"), ("getenv('HOME') = ''", "PermissionException"),
                                          ("n IN (SELECT 1)", "PermissionException"), ("nope = 1", "ColumnNotFound")])
def test_a_bad_filter_shows_the_error_inline_and_changes_nothing(table, where, error):
    open_tools(table)
    press(table, "next")
    before = (table.grid.rows, table.pager.position, table.footer.value)
    table.filter_text.value = where
    assert error in table.message.value
    assert (table.grid.rows, table.pager.position, table.footer.value) == before


def test_a_profile_shows_the_columns_figures_and_bars(table):
    open_tools(table)
    table.profile_choice.value = "n"
    assert "min <b>0</b>" in table.profile.value and "max <b>1,233</b>" in table.profile.value  # grouped, as the cells are
    assert table.profile.value.count("class='lm-bar'") == 7  # 0 – 200, …, 1,200 – 1,400
    assert ">1,200 – 1,400</td><td class='lm-num' style='text-align:right'>34<" in table.profile.value
    table.profile_choice.value = "profile…"
    assert table.profile.value == ""


@pytest.mark.parametrize("text, first", [("1,000", 951), ("p 3", 101), ("99999", 1201)])
def test_go_to_a_row_shows_its_page_or_a_page_by_number(table, text, first):
    open_tools(table)
    table.go_text.value = text
    assert table.pager.position.split("rows ")[1].startswith(f"{first:,}–")


def test_the_export_button_writes_what_the_table_shows(table, tmp_path):
    open_tools(table)
    table.filter_text.value = "n < 10"
    tmp_path = tmp_path / "exported"
    tmp_path.mkdir()
    table.export_path.value = str(tmp_path / "shown.csv")
    next(child for child in table.tools.children if getattr(child, "description", "") == "Export").click()
    assert "exported 10 rows" in table.message.value
    assert sorted(duckdb.sql(f"SELECT n FROM '{tmp_path / 'shown.csv'}'").fetchall()) == [(i,) for i in range(10)]
    assert [p.name for p in tmp_path.iterdir()] == ["shown.csv"]


def test_the_filter_profile_go_to_and_export_controls_are_built_on_first_use(table):
    assert table.tools is None and table.tools not in table.children
    open_tools(table)
    assert table.children[1] is table.tools and table.pager.tools_shown
    sort_click(table, "n")
    open_tools(table)  # built once: the filter box keeps what it has
    assert table.tools is table.children[1] and table.filter_text.value == ""


def models_made(make) -> tuple[object, list[ipywidgets.Widget]]:
    """The widget models `make()` created: each is built, serialized and sent to the front end."""
    before = set(_instances)
    made = make()
    return made, [model for key, model in _instances.items() if key not in before]


def test_a_small_result_s_table_makes_few_widget_models(tmp_path):
    result = client.run_query(EmbeddedEngine(str(tmp_path)), "SELECT range AS n, 'row ' || range AS label FROM range(4)",
                              page_size=50)
    widget.ResultTable(result, page_size=50).show_tools()  # the kernel's first makes the layouts and styles all share
    table, made = models_made(lambda: widget.ResultTable(result, page_size=50))
    # The table; the pager (page turns, page size, position, tools button); the grid (names, types, summaries and
    # rows: one model, whatever the columns); the footer.
    assert len(made) == 4
    assert [type(model).__name__ for model in made].count("Layout") == 0  # every layout is the kernel's shared one
    # A one-page result shows its whole pager as every result does, the page turns disabled.
    assert table.pager.position == "page 1 of 1 · rows 1–4 of 4"
    assert table.pager.at_start and table.pager.at_end
    assert table.tools is None  # the filter, go to, profile and export come when first opened
    _, tools = models_made(table.show_tools)
    # 3 boxes, the profile choice, 4 buttons, their row and its layout, the profile
    assert len(tools) == 11 and table.children[1] is table.tools


def test_a_table_s_models_open_with_its_first_page_and_no_update_follows(tmp_path, monkeypatch):
    updates = []
    monkeypatch.setattr(ipywidgets.Widget, "send_state", lambda model, key=None: updates.append(model))
    table = widget.ResultTable(client.run_query(EmbeddedEngine(str(tmp_path)), SQL, page_size=50), page_size=50)
    assert not {id(model) for model in updates} & {id(table.grid), id(table.pager), id(table.footer)}
    # What each sent as it opened: the first page, where it is, and the footer's figures.
    assert shown_rows(table.grid.get_state()["rows"])[0][1] == "1,233"
    assert table.pager.get_state()["position"] == "page 1 of 25 · rows 1–50 of 1,234"
    assert "1,234 rows" in table.footer.get_state()["value"]


def test_the_grid_and_pager_carry_their_scripts_as_anywidget_s_front_end_loads_them(tmp_path):
    result = client.run_query(EmbeddedEngine(str(tmp_path)), "SELECT 1 AS n", page_size=50)
    table = widget.ResultTable(result, page_size=50)
    for model, script in ((table.grid, "grid.js"), (table.pager, "pager.js")):
        state = model.get_state()
        assert state["_esm"] == (Path(widget.__file__).parent / script).read_text(encoding="utf-8")
        assert state["_anywidget_id"] == f"lakemagic.display.{script[:-3]}.{type(model).__name__}"
        assert (state["_model_module"], state["_model_name"], state["_view_name"]) == ("anywidget", "AnyModel", "AnyView")
    # Each model is of its declared class: none was made a class of its own to hold its script.
    assert (type(table.grid), type(table.pager)) == (grid.Grid, pager.Pager)


def test_a_headless_table_closes_its_parts_and_the_next_table_makes_them_again(tmp_path):
    result = client.run_query(EmbeddedEngine(str(tmp_path)), "SELECT 1 AS n", page_size=50)
    closed = widget.ResultTable(result, page_size=50)
    frontend.close_tree(closed)  # what a headless run does once its static form is out
    assert closed.grid.layout.comm is None
    table = widget.ResultTable(result, page_size=50)
    shared = (table.grid.layout, table.footer.layout, table.footer.style, table.pager.layout)
    assert all(part.comm is not None for part in shared)
    assert table._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"] == table.model_id


# --- every value as DuckDB writes it; messages next to their controls ------------------------------------

TYPES_SQL = """SELECT 0.41::FLOAT AS f, 1234567.25::DOUBLE AS d, DATE '2019-04-01' AS day, INTERVAL 14 MONTH AS span,
  [1, 2] AS list, {'a': 1} AS struct, MAP {'k': 1} AS map, '\\x00ab'::BLOB AS bytes,
  TIMESTAMPTZ '2020-01-01 12:00:00+02' AS at, 100000000000000000000::HUGEINT AS huge,
  0.000012345::DECIMAL(10,9) AS exact, NULL::INTEGER AS nothing
  UNION ALL SELECT 15.5, -3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 7, 1.5, 1"""


@pytest.mark.parametrize("where", ["inline", "stored"])
def test_values_are_shown_as_duckdb_writes_them(where, tmp_path, monkeypatch):
    if where == "stored":
        monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    table = widget.ResultTable(client.run_query(EmbeddedEngine(str(tmp_path)), TYPES_SQL, page_size=50), page_size=50)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    relation = con.sql(TYPES_SQL)
    written = con.sql("SELECT " + ", ".join(f"CAST(\"{name}\" AS VARCHAR)" for name in relation.columns)
                      + " FROM relation").fetchall()
    shown = shown_rows(table.grid.rows)
    for shown_row, written_row in zip(shown, written):
        for name, text, want in zip(relation.columns, shown_row[1:], written_row):
            assert (text.replace(",", "") if name in ("f", "d", "huge", "exact", "nothing") else text) == \
                ("NULL" if want is None else want), name
    assert shown[0][1:3] == ["0.41", "1,234,567.25"] and shown[0][10] == "100,000,000,000,000,000,000"
    # a column's decimal points line up: padded on the right to the longest decimals of the page
    texts = re.findall(r"<td class='lm-num'[^>]*>([^<]*)</td>", table.grid.rows)
    assert texts[:2] == ["0.41", "1,234,567.25"] and texts[4:6] == ["15.5\u2007", "-3.0\u2007"]  # a figure space
    plain = table._repr_mimebundle_()["text/plain"].splitlines()
    assert plain[1].split()[:2] == ["f", "d"] and plain[2].split()[:3] == ["0.41", "1,234,567.25", "2019-04-01"]


def test_a_filter_error_shows_right_under_the_tools_with_the_columns_it_may_mean(table):
    open_tools(table)
    table.filter_text.value = "lable = 'row 1'"
    assert "did you mean label?" in table.message.value
    assert table.children.index(table.message) == table.children.index(table.tools) + 1


def test_the_tools_row_can_be_put_away_and_brought_back(table):
    open_tools(table)
    table.filter_text.value = "n < 10"
    next(child for child in table.tools.children if getattr(child, "description", "") == "Hide").click()
    assert table.tools.layout.display == "none" and not table.pager.tools_shown
    assert "filter n &lt; 10" in table.footer.value  # put away, the filter goes on
    open_tools(table)
    assert table.tools.layout.display is None and table.filter_text.value == "n < 10"


# --- the grid: a click sorts or filters to a bar, keys turn pages ---------------------------------------------

STRIP_SQL = """SELECT range AS n, CASE WHEN range % 7 = 0 THEN NULL ELSE 'it''s ' || (range % 3) END AS word,
  TIMESTAMPTZ '2019-04-01 00:00:00+00' + range * INTERVAL 37 MINUTE AS at, DATE '2019-04-01' + (range % 40)::INTEGER AS day,
  (range / 7.0)::FLOAT AS f FROM range(1234)"""


def from_the_front_end(table, content) -> None:
    """A message as the grid's front end sends it, through the widget's comm handler."""
    table.grid._handle_custom_msg(content, [])


@pytest.fixture
def summarized(tmp_path):
    table = widget.ResultTable(client.run_query(EmbeddedEngine(str(tmp_path)), STRIP_SQL, page_size=50), page_size=50)
    table.show_summaries()
    return table


def duckdb_count(condition: str) -> int:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(f"SELECT count(*) FROM ({STRIP_SQL}) WHERE {condition}").fetchone()[0]


@pytest.mark.parametrize("name", ["n", "word", "at", "day", "f"])
def test_a_click_on_a_bar_filters_to_its_rows(summarized, name):
    index = [column.name for column in summarized.base.columns].index(name)
    summary = summarized.summaries.columns[index]
    for bar, shown in enumerate(summary.bars):
        summarized.apply_filter("")  # the whole result's summaries again
        from_the_front_end(summarized, {"kind": "bar", "column": index, "bar": bar})
        condition = summarized.filter_text.value
        assert summarized.where == condition and condition.startswith(f'"{name}" ')
        assert summarized.result.total_rows == duckdb_count(condition), condition
        if name != "f":  # a FLOAT's edges are compared as FLOATs there, as DOUBLEs in the histogram
            assert summarized.result.total_rows == shown.count, (condition, shown)
        assert f"filter {html.escape(condition)} ({summarized.result.total_rows:,} of 1,234 rows)" in summarized.footer.value
    assert summarized.grid.glances == ""  # filtered: the whole result's summaries are not of these rows


def test_a_filtered_result_shows_its_own_summaries_and_a_click_on_them_narrows_it(summarized):
    from_the_front_end(summarized, {"kind": "nulls", "column": 1})  # word IS NULL: 177 rows
    assert summarized.grid.glances == ""  # until this view's summaries come, after its first page
    summarized.show_summaries()
    glances = summarized._glances_shown()
    assert glances.result.total_rows == 177 and glances.columns[1].nulls == 177
    assert "data-nulls" in summarized.grid.glances and "null 100%" in summarized.grid.glances
    day = [column.name for column in summarized.base.columns].index("day")
    from_the_front_end(summarized, {"kind": "bar", "column": day, "bar": 0})
    condition = summarized.filter_text.value
    assert condition.startswith('"word" IS NULL AND "day" ')
    assert summarized.result.total_rows == duckdb_count(condition) == glances.columns[day].bars[0].count
    summarized.apply_filter("")
    assert summarized._glances_shown() is summarized.summaries  # the whole result's, kept


def test_a_click_on_a_null_share_filters_to_the_nulls(summarized):
    from_the_front_end(summarized, {"kind": "nulls", "column": 1})
    assert summarized.filter_text.value == '"word" IS NULL'
    assert summarized.result.total_rows == duckdb_count("word IS NULL") == summarized.summaries.columns[1].nulls == 177


@pytest.mark.parametrize("content", [
    {"kind": "bar", "column": 0, "bar": 99}, {"kind": "bar", "column": 5, "bar": 0},
    {"kind": "bar", "column": True, "bar": 0}, {"kind": "bar", "column": "0", "bar": 0},
    {"kind": "bar", "column": 0, "bar": 0, "where": "1 = 1"}, {"kind": "filter", "where": "n = 1"},
    {"kind": "nulls", "column": -1}, {"kind": "page", "to": "somewhere"}, ["page", "next"], "next",
    {"kind": "sort", "column": 7}, {"kind": "sort", "column": "n"}, {"kind": "sort", "column": 0, "descending": True}])
def test_a_message_the_grid_never_sends_changes_nothing(summarized, content):
    before = (summarized.grid.rows, summarized.footer.value, summarized.where)
    from_the_front_end(summarized, content)
    assert (summarized.grid.rows, summarized.footer.value, summarized.where) == before
    assert summarized.tools is None  # not even opened


def test_a_forged_bin_label_is_refused_not_spliced(summarized):
    forged = protocol.Summary("n", 0, "histogram", (protocol.Bar("0 – 1) OR (1 = 1", 5), protocol.Bar("1 – 2", 1)))
    with pytest.raises(conditions.NoCondition):
        conditions.bar(summarized.base.columns[0], forged, 0)
    quoted = conditions.bar(summarized.base.columns[1], protocol.Summary("word", 0, "top", (protocol.Bar("x' OR '1'='1", 1),)), 0)
    assert quoted == """"word" = 'x'' OR ''1''=''1'"""
    assert duckdb_count(quoted) == 0


def test_paging_keys_turn_the_page(summarized):
    for to, position in [("next", "page 2 of 25"), ("last", "page 25 of 25"), ("previous", "page 24 of 25"),
                         ("first", "page 1 of 25")]:
        from_the_front_end(summarized, {"kind": "page", "to": to})
        assert summarized.pager.position.startswith(position)


class FarEngine(EmbeddedEngine):
    """The embedded handler as an engine elsewhere (as the Lambda is): its pages are calls worth timing."""

    shares_files = False


def test_the_footer_times_the_rows_a_remote_engine_sent_after_the_query(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    table = widget.ResultTable(client.run_query(FarEngine(str(tmp_path)), SQL, page_size=50), page_size=50)
    query = stats_figures(table.result.stats)
    assert "these rows" not in table.footer.value  # the first page came with the query
    press(table, "next")
    page_call = table.result.last_call
    assert page_call is not table.result.stats
    assert f"{query}" in table.footer.value
    assert f"these rows: round trip {page_call.round_trip_ms:,.0f} ms" in table.footer.value
    press(table, "first")  # the first page again: the query's rows
    assert "these rows" not in table.footer.value
    table.apply_filter("n > 5")  # a filter's first page came with its derive call
    assert f"these rows: round trip {table.result.stats.round_trip_ms:,.0f} ms" in table.footer.value


def test_a_number_s_top_values_read_as_its_cells_do(tmp_path):
    result = client.run_query(EmbeddedEngine(str(tmp_path)), "SELECT 1234567.25::DOUBLE AS d, 'x' AS t", page_size=50)
    table = widget.ResultTable(result, page_size=50)
    table.show_summaries()
    assert "1,234,567.25 100%" in table.grid.glances and ">x 100%<" in table.grid.glances
    assert "1,234,567.25 100%" in table._repr_mimebundle_()["text/html"]  # the static table's summaries
    table.show_tools()
    table.profile_choice.value = "d"
    assert "1,234,567.25" in table.profile.value and "1234567.25" not in table.profile.value
