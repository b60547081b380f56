"""The summary strip in a real front end (JupyterLab 4 and Notebook 7 in headless chromium): a click on a bar,
a top value or a null share filters to its rows, and PageDown, PageUp, Home and End page the focused table.

Each filter's row count is checked against DuckDB's count of the same condition over the lake's file.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Locator, Page, expect

from browser_support import JupyterServer, write_notebook
from test_browser import SCREENSHOTS, browser, button, code_cell, open_and_run_all, widget_screenshot  # noqa: F401

COLUMNS = "pickup_at, passenger_count, payment_type, fare_amount, nullif(payment_type, '1') AS other_payment"
SQL = f"SELECT {COLUMNS}\nFROM taxi_2019_04"
NOTEBOOK = "strip.ipynb"
ROWS = 20_000  # the test lake's month


@pytest.fixture(scope="module")
def lake_file(local_taxi_lake) -> Path:
    return local_taxi_lake / "dataset" / "taxi_2019_04.parquet"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, local_taxi_lake) -> Path:
    root = tmp_path_factory.mktemp("strip-notebooks")
    write_notebook(root / NOTEBOOK, f"%%lakesql\n{SQL}", lake=local_taxi_lake)
    return root


def served(app: str, folder: Path, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"{app}-strip-root")
    shutil.copy(folder / NOTEBOOK, root / NOTEBOOK)
    server = JupyterServer(app, root, tmp_path_factory.mktemp(f"{app}-strip-home"))
    server.start()
    return server


@pytest.fixture(scope="module")
def lab(browser, folder, tmp_path_factory):  # noqa: F811
    server = served("jupyterlab", folder, tmp_path_factory)
    yield server
    assert server.stop() == [], f"processes left after JupyterLab stopped:\n{server.log()}"


@pytest.fixture(scope="module")
def lab_page(browser, lab) -> Page:  # noqa: F811
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})
    open_and_run_all(page, lab.page_url(NOTEBOOK), cells=2)
    yield page
    page.close()


def table_of(page: Page) -> Locator:
    return code_cell(page, "other_payment").locator(".jp-OutputArea-output")


def glance(table: Locator, column: int) -> Locator:
    """The summary under the column at `column` (0: pickup_at)."""
    return table.locator(".lm-types").last.locator(":scope > div").nth(column + 1)


def count_in_duckdb(lake_file: Path, condition: str) -> int:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(f"SELECT count(*) FROM (SELECT {COLUMNS} FROM read_parquet('{lake_file}')) "
                   f"WHERE {condition}").fetchone()[0]


def expect_filtered(table: Locator, lake_file: Path, starts: str) -> str:
    """The filter box holds a condition starting `starts`; the label and footer show DuckDB's count of its rows."""
    box = table.get_by_placeholder(re.compile("^filter"))
    expect(box).to_have_value(re.compile("^" + re.escape(starts)))
    condition = box.input_value()
    rows = count_in_duckdb(lake_file, condition)
    assert 0 < rows < ROWS, condition
    expect(table.locator("div.widget-label")).to_have_text(f"page 1 of {-(-rows // 50):,} · rows 1–{min(50, rows)} of {rows:,}")
    expect(table.locator(".lakemagic-summary").last).to_contain_text(f"filter {condition} ({rows:,} of {ROWS:,} rows)")
    return condition


def check_filtered_summaries(table: Locator, lake_file: Path, condition: str) -> None:
    """The filtered result shows its own summaries: the top payment type's share is the filtered rows' share."""
    expect(glance(table, 3).locator(".lm-bin").first).to_be_visible()
    top = glance(table, 2).locator(".lm-value").first
    expect(top).to_be_visible()
    value, count = top.get_attribute("title").split("\n")[0].rsplit(": ", 1)
    rows = count_in_duckdb(lake_file, condition)
    assert int(count.split(" ")[0].replace(",", "")) == count_in_duckdb(lake_file, f"{condition} AND payment_type = '{value}'")
    assert count_in_duckdb(lake_file, f"{condition} AND payment_type = '{value}'") < rows


def clear_filter(table: Locator) -> None:
    box = table.get_by_placeholder(re.compile("^filter"))
    box.fill("")
    button(table, "Filter").click()
    expect(table.locator("div.widget-label")).to_have_text(f"page 1 of 400 · rows 1–50 of {ROWS:,}")
    expect(table.locator(".lm-strip").first).to_be_visible()  # the whole result's summaries are back


def check_clicks_filter(table: Locator, lake_file: Path, prefix: str) -> None:
    expect(table.locator(".lm-strip .lm-bin").first).to_be_visible(timeout=30_000)
    widget_screenshot(table, f"{prefix}-1-summaries.png")
    fare_bins = glance(table, 3).locator(".lm-bin")
    assert fare_bins.count() >= 3
    fare_bins.nth(2).click()  # a histogram bin: a range of fare_amount
    condition = expect_filtered(table, lake_file, '"fare_amount" >= ')
    assert re.fullmatch(r'"fare_amount" >= [\d.]+ AND "fare_amount" < [\d.]+', condition), condition
    check_filtered_summaries(table, lake_file, condition)
    widget_screenshot(table, f"{prefix}-2-filtered-to-a-bin.png")
    # A click on the filtered result's summaries narrows it: the filter box holds both conditions.
    glance(table, 2).locator(".lm-value").first.click()
    narrowed = expect_filtered(table, lake_file, condition + ' AND "payment_type" = ')
    assert count_in_duckdb(lake_file, narrowed) < count_in_duckdb(lake_file, condition)

    clear_filter(table)
    glance(table, 2).locator(".lm-value", has_text=re.compile("^2 ")).click()  # a top value: payment type 2
    assert expect_filtered(table, lake_file, '"payment_type" = ') == """"payment_type" = '2'"""

    clear_filter(table)
    glance(table, 4).locator(".lm-nulls").click()  # the null share
    assert expect_filtered(table, lake_file, '"other_payment"') == '"other_payment" IS NULL'
    clear_filter(table)


def check_keys_page(page: Page, table: Locator, prefix: str) -> None:
    position = table.locator("div.widget-label")
    table.locator("table.lakemagic-table tbody td").nth(3).click()  # the table has focus
    for key, shown in [("PageDown", "page 2 of 400"), ("PageDown", "page 3 of 400"), ("End", "page 400 of 400"),
                       ("PageUp", "page 399 of 400"), ("Home", "page 1 of 400")]:
        page.keyboard.press(key)
        expect(position).to_have_text(re.compile("^" + shown + " · "))
    expect(table.locator(".lm-scroll")).to_have_attribute("title", re.compile("PageDown"))
    expect(button(table, "Next")).to_have_attribute("title", "Next (PageDown)")
    widget_screenshot(table, f"{prefix}-3-keys.png")
    code_cell(page, "load_ext").locator(".jp-InputPrompt").click()  # focus elsewhere: keys are the notebook's
    page.keyboard.press("PageDown")
    page.wait_for_timeout(500)
    expect(position).to_have_text(re.compile("^page 1 of 400 · "))


def test_lab_a_click_on_a_summary_filters_to_its_rows(lab_page, lake_file):
    check_clicks_filter(table_of(lab_page), lake_file, "lab-strip")


def test_lab_paging_keys_page_the_focused_table_only(lab_page):
    check_keys_page(lab_page, table_of(lab_page), "lab-strip")


def test_lab_the_tools_go_to_a_row_or_a_page_and_export_what_the_table_shows(lab, lab_page, lake_file):
    """Go to (a row number, `p N`, a typo) and Export, which the summary tests do not touch."""
    table = table_of(lab_page)
    position = table.locator("div.widget-label")
    if button(table, "Filter, profile, go to, export").is_visible():
        button(table, "Filter, profile, go to, export").click()
    go = table.get_by_placeholder("row or p N")
    go.fill("12,345")
    button(table, "Go").click()
    expect(position).to_have_text(f"page 247 of 400 · rows 12,301–12,350 of {ROWS:,}")
    expect(table.locator("table.lakemagic-table tbody tr").first.locator("td").first).to_have_text("12,301")
    go.fill("p 400")
    go.press("Enter")
    expect(position).to_have_text(f"page 400 of 400 · rows 19,951–20,000 of {ROWS:,}")
    go.fill("row twelve")
    button(table, "Go").click()
    expect(table).to_contain_text("go to: a row number, or p and a page number (p 12)")
    expect(position).to_have_text(re.compile("^page 400 of 400 · "))

    condition = "passenger_count = 2"
    table.get_by_placeholder(re.compile("^filter")).fill(condition)
    button(table, "Filter").click()
    rows = count_in_duckdb(lake_file, condition)
    expect(position).to_have_text(re.compile(f" of {rows:,}$"))
    target = lab.root / "two-passengers.parquet"
    table.locator(".widget-text input").last.fill(target.name)
    button(table, "Export").click()
    expect(table).to_contain_text(f"exported {rows:,} rows to {target}")
    written = duckdb.sql(f"SELECT count(*), count(*) FILTER (WHERE passenger_count = 2) FROM '{target}'").fetchone()
    assert written == (rows, rows)
    widget_screenshot(table, "lab-strip-4-go-to-and-export.png")
    clear_filter(table)


def test_notebook7_clicks_filter_and_keys_page(browser, folder, lake_file, tmp_path_factory):  # noqa: F811
    server = served("notebook", folder, tmp_path_factory)
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1280, "height": 1000})
        open_and_run_all(page, server.page_url(NOTEBOOK), cells=2)
        table = table_of(page)
        check_clicks_filter(table, lake_file, "notebook7-strip")
        check_keys_page(page, table, "notebook7-strip")
    finally:
        page.close()
        assert server.stop() == [], f"processes left after Jupyter Notebook stopped:\n{server.log()}"
