"""What a person sees in a real front end: JupyterLab 4 and Jupyter Notebook 7 in headless Debian chromium.

A notebook runs `%%lakesql` against a taxi lake; the test reads the table
off the page, clicks the widget's buttons and page-size choice like a
person would, and checks every page against the same query run directly in
DuckDB. It also checks the short SQL error and what a papermill-executed
copy shows when it is opened. Screenshots go to ci-artifacts/screenshots/.

Skipped only when chromium is missing or cannot start (and not under CI=true,
where that is a failure: `.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import duckdb
import nbformat
import papermill
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect, sync_playwright

from lakelambda.explore import HISTOGRAM_BINS

from browser_support import CHROMIUM, CHROMIUM_ARGS, JupyterServer, save_small_png, write_notebook

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "ci-artifacts" / "screenshots"
DOCS_SCREENSHOT = REPO / "docs" / "widget.png"  # rewritten only when missing or LAKEMAGIC_UPDATE_DOCS=1

QUERY = "SELECT pickup_location_id, count(*) AS trips\nFROM taxi_2019_04\nGROUP BY 1 ORDER BY 2 DESC, 1"
BAD_QUERY = "SELECT no_such_column\nFROM taxi_2019_04"
# The short error: DuckDB's class and message, the SQL line, a caret under the bad name.
ERROR_START = 'BinderException: Referenced column "no_such_column" not found in FROM clause!'
ERROR_POINTER = "LINE 2: SELECT no_such_column\n" + " " * len("LINE 2: SELECT ") + "^"  # the %%lakesql line is 1
NOTEBOOK = "browse.ipynb"
EXECUTED = "executed.ipynb"
SHAPES = "shapes.ipynb"
# One value of each type whose text pandas would get wrong, and the zone a TIMESTAMPTZ was computed in (UTC).
TYPES_QUERY = """SELECT 0.41::FLOAT AS f, 1234567.25::DOUBLE AS d, DATE '2019-04-01' AS day, INTERVAL 90 MINUTE AS span,
  [1, 2, 3] AS list, {'a': 1, 'b': 'x'} AS struct, MAP {'k': 1} AS map,
  '4f1c6b2e-1c1a-4d8e-9b1e-2f5c3a7d9e10'::UUID AS id, '\\x00ab'::BLOB AS bytes,
  TIMESTAMPTZ '2020-01-01 12:00:00+02' AS at, 100000000000000000000::HUGEINT AS huge,
  0.000012345::DECIMAL(10,9) AS exact, NULL::INTEGER AS nothing, repeat('long text ', 20) AS long_text"""
# 33 columns and 300 rows: wider and taller than the grid, which scrolls inside itself.
WIDE_QUERY = ("SELECT range AS r, " + ", ".join(f"range * {i} AS col_{i:02}" for i in range(1, 33))
              + " FROM range(300)")
TIMEOUT_MS = 30_000
expect.set_options(timeout=15_000)
KERNEL_READY = """() =>
    document.querySelector('.jp-Toolbar-kernelName')?.textContent === 'Python 3 (ipykernel)'
    && document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'"""


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected(local_taxi_lake) -> list[tuple[int, int]]:
    """The query's rows, run directly in DuckDB on the lake's file."""
    dataset = local_taxi_lake / "dataset" / "taxi_2019_04.parquet"
    rows = duckdb.sql(QUERY.replace("taxi_2019_04", f"read_parquet('{dataset}')")).fetchall()
    assert len(rows) == 265
    return rows


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory, local_taxi_lake) -> Path:
    """The notebook, and a copy of it executed by papermill, which stops at the SQL error as it should."""
    folder = tmp_path_factory.mktemp("notebooks")
    # The failing cell is last: it stops papermill.
    write_notebook(folder / NOTEBOOK, f"%%lakesql\n{QUERY}", f"%%lakesql\n{BAD_QUERY}", lake=local_taxi_lake)
    write_notebook(folder / SHAPES, f"%%lakesql\n{TYPES_QUERY}", f"%%lakesql\n{WIDE_QUERY}", lake=local_taxi_lake)
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(folder / NOTEBOOK), str(folder / EXECUTED), kernel_name="python3",
                                   progress_bar=False, cwd=str(folder))
    assert failure.value.ename == "LakeQueryError"
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's chromium, headless, with a fresh profile. Never `playwright install`."""
    def unavailable(reason: str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests: {reason}")
        pytest.skip(f"browser tests skipped: {reason}")

    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no chromium at {CHROMIUM} (`apt-get install chromium`, as .ci/run does)")
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 2400}, device_scale_factor=1,
        )
    except PlaywrightError as exc:
        playwright.stop()
        unavailable(f"{CHROMIUM} did not start: {str(exc).splitlines()[0]}")
    context.set_default_timeout(TIMEOUT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield context
    context.close()
    playwright.stop()


def start_server(app: str, notebooks: Path, tmp_path_factory) -> JupyterServer:
    home = tmp_path_factory.mktemp(f"{app}-home")
    root = tmp_path_factory.mktemp(f"{app}-root")
    for name in (NOTEBOOK, EXECUTED, SHAPES):
        shutil.copy(notebooks / name, root / name)
    server = JupyterServer(app, root, home)
    server.start()
    return server


@pytest.fixture(scope="module")
def lab(browser, notebooks, tmp_path_factory):
    server = start_server("jupyterlab", notebooks, tmp_path_factory)
    yield server
    assert server.stop() == [], f"processes left after JupyterLab stopped:\n{server.log()}"


@pytest.fixture(scope="module")
def notebook7(browser, notebooks, tmp_path_factory):
    server = start_server("notebook", notebooks, tmp_path_factory)
    yield server
    assert server.stop() == [], f"processes left after Jupyter Notebook stopped:\n{server.log()}"


@pytest.fixture(scope="module")
def lab_run(browser, lab) -> Page:
    """The notebook open in JupyterLab with all its cells run."""
    page = browser.new_page()
    open_and_run_all(page, lab.page_url(NOTEBOOK))
    yield page
    page.close()


# --- helpers: what a person does and sees ----------------------------------------------------------


def open_and_run_all(page: Page, url: str, cells: int = 3) -> None:
    page.goto(url)
    # Idle alone is not enough: it reads idle under "No Kernel" before the kernel is attached,
    # and then Run All would open a "Select Kernel" dialog.
    page.wait_for_function(KERNEL_READY, timeout=60_000)
    first = page.locator(".jp-CodeCell").first.locator(".jp-InputPrompt")
    # Run All is a disabled menu item until the notebook is the app's current one, and a click on it then does
    # nothing (twice in CI, every cell left at "[ ]:"): the item is clicked once enabled, and again if no cell ran.
    for _ in range(2):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        run_all = page.locator("li.lm-Menu-item[data-command='runmenu:run-all']")
        expect(run_all).not_to_have_class(re.compile(r"\blm-mod-disabled\b"), timeout=30_000)
        run_all.click()
        try:
            expect(first).not_to_have_text("[ ]:", timeout=15_000)
            break
        except AssertionError:
            page.keyboard.press("Escape")  # the menu, if it is still open
    expect(page.locator(".jp-CodeCell").last.locator(".jp-InputPrompt")).to_have_text(f"[{cells}]:", timeout=60_000)


def code_cell(page: Page, source_text: str) -> Locator:
    return page.locator(".jp-CodeCell").filter(has_text=source_text)


def result_widget(page: Page) -> Locator:
    return code_cell(page, "GROUP BY 1").locator(".jp-OutputArea-output")


def shown_rows(output: Locator) -> list[tuple[int, int, int]]:
    """(row number, pickup_location_id, trips) of each row of the table on screen."""
    cells = output.locator("table.lakemagic-table tbody tr").evaluate_all(
        "rows => rows.map(row => Array.from(row.cells, cell => cell.textContent))"
    )
    return [tuple(int(text.replace(",", "")) for text in row) for row in cells]


def shown_header(output: Locator) -> list[list[str]]:
    """Each column's name (its header button) and, under it, its DuckDB type."""
    names = output.locator(".lm-names button").all_text_contents()
    types = output.locator(".lm-types .lm-type").all_text_contents()
    return [[name.strip(), kind] for name, kind in zip(names, types)]


def page_size_choice(widget: Locator) -> Locator:
    return widget.locator(".widget-dropdown", has_text="rows/page").locator("select")


def sort_by(widget: Locator, column: str, shown: str) -> None:
    """Click a column's header and wait until it reads `shown` (its name and the sort's arrow)."""
    header = widget.locator(".lm-names button", has_text=column)
    header.click()
    expect(header).to_have_text(shown)


def open_tools(widget: Locator) -> None:
    """The filter, go-to, profile and export controls, which the table builds on first use."""
    tools = button(widget, "Filter, profile, go to, export")
    if tools.is_visible():
        tools.click()
    expect(widget.get_by_placeholder(re.compile("^filter"))).to_be_visible()


def apply_filter(widget: Locator, condition: str) -> None:
    open_tools(widget)
    widget.get_by_placeholder(re.compile("^filter")).fill(condition)
    button(widget, "Filter").click()


def in_duckdb(expected: list[tuple[int, int]], clause: str) -> list[tuple[int, int]]:
    """DuckDB's ORDER BY / WHERE over the whole result, its ties in the result's order (column i)."""
    values = ", ".join(f"({i}, {location}, {trips})" for i, (location, trips) in enumerate(expected))
    return duckdb.sql(f"SELECT pickup_location_id, trips FROM (VALUES {values}) AS t(i, pickup_location_id, trips) "
                      f"{clause}").fetchall()


def numbered(expected: list[tuple[int, int]], start: int, stop: int) -> list[tuple[int, int, int]]:
    return [(number + 1, *expected[number]) for number in range(start, min(stop, len(expected)))]


def expect_page(widget: Locator, position: str, expected, start: int, stop: int) -> None:
    """The label reads `position` and the table shows rows start+1..stop of the direct DuckDB result."""
    expect(widget.locator("div.widget-label")).to_have_text(position)  # the Label (the Dropdown's is a <label>)
    expect(widget.locator("table.lakemagic-table tbody tr").first.locator("td").first).to_have_text(f"{start + 1:,}")
    expect(widget.locator("table.lakemagic-table tbody tr")).to_have_count(min(stop, len(expected)) - start)
    # The label and the row numbers may read the same before a sort or filter as after it: wait for the rows.
    want = numbered(expected, start, stop)
    deadline = time.monotonic() + 15
    while shown_rows(widget) != want and time.monotonic() < deadline:
        widget.page.wait_for_timeout(100)
    assert shown_rows(widget) == want


def back_to_the_start(widget: Locator, expected) -> None:
    """Page 1 with 50 rows a page, however an earlier test left the widget."""
    page_size_choice(widget).select_option("50")
    if button(widget, "First").is_enabled():
        button(widget, "First").click()
    expect_page(widget, "page 1 of 6 · rows 1–50 of 265", expected, 0, 50)


def button(widget: Locator, name: str) -> Locator:
    return widget.get_by_role("button", name=re.compile(rf"\b{name}$"))  # after the icon's glyph


def expect_histogram(profile: Locator) -> None:
    """A profile's histogram is drawn: equal bins of one round width, at most one more than HISTOGRAM_BINS."""
    expect(profile.locator(".lm-bar").first).to_be_visible()
    assert 2 <= profile.locator(".lm-bar").count() <= HISTOGRAM_BINS + 1


def widget_screenshot(widget: Locator, name: str) -> Path:
    """A screenshot of the widget, cropped to its content (the output area is as wide as the page)."""
    box = widget.evaluate("""node => {
        let right = 0;
        for (const part of node.querySelectorAll('button, select, div.widget-label, table')) {
            right = Math.max(right, part.getBoundingClientRect().right);
        }
        for (const part of node.querySelectorAll('.lakemagic-summary')) {  // a block: measure its text
            const text = document.createRange();
            text.selectNodeContents(part);
            right = Math.max(right, text.getBoundingClientRect().right);
        }
        const outer = node.getBoundingClientRect();
        return {x: outer.x, y: outer.y, width: Math.min(outer.width, right - outer.x + 16), height: outer.height};
    }""")
    path = SCREENSHOTS / name
    widget.page.screenshot(path=path, clip=box)
    return path


# --- JupyterLab -----------------------------------------------------------------------------------


def test_lab_shows_the_first_page_and_pages_through_the_result(lab_run, expected):
    widget = result_widget(lab_run)
    expect_page(widget, "page 1 of 6 · rows 1–50 of 265", expected, 0, 50)
    assert shown_header(widget) == [["pickup_location_id", "INTEGER"], ["trips", "BIGINT"]]
    expect(widget.locator(".lakemagic-summary")).to_contain_text("265 rows · query: engine")
    expect(button(widget, "First")).to_be_disabled()
    expect(button(widget, "Previous")).to_be_disabled()
    widget_screenshot(widget, "lab-1-first-page.png")

    button(widget, "Next").click()
    expect_page(widget, "page 2 of 6 · rows 51–100 of 265", expected, 50, 100)
    expect(button(widget, "Previous")).to_be_enabled()
    widget_screenshot(widget, "lab-2-after-next.png")

    button(widget, "Last").click()
    expect_page(widget, "page 6 of 6 · rows 251–265 of 265", expected, 250, 265)
    expect(button(widget, "Next")).to_be_disabled()
    expect(button(widget, "Last")).to_be_disabled()

    button(widget, "First").click()
    expect_page(widget, "page 1 of 6 · rows 1–50 of 265", expected, 0, 50)


def test_lab_changing_the_page_size_repages(lab_run, expected):
    widget = result_widget(lab_run)
    back_to_the_start(widget, expected)
    button(widget, "Next").click()
    expect_page(widget, "page 2 of 6 · rows 51–100 of 265", expected, 50, 100)
    page_size_choice(widget).select_option("100")  # row 51 is on page 1 of 100-row pages
    expect_page(widget, "page 1 of 3 · rows 1–100 of 265", expected, 0, 100)
    button(widget, "Next").click()
    expect_page(widget, "page 2 of 3 · rows 101–200 of 265", expected, 100, 200)
    page_size_choice(widget).select_option("25")
    expect_page(widget, "page 5 of 11 · rows 101–125 of 265", expected, 100, 125)

    button(widget, "First").click()
    page_size_choice(widget).select_option("10")
    expect_page(widget, "page 1 of 27 · rows 1–10 of 265", expected, 0, 10)
    widget_screenshot(widget, "lab-3-ten-rows.png")


def test_lab_sorts_by_a_header_filters_and_profiles_the_whole_result(lab_run, expected):
    widget = result_widget(lab_run)
    back_to_the_start(widget, expected)
    sort_by(widget, "trips", "trips ▲")  # ascending: the result's last rows first
    ascending = in_duckdb(expected, "ORDER BY trips, i")
    expect_page(widget, "page 1 of 6 · rows 1–50 of 265", ascending, 0, 50)
    button(widget, "Last").click()
    expect_page(widget, "page 6 of 6 · rows 251–265 of 265", ascending, 250, 265)

    sort_by(widget, "pickup_location_id", "pickup_location_id ▲")
    sort_by(widget, "pickup_location_id", "pickup_location_id ▼")
    condition = "trips BETWEEN 20 AND 80"
    apply_filter(widget, condition)
    shown = in_duckdb(expected, f"WHERE {condition} ORDER BY pickup_location_id DESC, i")
    count = len(shown)
    expect_page(widget, f"page 1 of 1 · rows 1–{count} of {count}", shown, 0, count)
    expect(widget.locator(".lakemagic-summary").first).to_contain_text(
        f"sorted by pickup_location_id descending · filter {condition} ({count} of 265 rows)")

    apply_filter(widget, "trips > (SELECT 1)")  # refused inline; the table stays as it was
    expect(widget.locator("pre")).to_contain_text("PermissionException: a filter cannot hold a subquery")
    assert shown_rows(widget) == numbered(shown, 0, count)
    apply_filter(widget, condition)

    widget.locator(".widget-dropdown", has_text="profile").locator("select").select_option("trips")
    profile = widget.locator(".lakemagic-profile")
    low, high = duckdb.sql(f"SELECT min(trips), max(trips) FROM (VALUES {', '.join(map(str, shown))}) AS t(p, trips)").fetchone()
    expect(profile).to_contain_text(f"rows {count} · nulls 0")
    expect(profile).to_contain_text(f"min {low} · max {high}")
    expect_histogram(profile)

    page_size_choice(widget).select_option("10")
    expect_page(widget, f"page 1 of {-(-count // 10)} · rows 1–10 of {count}", shown, 0, 10)
    shot = widget_screenshot(widget, "lab-4-sorted-filtered-profiled.png")
    if not DOCS_SCREENSHOT.exists() or os.environ.get("LAKEMAGIC_UPDATE_DOCS") == "1":
        save_small_png(shot, DOCS_SCREENSHOT)


def test_lab_shows_the_short_sql_error_not_a_traceback(lab_run):
    cell = code_cell(lab_run, "no_such_column")
    error = cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    expect(error).to_have_count(1)
    text = error.text_content()
    assert text.startswith(ERROR_START)
    assert ERROR_POINTER in text
    assert "Traceback" not in text and "File " not in text
    cell.screenshot(path=SCREENSHOTS / "lab-6-sql-error.png")


def test_lab_shows_the_static_table_of_a_papermill_copy(browser, lab, notebooks, expected):
    """A notebook executed headless (papermill) keeps each result as its static table only: no widget reference,
    which nbconvert would draw from a CDN (blank offline) and JupyterLab only once trusted."""
    saved = nbformat.read(notebooks / EXECUTED, as_version=4)
    output = next(cell.outputs[0] for cell in saved.cells if cell.source.startswith(f"%%lakesql\n{QUERY}"))
    assert "application/vnd.jupyter.widget-view+json" not in output.data
    assert "showing rows 1–50 of 265" in output.data["text/html"]
    assert "Progress(" not in nbformat.writes(saved)

    page = browser.new_page()
    try:
        page.goto(lab.page_url(EXECUTED))
        page.wait_for_function(KERNEL_READY, timeout=60_000)
        static = result_widget(page)
        expect(static).to_have_count(1)
        expect(static).to_have_attribute("data-mime-type", "text/html")
        expect(static.locator(".lakemagic-summary")).to_have_text(re.compile(r"^showing rows 1–50 of 265 · 265 rows · "))
        assert shown_rows(static) == numbered(expected, 0, 50)
        expect(static.locator("button, select, .jupyter-widgets")).to_have_count(0)
        align = static.locator("table.lakemagic-table tbody td").nth(2).evaluate("cell => getComputedStyle(cell).textAlign")
        assert align == "right"  # untrusted: the stylesheet is dropped, each cell's own alignment stays
        error = code_cell(page, "no_such_column").locator(".jp-OutputArea-output")
        expect(error).to_contain_text(ERROR_START)
        assert "Traceback" not in error.text_content()
        widget_screenshot(static, "lab-5-papermill-copy.png")
    finally:
        page.close()


def test_nbconvert_html_of_a_papermill_copy_shows_every_table_offline(browser, notebooks, expected, tmp_path):
    """`jupyter nbconvert --to html` of the executed copy, opened with every request off this machine refused."""
    import nbconvert

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(notebooks / EXECUTED, as_version=4))
    (tmp_path / "executed.html").write_text(body)
    page = browser.new_page()
    refused = []
    page.route(re.compile(r"^https?://"), lambda route: (refused.append(route.request.url), route.abort()))
    try:
        page.goto((tmp_path / "executed.html").as_uri())
        tables = page.locator("table.lakemagic-table")
        expect(tables).to_have_count(1)
        assert shown_rows(page.locator(".jp-OutputArea-output").filter(has=tables)) == numbered(expected, 0, 50)
        expect(page.locator(".lakemagic-summary")).to_contain_text("showing rows 1–50 of 265")
        page.screenshot(path=SCREENSHOTS / "nbconvert-offline.png")
    finally:
        page.close()


# --- Jupyter Notebook 7: the same widget without any JupyterLab-only plugin -------------------


def test_notebook7_shows_the_first_page_and_next(browser, notebook7, expected):
    page = browser.new_page()
    try:
        open_and_run_all(page, notebook7.page_url(NOTEBOOK))
        widget = result_widget(page)
        expect_page(widget, "page 1 of 6 · rows 1–50 of 265", expected, 0, 50)
        widget_screenshot(widget, "notebook7-1-first-page.png")
        button(widget, "Next").click()
        expect_page(widget, "page 2 of 6 · rows 51–100 of 265", expected, 50, 100)
        widget_screenshot(widget, "notebook7-2-after-next.png")
        sort_by(widget, "trips", "trips ▲")
        apply_filter(widget, "pickup_location_id < 100")
        shown = in_duckdb(expected, "WHERE pickup_location_id < 100 ORDER BY trips, i")
        expect_page(widget, f"page 1 of {-(-len(shown) // 50)} · rows 1–{min(50, len(shown))} of {len(shown)}",
                    shown, 0, 50)
        widget.locator(".widget-dropdown", has_text="profile").locator("select").select_option("pickup_location_id")
        expect_histogram(widget.locator(".lakemagic-profile"))
        widget_screenshot(widget, "notebook7-3-sorted-filtered-profiled.png")
    finally:
        page.close()


# --- the grid: values as DuckDB writes them, a shape that holds, messages where the eye is -------------


@pytest.fixture(scope="module")
def lab_shapes(browser, lab) -> Page:
    """The types and the 33-column notebook open in JupyterLab with its cells run."""
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})
    open_and_run_all(page, lab.page_url(SHAPES))
    yield page
    page.close()


def duckdb_text(sql: str) -> list[str | None]:
    """Each value of the query's one row as DuckDB's CLI writes it (a cast to VARCHAR), computed in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    relation = con.sql(sql)
    return list(con.sql("SELECT " + ", ".join(f'CAST("{name}" AS VARCHAR)' for name in relation.columns)
                        + " FROM relation").fetchone())


def grid_cells(output: Locator) -> list[list[str]]:
    return output.locator("table.lakemagic-table tbody tr").evaluate_all(
        "rows => rows.map(row => Array.from(row.cells, cell => cell.textContent))")


def check_every_type(output: Locator, screenshot: str) -> None:
    """Each value of TYPES_QUERY reads as DuckDB's CLI writes it; numbers right, text left; long text whole on hover."""
    expect(output.locator("table.lakemagic-table tbody tr")).to_have_count(1)
    [row] = grid_cells(output)
    shown = [text.strip() for text in row[1:]]
    written = duckdb_text(TYPES_QUERY)
    names = [name.strip() for name in output.locator(".lm-names button").all_text_contents()]
    widget_screenshot(output, screenshot)
    for name, text, want in zip(names, shown, written):
        want = want if want is None else want.strip()
        if want is None:
            assert text == "NULL", name
        else:  # numbers grouped by thousands, DuckDB's digits exactly
            assert (text.replace(",", "") if name in ("f", "d", "huge", "exact") else text) == want, name
    assert shown[names.index("huge")] == "100,000,000,000,000,000,000"
    assert shown[names.index("at")].endswith("+00")  # the zone it was computed in
    long_cell = output.locator("table.lakemagic-table tbody td").nth(names.index("long_text") + 1)
    assert long_cell.get_attribute("title") == written[names.index("long_text")].strip()  # whole on hover
    align = output.locator("table.lakemagic-table tbody td").evaluate_all(
        "cells => cells.map(cell => getComputedStyle(cell).textAlign)")
    assert align[names.index("huge") + 1] == "right" and align[names.index("list") + 1] == "left"


def test_lab_shows_every_type_as_duckdb_writes_it(lab_shapes):
    check_every_type(code_cell(lab_shapes, "AS huge").locator(".jp-OutputArea-output"), "lab-7-types.png")


def test_notebook7_shows_every_type_as_duckdb_writes_it(browser, notebook7):
    page = browser.new_page()
    try:
        open_and_run_all(page, notebook7.page_url(SHAPES))
        check_every_type(code_cell(page, "AS huge").locator(".jp-OutputArea-output"), "notebook7-4-types.png")
    finally:
        page.close()


def wide_grid(page: Page) -> Locator:
    return code_cell(page, "col_32").locator(".jp-OutputArea-output")


def top_left(locator: Locator) -> tuple[float, float]:
    box = locator.bounding_box()
    return round(box["y"]), round(box["x"])


def test_lab_a_wide_result_scrolls_inside_its_grid_under_its_header(lab_shapes):
    output = wide_grid(lab_shapes)
    grid = output.locator(".lm-scroll")
    header = output.locator(".lm-names button", has_text="col_01")
    first_number = output.locator("td.lm-rownum").first
    pager = button(output, "Next")
    footer = output.locator(".lakemagic-summary")

    def offsets():  # from the grid's top left corner, which the page itself may move
        grid_top, grid_left = top_left(grid)
        return {name: (top - grid_top, left - grid_left) for name, (top, left) in
                (("header", top_left(header)), ("pager", top_left(pager)), ("footer", top_left(footer)))}

    before = offsets()
    number_left = top_left(first_number)[1] - top_left(grid)[1]
    grid.evaluate("node => { node.scrollTop = 600; node.scrollLeft = 1500; }")
    lab_shapes.wait_for_timeout(300)
    widget_screenshot(output, "lab-8-wide-scrolled.png")
    assert grid.evaluate("node => [node.scrollTop, node.scrollLeft]") == [600, 1500]
    after = offsets()
    assert after["pager"] == before["pager"] and after["footer"] == before["footer"]  # outside the grid: they stay
    assert abs(after["header"][0] - before["header"][0]) <= 3  # the header row stays at the grid's top
    assert after["header"][1] < before["header"][1] - 1000  # while it follows the cells sideways
    shown_number = output.locator("td.lm-rownum").nth(30)
    assert abs(top_left(shown_number)[1] - top_left(grid)[1] - number_left) <= 3  # row numbers stay at its left
    expect(button(output, "Next")).to_be_in_viewport()
    grid.evaluate("node => { node.scrollTop = 0; node.scrollLeft = 0; }")


def test_lab_a_filter_typo_shows_its_error_next_to_the_box(lab_shapes):
    output = wide_grid(lab_shapes)
    apply_filter(output, "coll_01 > 5")
    message = output.locator("pre.lm-error")
    expect(message).to_contain_text("did you mean col_01")
    box = output.get_by_placeholder(re.compile("^filter")).bounding_box()
    shown = message.bounding_box()
    assert 0 <= shown["y"] - (box["y"] + box["height"]) < 40, (box, shown)
    widget_screenshot(output, "lab-9-filter-typo.png")


def luminance(color: str) -> float:
    red, green, blue = (int(part) for part in re.findall(r"\d+", color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def use_theme(page: Page, theme: str) -> None:
    page.get_by_role("menuitem", name="Settings", exact=True).click()
    page.locator("li.lm-Menu-item[data-type='submenu']", has_text=re.compile("^Theme$")).hover()
    page.get_by_role("menuitem", name=theme, exact=True).click()


def test_lab_the_grid_reads_in_the_dark_theme(lab_shapes):
    page = lab_shapes
    use_theme(page, "JupyterLab Dark")
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    output = wide_grid(page)
    try:
        page.wait_for_timeout(500)
        widget_screenshot(output, "lab-10-dark.png")
        cell = output.locator("table.lakemagic-table tbody td").nth(3)
        text, ground = cell.evaluate("""cell => [getComputedStyle(cell).color,
            getComputedStyle(cell.closest('.lm-scroll').parentElement.closest('.jp-OutputArea-output')
                             .closest('.jp-Notebook')).backgroundColor]""")
        assert luminance(text) - luminance(ground) > 100, (text, ground)
        header = output.locator(".lm-names button", has_text="col_01")
        assert luminance(header.evaluate("node => getComputedStyle(node).color")) > 150
    finally:
        use_theme(page, "JupyterLab Light")
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true")


def test_lab_the_controls_wrap_in_a_narrow_window(lab_shapes):
    page = lab_shapes
    page.set_viewport_size({"width": 760, "height": 1000})
    try:
        output = wide_grid(page)
        page.wait_for_timeout(500)
        right = output.evaluate("node => node.getBoundingClientRect().right")
        edges = output.locator("button, select, input").evaluate_all(
            "parts => parts.filter(p => p.offsetParent && !p.closest('.lm-scroll')).map(p => p.getBoundingClientRect().right)")
        widget_screenshot(output, "lab-11-narrow.png")
        assert edges and max(edges) <= right + 1, (max(edges), right)
    finally:
        page.set_viewport_size({"width": 1280, "height": 1000})
