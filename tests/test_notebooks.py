"""The demo notebooks under papermill, on the embedded engine and on the Lambda path, checked by what they produce."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import duckdb
import nbformat
import pandas as pd
import papermill
import pytest

from lakemagic.cli import DEMO_NOTEBOOKS, demo_notebooks

from servers import BUCKET

NOTEBOOKS = demo_notebooks()
ROWS = 20_000
TOP_200 = """SELECT pickup_location_id, count(*) AS trips, round(sum(total_amount), 2) AS revenue
FROM read_parquet('{dataset}') GROUP BY pickup_location_id ORDER BY trips DESC, pickup_location_id LIMIT 200"""


def run_demo(engine: str, lake: str, folder) -> dict[str, nbformat.NotebookNode]:
    executed = {}
    for name in DEMO_NOTEBOOKS:
        known = papermill.inspect_notebook(str(NOTEBOOKS / name))
        parameters = {key: value for key, value in {"engine": engine, "lake": lake, "rows": ROWS}.items() if key in known}
        executed[name] = papermill.execute_notebook(
            str(NOTEBOOKS / name), str(folder / name), parameters=parameters, cwd=str(folder),
            progress_bar=False, kernel_name="python3",
        )
    return executed


def check_outputs(executed: dict[str, nbformat.NotebookNode]) -> None:
    # Run headless, a result is its static table alone (nbconvert draws it offline); no widget's or progress
    # bar's text is left behind.
    outputs = [output for cell in executed["01_load.ipynb"].cells for output in cell.get("outputs", [])]
    tables = [output["data"]["text/html"] for output in outputs if "lakemagic-table" in output.get("data", {}).get("text/html", "")]
    assert len(tables) == 3 and all("showing rows 1–" in table for table in tables)
    for notebook in executed.values():
        left = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
        assert "Progress(" not in left and "ResultTable(" not in left
    assert not any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in outputs)
    assert "of 265" in tables[0]  # every pickup location, paged
    chart_cells = [cell for cell in executed["03_charts.ipynb"].cells
                   if cell.cell_type == "code" and ("%lakeplot" in cell.source or "plot_frame(" in cell.source)]
    assert len(chart_cells) == 4
    for cell in chart_cells:
        assert any("image/png" in output.get("data", {}) for output in cell.outputs), cell.source
    explored = executed["04_explore.ipynb"].cells
    catalog = next(cell for cell in explored if cell.source == "%lakesql --tables").outputs[0]["data"]["text/plain"]
    assert "my_view" in catalog and "materialized view" in catalog and "date" in catalog
    # The dashboard, readable without widgets: its round trip's time, both charts and the result table, before
    # and after the slider's change, which ran the query again; nothing printed by its observers.
    boards = [output["data"]["text/html"] for cell in explored for output in cell.get("outputs", [])
              if "one round trip" in output.get("data", {}).get("text/html", "")]
    assert len(boards) == 2 and "top 5 zones" in boards[0] and "top 10 zones" in boards[1]
    assert all(board.count("data:image/png;base64,") == 2 and "lakemagic-table" in board for board in boards)
    assert not any(output.get("name") == "stdout" for cell in explored for output in cell.get("outputs", []))
    structure = [cell for cell in explored if cell.cell_type == "code" and cell.source.startswith("%lakeplot")]
    assert len(structure) == 3 and all(any("image/png" in output.get("data", {}) for output in cell.outputs)
                                       for cell in structure)


def check_dashboard(my_view: str, dataset: str) -> None:
    artifact = duckdb.sql(f"FROM read_parquet('{my_view}')").df()
    assert len(artifact) == 200
    assert artifact.trips.is_monotonic_decreasing
    pd.testing.assert_frame_equal(artifact, duckdb.sql(TOP_200.format(dataset=dataset)).df())


def test_demo_on_the_embedded_engine(tmp_path):
    lake = tmp_path / "lake"
    executed = run_demo("local", str(lake), tmp_path)
    check_outputs(executed)
    check_dashboard(f"{lake}/dashboard/my_view.parquet", f"{lake}/dataset/taxi_2019_04.parquet")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["my_view.sql", "trips_by_pickup_location.sql"]


def test_demo_on_the_lambda_path(tmp_path, lambda_endpoint, s3_lake):
    executed = run_demo("lambda", s3_lake, tmp_path)
    check_outputs(executed)
    s3 = boto3.client("s3")
    for key in ("dashboard/my_view.parquet", "dataset/taxi_2019_04.parquet"):
        s3.download_file(BUCKET, key, str(tmp_path / key.replace("/", "_")))
    check_dashboard(str(tmp_path / "dashboard_my_view.parquet"), str(tmp_path / "dataset_taxi_2019_04.parquet"))
    footer = "".join(str(output.get("data", {}).get("text/html", ""))
                     for cell in executed["01_load.ipynb"].cells for output in cell.get("outputs", []))
    assert "billed" in footer  # the tables came from the function


def test_a_failing_query_fails_the_run_with_the_short_error(tmp_path, local_taxi_lake):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('engine = "local"\nlake = ""')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell("%load_ext lakemagic\n%config LakeMagic.engine = engine\n%config LakeMagic.lake = lake"),
        nbformat.v4.new_code_cell("%%lakesql\nSELECT no_such_column FROM taxi_2019_04"),
        nbformat.v4.new_code_cell("reached = True"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "failing.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(tmp_path / "failing.ipynb"), str(tmp_path / "failed.ipynb"),
                                   parameters={"engine": "local", "lake": str(local_taxi_lake)}, progress_bar=False)
    assert failure.value.ename == "LakeQueryError"
    cells = nbformat.read(tmp_path / "failed.ipynb", 4).cells
    failed_cell = next(cell for cell in cells if cell.source.startswith("%%lakesql"))
    error_output = failed_cell.outputs[-1]
    assert error_output["output_type"] == "error"
    assert error_output["traceback"][0].startswith("BinderException")
    assert not any("File " in line for line in error_output["traceback"])
    assert cells[-1].execution_count is None  # the run stopped at the failure


def test_lakemagic_demo_says_what_it_ran_and_prints_no_kernel_warnings(tmp_path):
    output = tmp_path / "executed"
    ran = subprocess.run([sys.executable, "-m", "lakemagic.cli", "demo", "--lake", str(tmp_path / "lake"),
                          "--rows", str(ROWS), "--output", str(output)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""  # no "Kernel is running over TCP without encryption", nor any other warning
    assert f"running 01_load.ipynb on the embedded engine...\ngenerating {ROWS:,} trips...\n" in ran.stdout  # as it goes
    assert f"the executed notebooks are in {output}:\n" in ran.stdout
    for name in DEMO_NOTEBOOKS:
        assert f"  {output / name}\n" in ran.stdout
        assert (output / name).exists()
    assert f"jupyter-lab {output}" in ran.stdout  # how to open them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executed", "lake"]  # nothing else left behind
