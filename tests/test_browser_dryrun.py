"""%%lakesql --dry-run in JupyterLab 4 and Notebook 7: what a query over the partitioned table would read,
its fan-out and its cost on the Lambda path (lakemagic serve over moto S3), shown as a table. Nothing runs:
the function is asked for the estimate and the listing only. Screenshots go to ci-artifacts/screenshots/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser_support import JupyterServer, save_small_png, write_notebook
from test_browser import SCREENSHOTS, browser, open_and_run_all  # noqa: F401 (the fixture: Debian's chromium, or a skip)

REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "dryrun.png"  # rewritten only when missing or LAKEMAGIC_UPDATE_DOCS=1
NOTEBOOKS = {"lab": "dryrun-lab.ipynb", "notebook7": "dryrun-notebook7.ipynb"}  # a kernel each: both run all
QUERY = ("SELECT payment_type, avg(tip_amount) AS tip\nFROM partitioned\n"
         "WHERE date BETWEEN DATE '2019-04-08' AND DATE '2019-04-14'\nGROUP BY 1")


@pytest.fixture(scope="module")
def server(browser, lambda_endpoint, tmp_path_factory):  # noqa: F811
    """`jupyter notebook` (Notebook 7 and JupyterLab both), its kernels reaching the local Lambda as this process does."""
    root = tmp_path_factory.mktemp("dryrun")
    for name in NOTEBOOKS.values():
        write_notebook(root / name, "%load_ext lakemagic\n%config LakeMagic.engine = 'lambda'",
                       f"%%lakesql --dry-run\n{QUERY}")
    started = JupyterServer("notebook", root, tmp_path_factory.mktemp("dryrun-home"))
    started.start()
    yield started
    assert started.stop() == [], f"processes left after the server stopped:\n{started.log()}"


def check_dry_run(page: Page, name: str) -> Path:
    """The estimate a person reads: a week of the month's 30 partitions, fanned out one task a file, priced."""
    output = page.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output")
    expect(output).to_contain_text("Dry run on the lambda engine: nothing ran", timeout=60_000)
    expect(output).to_contain_text("Reads 7 of 30 files")
    expect(output).to_contain_text("Fans out: 1 invocation lists partitioned, then 7 tasks read its files.")
    expect(output).to_contain_text("Costs about $")
    cells = output.locator("table.lakemagic-dryrun-table tbody td").all_text_contents()
    assert cells[:3] == ["partitioned", "7", "30"], cells
    path = SCREENSHOTS / name
    box = page.locator(".jp-CodeCell").nth(1).bounding_box()
    page.screenshot(path=path, clip={"x": box["x"], "y": box["y"], "width": min(900, box["width"]),
                                     "height": box["height"]})
    return path


def test_lab_shows_what_a_query_would_read_and_cost(browser, server):  # noqa: F811
    page = browser.new_page()
    try:
        open_and_run_all(page, f"{server.url}/lab/tree/{NOTEBOOKS['lab']}?token={server.token}", cells=2)
        shot = check_dry_run(page, "lab-dryrun.png")
        if not DOCS_SCREENSHOT.exists() or os.environ.get("LAKEMAGIC_UPDATE_DOCS") == "1":
            save_small_png(shot, DOCS_SCREENSHOT)
    finally:
        page.close()


def test_notebook7_shows_what_a_query_would_read_and_cost(browser, server):  # noqa: F811
    page = browser.new_page()
    try:
        open_and_run_all(page, server.page_url(NOTEBOOKS["notebook7"]), cells=2)
        check_dry_run(page, "notebook7-dryrun.png")
    finally:
        page.close()
