"""The SQL of %%lakesql cells and %lakesql lines is coloured as SQL in JupyterLab 4 and Notebook 7.

The colouring is the package's front-end extension (lakemagic/highlight/, built by make), which the server
finds in the environment like any installed extension: nothing is enabled here. The notebook is
only opened, never run: colouring needs no kernel. Screenshots go to ci-artifacts/screenshots/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from browser_support import JupyterServer, save_small_png, write_notebook
from test_browser import SCREENSHOTS, browser  # noqa: F401 (the fixture: Debian's chromium, or a skip)

REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "highlight.png"  # rewritten only when missing or LAKEMAGIC_UPDATE_DOCS=1
NOTEBOOK = "highlight.ipynb"
CELL = ("%%lakesql --save busy_zones\nSELECT pickup_location_id, count(*) AS trips  -- per zone\nFROM taxi_2019_04\n"
        "WHERE fare_amount > 10.5 AND vendor_id = 'CMT'\nGROUP BY 1")
PYTHON = ('import json\nFROM = "SELECT 1"  # a Python name and string\n'
          "n = %lakesql SELECT count(*) AS n FROM busy_zones\nshape = %lakesql SUMMARIZE busy_zones")
LATER = "x = 1\nSELECT 42"  # becomes a lakesql cell in the test


@pytest.fixture(scope="module")
def notebook_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("highlight")
    write_notebook(folder / NOTEBOOK, CELL, PYTHON, LATER,
                   language_info={"name": "python", "codemirror_mode": {"name": "ipython", "version": 3}})
    return folder


@pytest.fixture(scope="module")
def server(browser, notebook_folder, tmp_path_factory):  # noqa: F811
    """`jupyter notebook`, which serves Notebook 7 and JupyterLab both (one server, one kernel: seconds saved)."""
    started = JupyterServer("notebook", notebook_folder, tmp_path_factory.mktemp("notebook-home"))
    started.start()
    yield started
    assert started.stop() == [], f"processes left after the server stopped:\n{started.log()}"


def open_notebook(browser, url: str) -> Page:  # noqa: F811
    page = browser.new_page()
    page.goto(url)
    # JupyterLab loads its SQL parser on demand: the first SQL keyword marks that it has.
    expect(cell(page, 0).locator(".tok-keyword").first).to_be_visible(timeout=60_000)
    return page


def cell(page: Page, index: int) -> Locator:
    return page.locator(".jp-CodeCell").nth(index)


def words(code_cell: Locator) -> list[list[tuple[str, str, str]]]:
    """Each line's pieces of text in order: (text, CodeMirror token classes around it, its colour on screen)."""
    return code_cell.locator(".cm-line").evaluate_all("""lines => lines.map(line => {
        const pieces = [], walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
            const text = walker.currentNode, classes = [];
            for (let node = text.parentElement; node !== line; node = node.parentElement) {
                classes.push(...Array.from(node.classList).filter(name => name.startsWith('tok-')));
            }
            pieces.push([text.textContent, classes.join(' '), getComputedStyle(text.parentElement).color]);
        }
        return pieces;
    })""")


def classes_of(line: list[tuple[str, str, str]], kind: str) -> list[str]:
    """The runs of text of token class `kind` (Python's own spans may split one SQL token into several)."""
    runs, previous = [], False
    for text, classes, _ in line:
        inside = kind in classes.split()
        if inside and previous:
            runs[-1] += text
        elif inside:
            runs.append(text)
        previous = inside
    return runs


def check_colours(page: Page) -> None:
    """What a person sees: SQL keywords, strings, numbers and comments in a lakesql cell and after
    %lakesql, in the theme's colours for them; nothing SQL in the magic's own line or in Python."""
    sql = words(cell(page, 0))
    assert all(classes == "" for _, classes, _ in sql[0]), sql[0]  # `%%lakesql --save busy_zones` is not SQL
    assert classes_of(sql[1], "tok-keyword") == ["SELECT", "AS"]  # count is a function in DuckDB, no keyword
    assert classes_of(sql[1], "tok-comment") == ["-- per zone"]
    assert classes_of(sql[2], "tok-keyword") == ["FROM"]
    assert classes_of(sql[3], "tok-keyword") == ["WHERE", "AND"]
    assert classes_of(sql[3], "tok-number") == ["10.5"] and classes_of(sql[3], "tok-string") == ["'CMT'"]
    assert classes_of(sql[4], "tok-keyword") == ["GROUP", "BY"]

    python = words(cell(page, 1))
    assert all(classes == "" for line in python[:2] for _, classes, _ in line), python[:2]
    assert classes_of(python[2], "tok-keyword") == ["SELECT", "AS", "FROM"]  # the SQL after %lakesql only
    assert classes_of(python[3], "tok-keyword") == ["SUMMARIZE"]  # DuckDB's own keywords too
    keyword_colour = next(colour for text, _, colour in python[0] if text == "import")  # Python's own keyword
    sql_colours = {colour for line in sql for text, classes, colour in line if classes == "tok-keyword"}
    assert sql_colours == {keyword_colour}
    # In Python, the string's SELECT is a string's colour and the name FROM is no keyword's.
    assert [text for text, _, colour in python[1] if colour == keyword_colour] == []


def screenshot_of_cells(page: Page, name: str) -> Path:
    """The lakesql cell and the Python cell below it."""
    first, second = cell(page, 0).bounding_box(), cell(page, 1).bounding_box()
    path = SCREENSHOTS / name
    page.screenshot(path=path, clip={"x": first["x"], "y": first["y"], "width": min(700, first["width"]),
                                     "height": second["y"] + second["height"] - first["y"]})
    return path


def test_lab_colours_lakesql_cells_and_lines_as_sql_and_follows_edits(browser, server):  # noqa: F811
    page = open_notebook(browser, f"{server.url}/lab/tree/{NOTEBOOK}?token={server.token}")
    try:
        check_colours(page)
        shot = screenshot_of_cells(page, "lab-highlight.png")
        if not DOCS_SCREENSHOT.exists() or os.environ.get("LAKEMAGIC_UPDATE_DOCS") == "1":
            save_small_png(shot, DOCS_SCREENSHOT)

        later = cell(page, 2)  # a Python cell turned into a lakesql cell, and back
        expect(later.locator(".tok-keyword")).to_have_count(0)
        later.locator(".cm-content").click()
        page.keyboard.press("Control+Home")
        page.keyboard.type("%%lakesql\n")
        expect(later.locator(".tok-keyword")).to_have_text(["SELECT"])
        page.keyboard.press("Backspace")  # `%%lakesqlx = 1`: no longer a lakesql cell
        expect(later.locator(".tok-keyword")).to_have_count(0)
    finally:
        page.close()


def test_notebook7_colours_lakesql_cells_and_lines_as_sql(browser, server):  # noqa: F811
    page = open_notebook(browser, server.page_url(NOTEBOOK))
    try:
        check_colours(page)
        screenshot_of_cells(page, "notebook7-highlight.png")
    finally:
        page.close()
