"""Ctrl-C in a real kernel, as a person gives it: JupyterLab's interrupt button (■) while a `%%lakesql` cell runs
on the embedded engine, in headless chromium.

The waiting line shows after about a second and counts; the interrupt replaces it with the short message; the
next cell shows its table; two quick interrupts still stop the query; `df <<` stops the same way and leaves no
variable; after all that a plain Python cell's interrupt is Python's KeyboardInterrupt again; and a query that ends
puts its table where its waiting line was. Notebook 7's interrupt button is checked once.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from browser_support import JupyterServer, write_notebook
from test_browser import KERNEL_READY, SCREENSHOTS, browser  # noqa: F401

# Minutes of DuckDB work on any machine here, no lake file read: only the interrupt ends it in time.
ENDLESS = "SELECT count(*) AS n FROM range(10_000_000_000) a WHERE hash(a.range) % 7 = 3"
# A few seconds of DuckDB work that ends: the waiting line shows, then the table takes its place.
SECONDS = "SELECT count(*) AS n FROM range(1_000_000_000) a WHERE hash(a.range) % 7 = 3"
NOTEBOOK = "interrupt.ipynb"
STOPPED = re.compile(r"QueryInterrupted: interrupted after \d+ s; the local engine stopped the query")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, local_taxi_lake) -> Path:
    root = tmp_path_factory.mktemp("interrupt-notebooks")
    write_notebook(root / NOTEBOOK, f"%%lakesql\n{ENDLESS}", "%%lakesql\nSELECT 42 AS answer, 'after' AS word",
                   f"%%lakesql counted <<\n{ENDLESS}", "print('counted' in globals())", "import time\ntime.sleep(100)",
                   f"%%lakesql\n{SECONDS}", lake=local_taxi_lake)
    return root


def served(app: str, folder: Path, tmp_path_factory) -> JupyterServer:
    root = tmp_path_factory.mktemp(f"{app}-interrupt-root")
    shutil.copy(folder / NOTEBOOK, root / NOTEBOOK)
    server = JupyterServer(app, root, tmp_path_factory.mktemp(f"{app}-interrupt-home"))
    server.start()
    return server


def opened(browser, server: JupyterServer) -> Page:  # noqa: F811
    """The notebook open, its kernel ready and its first cell run."""
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(server.page_url(NOTEBOOK))
    page.wait_for_function(KERNEL_READY, timeout=60_000)
    run(page, 0)
    expect(prompt(page, 0)).to_have_text("[1]:", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def page(browser, folder, tmp_path_factory) -> Page:  # noqa: F811
    server = served("jupyterlab", folder, tmp_path_factory)
    page = opened(browser, server)
    yield page
    page.close()
    assert server.stop() == [], f"processes left after JupyterLab stopped:\n{server.log()}"


def cell(page: Page, index: int) -> Locator:
    return page.locator(".jp-CodeCell").nth(index)


def prompt(page: Page, index: int) -> Locator:
    return cell(page, index).locator(".jp-InputPrompt")


def output(page: Page, index: int) -> Locator:
    return cell(page, index).locator(".jp-OutputArea")


def run(page: Page, index: int) -> None:
    """Click into the cell's editor and press Shift+Enter."""
    cell(page, index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def interrupt(page: Page) -> None:
    """The notebook toolbar's ■ button."""
    page.locator("jp-button[data-command='notebook:interrupt-kernel']").click()


def expect_waiting_line(page: Page, index: int, counts: bool = True) -> Locator:
    """The cell's waiting line shows, names the engine and (`counts`) counts the seconds."""
    line = output(page, index).locator(".lakemagic-waiting")
    expect(line).to_have_text(re.compile(r"^running on local · (\d+% done · )?1 s \(■ or I,I interrupts\)$"),
                              timeout=10_000)
    if counts:
        expect(line).to_have_text(re.compile(r" 2 s "), timeout=10_000)
    return line


def expect_stopped(page: Page, index: int, began: float) -> None:
    """The short message in place of the line, within seconds of the interrupt, and the kernel idle again."""
    expect(output(page, index)).to_contain_text(STOPPED, timeout=15_000)
    assert time.monotonic() - began < 15
    expect(output(page, index).locator(".lakemagic-waiting")).to_have_count(0)
    expect(output(page, index)).not_to_contain_text("Traceback")
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=15_000)


def expect_next_cell_shows_its_table(page: Page) -> None:
    run(page, 2)
    table = output(page, 2).locator("table.lakemagic-table")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator("tbody tr td")).to_have_text(["1", "42", "after"])


def test_lab_interrupt_stops_the_query_and_the_next_cell_shows_its_table(page):
    run(page, 1)
    expect_waiting_line(page, 1)
    output(page, 1).screenshot(path=SCREENSHOTS / "lab-interrupt-1-waiting.png")
    began = time.monotonic()
    interrupt(page)
    expect_stopped(page, 1, began)
    output(page, 1).screenshot(path=SCREENSHOTS / "lab-interrupt-2-stopped.png")
    expect_next_cell_shows_its_table(page)


def test_lab_two_quick_interrupts_still_stop_the_query(page):
    run(page, 1)
    expect_waiting_line(page, 1)
    began = time.monotonic()
    interrupt(page)
    interrupt(page)
    expect_stopped(page, 1, began)
    expect_next_cell_shows_its_table(page)


def test_lab_interrupting_an_assignment_leaves_no_variable(page):
    run(page, 3)
    expect_waiting_line(page, 3)
    began = time.monotonic()
    interrupt(page)
    expect_stopped(page, 3, began)
    run(page, 4)
    expect(output(page, 4)).to_have_text("False")


def test_lab_after_queries_a_python_cell_s_interrupt_is_keyboard_interrupt(page):
    run(page, 5)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']")).to_have_count(1)
    page.wait_for_timeout(500)
    interrupt(page)
    expect(output(page, 5)).to_contain_text("KeyboardInterrupt", timeout=15_000)
    expect_next_cell_shows_its_table(page)


def test_lab_the_table_takes_the_waiting_line_s_place(page):
    run(page, 6)
    expect_waiting_line(page, 6, counts=False)  # a quick machine may finish before 2 s
    expect(output(page, 6).locator("table.lakemagic-table tbody tr td")).to_have_count(2, timeout=60_000)
    expect(output(page, 6).locator(".lakemagic-waiting")).to_have_count(0)
    expect(output(page, 6).locator(".jp-OutputArea-output")).to_have_count(1)  # the line's output became the table


def test_notebook7_interrupt_stops_the_query_and_the_next_cell_shows_its_table(browser, folder,  # noqa: F811
                                                                              tmp_path_factory):
    server = served("notebook", folder, tmp_path_factory)
    page = opened(browser, server)
    try:
        run(page, 1)
        expect_waiting_line(page, 1)
        began = time.monotonic()
        interrupt(page)
        expect_stopped(page, 1, began)
        expect_next_cell_shows_its_table(page)
    finally:
        page.close()
        assert server.stop() == [], f"processes left after Jupyter Notebook stopped:\n{server.log()}"
