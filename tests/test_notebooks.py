"""Notebooks under papermill: the demo runs and reads well, and a failing query fails the run."""

from __future__ import annotations

import nbformat
import papermill
import pytest

from lakemagic.cli import NOTEBOOKS
from lakemagic.taxi import build_lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lake")
    build_lake(str(folder), rows=20_000)
    return folder


def execute(source, target, lake):
    return papermill.execute_notebook(
        str(source), str(target), parameters={"engine": "local", "lake": str(lake)}, progress_bar=False, kernel_name="python3"
    )


def test_quickstart_runs_and_keeps_static_tables(lake, tmp_path):
    executed = execute(NOTEBOOKS / "quickstart.ipynb", tmp_path / "out.ipynb", lake)
    tables = [
        output["data"]
        for cell in executed.cells
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert len(tables) == 3
    assert all("text/html" in data and "showing rows 1–" in data["text/html"] for data in tables)
    assert "of 265" in tables[0]["text/html"]  # every pickup location, paged


def test_a_failing_query_fails_the_run_with_the_short_error(lake, tmp_path):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('engine = "local"\nlake = ""')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell("%load_ext lakemagic\n%config LakeMagic.lake = lake"),
        nbformat.v4.new_code_cell("%%lakesql\nSELECT no_such_column FROM taxi_2019_04"),
        nbformat.v4.new_code_cell("reached = True"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "failing.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        execute(tmp_path / "failing.ipynb", tmp_path / "failed.ipynb", lake)
    assert failure.value.ename == "LakeQueryError"
    assert "BinderException" in failure.value.evalue or "no_such_column" in failure.value.evalue
    cells = nbformat.read(tmp_path / "failed.ipynb", 4).cells
    failed_cell = next(cell for cell in cells if cell.source.startswith("%%lakesql"))
    error_output = failed_cell.outputs[-1]
    assert error_output["output_type"] == "error"
    assert cells[-1].execution_count is None  # the run stopped at the failure
    assert error_output["traceback"][0].startswith("BinderException")
    assert not any("File " in line for line in error_output["traceback"])
