"""The magics as a notebook user meets them, in a real IPython shell over a generated taxi lake."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from lakemagic.errors import LakeQueryError, ParameterError
from lakemagic.magic import LakeMagic

from kept import kept

TOP_LOCATIONS = "SELECT pickup_location_id, count(*) AS trips FROM taxi_2019_04 GROUP BY 1 ORDER BY 2 DESC, 1"


@pytest.fixture
def lake(local_taxi_lake):
    return local_taxi_lake


@pytest.fixture
def shell(ipython, lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(lake)!r}")
    return ipython


def direct(lake, sql: str) -> pd.DataFrame:
    """The same query straight on DuckDB, to compare against."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW taxi_2019_04 AS FROM '{lake}/dataset/taxi_2019_04.parquet'")
    return con.sql(sql).df()


def run(shell, cell: str):
    with capture_output() as captured:
        outcome = shell.run_cell(cell)
    return outcome, captured


def test_cell_magic_shows_a_paged_table_with_a_static_form(shell, lake):
    outcome, captured = run(shell, f"%%lakesql\n{TOP_LOCATIONS}")
    assert outcome.success
    (output,) = kept(captured.outputs)
    assert "application/vnd.jupyter.widget-view+json" in output.data
    html = output.data["text/html"]
    assert "showing rows 1–50 of 265" in html
    assert "pickup_location_id" in html and "BIGINT" in html
    expected_top = direct(lake, TOP_LOCATIONS).iloc[0]
    assert f">{expected_top.trips:,}</td>" in html
    assert "265 rows × 2 columns" in output.data["text/plain"]


def test_assignment_fetches_the_whole_result_as_a_dataframe(shell, lake):
    outcome, captured = run(shell, "%%lakesql df <<\nSELECT * FROM taxi_2019_04 ORDER BY pickup_at, dropoff_at, fare_amount")
    assert outcome.success
    frame = shell.user_ns["df"]
    expected = direct(lake, "SELECT * FROM taxi_2019_04 ORDER BY pickup_at, dropoff_at, fare_amount")
    pd.testing.assert_frame_equal(frame, expected)
    assert all("text/html" not in output.data for output in captured.outputs)


def test_line_magic_returns_the_same_dataframe(shell, lake):
    outcome, _ = run(shell, f"x = %lakesql {TOP_LOCATIONS}")
    assert outcome.success
    pd.testing.assert_frame_equal(shell.user_ns["x"], direct(lake, TOP_LOCATIONS))


def test_notebook_variables_bind_as_parameters(shell, lake):
    shell.user_ns["location"] = 132
    shell.user_ns["payment"] = "1' OR '1'='1"
    outcome, _ = run(shell, "x = %lakesql SELECT count(*) AS n FROM taxi_2019_04 WHERE pickup_location_id = $location")
    assert outcome.success
    expected = direct(lake, "SELECT count(*) AS n FROM taxi_2019_04 WHERE pickup_location_id = 132")
    assert shell.user_ns["x"].n[0] == expected.n[0] > 0
    outcome, _ = run(shell, "x = %lakesql SELECT count(*) AS n FROM taxi_2019_04 WHERE payment_type = $payment")
    assert outcome.success
    assert shell.user_ns["x"].n[0] == 0  # the injected text stayed a value


def test_missing_variable_is_a_short_error_naming_it(shell):
    outcome, captured = run(shell, "%%lakesql\nSELECT * FROM taxi_2019_04 WHERE pickup_location_id = $no_such_variable")
    assert isinstance(outcome.error_in_exec, ParameterError)
    assert "no_such_variable" in captured.stdout
    assert "Traceback" not in captured.stdout + captured.stderr


def test_sql_error_is_short_points_at_the_sql_and_still_fails_the_cell(shell):
    outcome, captured = run(shell, "%%lakesql\nSELECT pickup_location_id,\n       no_such_column\nFROM taxi_2019_04")
    assert isinstance(outcome.error_in_exec, LakeQueryError)
    text = captured.stdout
    assert "BinderException" in text and "no_such_column" in text
    # LINE counts the cell's lines as they show: the %%lakesql line is line 1, the bad name on line 3
    assert "LINE 3:        no_such_column" in text
    caret_line = text.splitlines()[text.splitlines().index("LINE 3:        no_such_column") + 1]
    assert caret_line.index("^") == len("LINE 3:        ")
    assert "Traceback" not in text
    # The kernel is fine afterwards.
    outcome, _ = run(shell, "x = %lakesql SELECT 1 AS one")
    assert outcome.success and shell.user_ns["x"].one[0] == 1


def test_a_line_magic_error_points_at_its_one_line(shell):
    outcome, captured = run(shell, "x = 1\ny = %lakesql SELECT pickup_location_id, no_such_column FROM taxi_2019_04")
    assert isinstance(outcome.error_in_exec, LakeQueryError)
    assert "LINE 1: SELECT pickup_location_id, no_such_column FROM taxi_2019_04" in captured.stdout


def test_page_size_comes_from_config_and_from_the_option(shell):
    shell.run_line_magic("config", "LakeMagic.page_size = 10")
    _, captured = run(shell, f"%%lakesql\n{TOP_LOCATIONS}")
    assert "showing rows 1–10 of 265" in kept(captured.outputs)[0].data["text/html"]
    _, captured = run(shell, f"%%lakesql --page-size 25\n{TOP_LOCATIONS}")
    assert "showing rows 1–25 of 265" in kept(captured.outputs)[0].data["text/html"]


def test_environment_gives_the_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEMAGIC_LAKE", str(tmp_path))
    monkeypatch.setenv("LAKEMAGIC_PAGE_SIZE", "7")
    magic = LakeMagic(shell=None)
    assert (magic.engine, magic.lake, magic.page_size) == ("local", str(tmp_path), 7)


def test_text_before_the_cell_sql_is_a_usage_error(shell):
    outcome, captured = run(shell, "%%lakesql SELECT 1\nSELECT 2")
    assert outcome.error_in_exec is not None
    assert "UsageError" in captured.stderr and "VAR <<" in captured.stderr


def test_options_are_split_from_the_sql_by_the_magics_own_parser(shell):
    """Abbreviations argparse accepts work, and the SQL after the options reaches the engine untouched."""
    frame = shell.run_line_magic("lakesql", "--page 5 SELECT '--save x' AS text, 42 AS answer")
    assert frame.to_dict("records") == [{"text": "--save x", "answer": 42}]
    outcome, captured = run(shell, "%%lakesql --page-s 3\nSELECT * FROM range(10)")
    assert outcome.success and "showing rows 1–3 of 10" in kept(captured.outputs)[0].data["text/html"]
    outcome, captured = run(shell, "%lakesql --page-size")
    assert outcome.error_in_exec is not None and "UsageError" in captured.stderr


def test_a_missing_lake_folder_is_a_clear_error(shell, tmp_path):
    shell.run_line_magic("config", f"LakeMagic.lake = {str(tmp_path / 'nowhere')!r}")
    outcome, captured = run(shell, "%lakesql SELECT 1")
    assert "the lake folder" in captured.stdout and "lakemagic load" in captured.stdout
    assert "Traceback" not in captured.stdout
    assert not (tmp_path / "nowhere").exists()  # nothing created by the failed attempt
