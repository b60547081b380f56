"""04_explore's dashboard live in JupyterLab: controls, two charts and the result table, as README pictures it.

Notebooks 01 and 02 build a small lake under papermill (the dashboard reads their partitioned table and
materialized view); 04 then runs in JupyterLab in headless chromium, where its widgets are live.
Screenshots go to ci-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbconvert
import nbformat
import papermill
import pytest
from playwright.sync_api import expect

from lakemagic.cli import demo_notebooks

from browser_support import JupyterServer, save_small_png
from test_browser import KERNEL_READY, SCREENSHOTS, browser  # noqa: F401 (the fixture: Debian's chromium, or a skip)

REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "dashboard.png"  # rewritten only when missing or LAKEMAGIC_UPDATE_DOCS=1
ROWS = 300_000
NOTEBOOK = "04_explore.ipynb"


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("dashboard")
    lake = str(root / "lake")
    for name in ("01_load.ipynb", "02_views.ipynb"):
        known = papermill.inspect_notebook(str(demo_notebooks() / name))
        parameters = {key: value for key, value in {"lake": lake, "rows": ROWS}.items() if key in known}
        papermill.execute_notebook(str(demo_notebooks() / name), str(root / name), parameters=parameters,
                                   cwd=str(root), progress_bar=False, kernel_name="python3")
    papermill.execute_notebook(str(demo_notebooks() / NOTEBOOK), str(root / NOTEBOOK), parameters={"lake": lake},
                               prepare_only=True, kernel_name="python3")
    started = JupyterServer("jupyterlab", root, tmp_path_factory.mktemp("dashboard-home"))
    started.start()
    yield started
    assert started.stop() == [], f"processes left after the server stopped:\n{started.log()}"


def test_lab_shows_the_dashboard_live(browser, server):  # noqa: F811
    page = browser.new_page()
    try:
        page.goto(server.page_url(NOTEBOOK))
        page.wait_for_function(KERNEL_READY, timeout=60_000)
        page.keyboard.press("Control+b")  # the file browser away: the dashboard's two charts side by side
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
        board = page.locator(".jp-CodeCell").filter(has_text="class Dashboard").locator(".jp-OutputArea-output")
        # The last cell moves the slider to 10, from code as a drag would: one more round trip, shown in place.
        expect(board).to_contain_text("top 10 zones", timeout=180_000)
        expect(board).to_contain_text("one round trip")
        expect(board).to_contain_text("page 1 of 30")  # the table of the second round trip: 10 zones, 30 days
        expect(board.locator("img")).to_have_count(2)
        board.locator("img").last.evaluate("image => image.decode()")  # the new charts drawn, not the first ones
        expect(board.locator("table.lakemagic-table tbody tr")).to_have_count(10)
        board.scroll_into_view_if_needed()
        path = SCREENSHOTS / "lab-dashboard.png"
        board.screenshot(path=path)
        if not DOCS_SCREENSHOT.exists() or os.environ.get("LAKEMAGIC_UPDATE_DOCS") == "1":
            save_small_png(path, DOCS_SCREENSHOT)
    finally:
        page.close()


def test_nbconvert_html_of_the_executed_dashboard_shows_it_offline(browser, server, tmp_path):  # noqa: F811
    """Run by papermill, the dashboard keeps its static form alone: nbconvert's HTML, opened with every request off
    this machine refused, shows its time, both charts and its table (a saved widget would be blank there)."""
    executed = tmp_path / NOTEBOOK
    papermill.execute_notebook(str(demo_notebooks() / NOTEBOOK), str(executed), parameters={"lake": str(server.root / "lake")},
                               cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    (tmp_path / "explore.html").write_text(body)
    page = browser.new_page()
    refused = []
    page.route(re.compile(r"^https?://"), lambda route: (refused.append(route.request.url), route.abort()))
    try:
        page.goto((tmp_path / "explore.html").as_uri())
        boards = page.locator(".jp-OutputArea-output").filter(has_text="one round trip")
        expect(boards).to_have_count(2)  # as first shown, and after the slider's change
        last = boards.last
        expect(last).to_contain_text("top 10 zones")
        expect(last.locator("img")).to_have_count(2)
        expect(last.locator("table.lakemagic-table tbody tr")).to_have_count(10)
        expect(last.locator(".lakemagic-summary")).to_contain_text("showing rows 1–10 of 300 · 300 rows · query: engine")
        last.screenshot(path=SCREENSHOTS / "dashboard-nbconvert-offline.png")
    finally:
        page.close()
