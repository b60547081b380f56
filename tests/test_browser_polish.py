"""What a user's trial of the table found, checked where it was seen: JupyterLab 4 in headless chromium.

- A column's decimal points line up down the page, live and in a papermill copy opened untrusted (no
  stylesheet) or converted by nbconvert: the padding is a figure space, which no renderer collapses.
- The profile writes numbers as the cells do.
- The catalog listings are static HTML under JupyterLab's own table rules: no value is cut.
- A table's footer gives the time of the query that made its result, even after calls served in this
  kernel (the dashboard's pattern: `to_dataframe()`, then the table).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbconvert
import nbformat
import papermill
import pytest
from playwright.sync_api import Locator, Page, expect

from browser_support import JupyterServer, write_notebook
from test_browser import KERNEL_READY, SCREENSHOTS, browser, button, code_cell, open_and_run_all, widget_screenshot  # noqa: F401

NOTEBOOK = "polish.ipynb"
EXECUTED = "polish-executed.ipynb"
# A DOUBLE column whose values have 2, 1 and no decimals (as DuckDB writes them), over thousands.
DECIMALS = "SELECT * FROM (VALUES (5019.53::DOUBLE), (6148.3), (12.0), (1234567.25), (-3.5)) AS t(revenue)"
DASHBOARD = """from lakemagic import client
from lakemagic.display.widget import ResultTable
engine = get_ipython().magics_manager.registry["LakeMagic"].current_engine()
result = client.run_query(engine, "SELECT pickup_location_id AS zone, count(*) AS trips FROM taxi_2019_04 GROUP BY 1",
                          page_size=10)
frame = result.to_dataframe()  # a call the kernel serves, after the query's
print(f"the query: engine {result.stats.engine.engine_ms:,.0f} ms · round trip {result.stats.round_trip_ms:,.0f} ms")
ResultTable(result, page_size=10)"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory, local_taxi_lake) -> Path:
    """The notebook, and a copy papermill executed."""
    root = tmp_path_factory.mktemp("polish")
    write_notebook(root / NOTEBOOK, f"%%lakesql\n{DECIMALS}", "%lakesql --columns taxi_2019_04", "%lakesql --tables",
                   "%lakesql --views", DASHBOARD, lake=local_taxi_lake)
    papermill.execute_notebook(str(root / NOTEBOOK), str(root / EXECUTED), kernel_name="python3", progress_bar=False,
                               cwd=str(root))
    return root


@pytest.fixture(scope="module")
def lab(browser, folder, tmp_path_factory):  # noqa: F811
    server = JupyterServer("jupyterlab", folder, tmp_path_factory.mktemp("polish-home"))
    server.start()
    yield server
    assert server.stop() == [], f"processes left after JupyterLab stopped:\n{server.log()}"


@pytest.fixture(scope="module")
def lab_page(browser, lab) -> Page:  # noqa: F811
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})
    open_and_run_all(page, lab.page_url(NOTEBOOK), cells=6)
    yield page
    page.close()


POINTS = """cells => cells.map(cell => {
    const node = cell.firstChild, at = node ? node.textContent.indexOf('.') : -1;
    if (at < 0) return null;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + 1);
    return range.getBoundingClientRect().left;
})"""


def decimal_points(output: Locator) -> list[float]:
    """Where each value's decimal point is across the page, in the one column of the DECIMALS result."""
    cells = output.locator("table.lakemagic-table tbody td:not(.lm-rownum)")
    expect(cells).to_have_count(5)
    return cells.evaluate_all(POINTS)


def expect_points_aligned(output: Locator) -> None:
    points = decimal_points(output)
    assert all(point is not None for point in points), points
    assert max(points) - min(points) < 0.5, points
    texts = [text.strip() for text in output.locator("table.lakemagic-table tbody td:not(.lm-rownum)").all_text_contents()]
    assert texts == ["5,019.53", "6,148.3", "12.0", "1,234,567.25", "-3.5"]  # DuckDB's digits, none added


def test_lab_lines_up_a_column_s_decimal_points(lab_page):
    output = code_cell(lab_page, "AS t(revenue)").locator(".jp-OutputArea-output")
    expect_points_aligned(output)
    # The profile writes numbers as the cells do, grouped by thousands.
    button(output, "Filter, profile, go to, export").click()
    output.locator(".widget-dropdown", has_text="profile").locator("select").select_option("revenue")
    expect(output.locator(".lakemagic-profile")).to_contain_text("min -3.5 · max 1,234,567.25")
    widget_screenshot(output, "polish-decimals-live.png")


def test_lab_lines_up_decimal_points_in_an_untrusted_papermill_copy(browser, lab):  # noqa: F811
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.goto(lab.page_url(EXECUTED))
        page.wait_for_function(KERNEL_READY, timeout=60_000)
        output = code_cell(page, "AS t(revenue)").locator(".jp-OutputArea-output")
        expect(output).to_have_attribute("data-mime-type", "text/html")
        output.screenshot(path=SCREENSHOTS / "polish-decimals-untrusted.png")
        # Untrusted: JupyterLab dropped the stylesheet, so trailing spaces would collapse.
        assert output.locator("table.lakemagic-table td").first.evaluate("cell => getComputedStyle(cell).whiteSpace") != "pre"
        expect_points_aligned(output)
    finally:
        page.close()


def test_nbconvert_html_lines_up_decimal_points_offline(browser, folder, tmp_path):  # noqa: F811
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(folder / EXECUTED, as_version=4))
    (tmp_path / "polish.html").write_text(body)
    page = browser.new_page()
    refused = []
    page.route(re.compile(r"^https?://"), lambda route: (refused.append(route.request.url), route.abort()))
    try:
        page.goto((tmp_path / "polish.html").as_uri())
        output = page.locator(".jp-OutputArea-output").filter(has_text="1,234,567.25")
        output.screenshot(path=SCREENSHOTS / "polish-decimals-nbconvert.png")
        expect_points_aligned(output)
    finally:
        page.close()


def cut_cells(output: Locator) -> list[str]:
    """The cells whose text is wider than the cell shows (cut with an ellipsis)."""
    return output.locator("table.lakemagic-table td, table.lakemagic-table th").evaluate_all(
        "cells => cells.filter(cell => cell.scrollWidth > cell.clientWidth + 1).map(cell => cell.textContent)")


def test_lab_catalog_listings_show_every_value_whole(lab_page):
    columns = code_cell(lab_page, "--columns").locator(".jp-OutputArea-output")
    expect(columns).to_contain_text("improvement_surcharge")
    tables = code_cell(lab_page, "--tables").locator(".jp-OutputArea-output")
    expect(tables).to_contain_text("taxi_2019_04")
    columns.screenshot(path=SCREENSHOTS / "polish-catalog-columns.png")
    tables.screenshot(path=SCREENSHOTS / "polish-catalog-tables.png")
    assert cut_cells(columns) == []
    assert cut_cells(tables) == []
    size = tables.locator("table.lakemagic-table td").first.evaluate("cell => getComputedStyle(cell).fontSize")
    assert size == "12px"  # the table's own size, not JupyterLab's for static HTML (13 px)
    views = code_cell(lab_page, "--views").locator(".jp-OutputArea-output")
    expect(views.locator("table.lakemagic-table tbody")).to_have_text("no rows")
    views.screenshot(path=SCREENSHOTS / "polish-catalog-no-views.png")


def test_lab_footer_gives_the_query_s_time_after_calls_the_kernel_served(lab_page):
    cell = code_cell(lab_page, "a call the kernel serves")
    printed = cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
    figures = re.fullmatch(r"the query: (.*)\n?", printed.text_content())
    assert figures, repr(printed.text_content())
    table = cell.locator(".jp-OutputArea-output").filter(has=lab_page.locator(".lakemagic-widget"))
    footer = table.locator(".lakemagic-summary").last
    expect(footer).to_contain_text(f"265 rows · query: {figures[1]}")
    expect(footer).not_to_contain_text("these rows")
    table.scroll_into_view_if_needed()
    widget_screenshot(table, "polish-footer.png")


def test_notebook7_lines_up_decimals_and_shows_listings_whole(browser, folder, tmp_path_factory):  # noqa: F811
    server = JupyterServer("notebook", folder, tmp_path_factory.mktemp("polish-notebook7-home"))
    server.start()
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1280, "height": 1000})
        open_and_run_all(page, server.page_url(NOTEBOOK), cells=6)
        output = code_cell(page, "AS t(revenue)").locator(".jp-OutputArea-output")
        expect_points_aligned(output)
        columns = code_cell(page, "--columns").locator(".jp-OutputArea-output")
        expect(columns).to_contain_text("improvement_surcharge")
        assert cut_cells(columns) == []
        columns.screenshot(path=SCREENSHOTS / "polish-notebook7-catalog-columns.png")
    finally:
        page.close()
        assert server.stop() == [], f"processes left after Jupyter Notebook stopped:\n{server.log()}"
