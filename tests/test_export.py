"""`--export PATH` and `VAR << --as arrow|polars` in a real IPython shell, on the embedded engine and on the
function behind the local Lambda endpoint (its result fetched with the URL it presigned on the S3 server)."""

from __future__ import annotations

import sys

import duckdb
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from lakemagic import client, export
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError

from servers import FUNCTION

SQL = "SELECT * FROM taxi_2019_04 ORDER BY pickup_at, dropoff_at, total_amount, pickup_location_id"


@pytest.fixture(params=["embedded", "lambda"])
def shell(request, ipython, local_taxi_lake, monkeypatch):
    if request.param == "lambda":
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", request.getfixturevalue("storing_function").endpoint_url)
        ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
        ipython.run_line_magic("config", f"LakeMagic.function_name = {FUNCTION!r}")
    else:
        ipython.run_line_magic("config", f"LakeMagic.lake = {str(local_taxi_lake)!r}")
    return ipython


def expected(local_taxi_lake) -> pd.DataFrame:
    sql = SQL.replace("taxi_2019_04", f"'{local_taxi_lake}/dataset/taxi_2019_04.parquet'")
    return duckdb.sql(sql).df()


def run(shell, cell: str):
    with capture_output() as captured:
        outcome = shell.run_cell(cell)
    outcome.raise_error()
    return captured


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_export_writes_the_whole_result_to_a_local_file(shell, local_taxi_lake, tmp_path, suffix):
    target = tmp_path / f"trips.{suffix}"
    captured = run(shell, f"%%lakesql --export {target}\n{SQL}")
    assert any(f"exported 20,000 rows to {target}" in output.data.get("text/html", "") for output in captured.outputs)
    written = duckdb.sql(f"SELECT * FROM '{target}'").df()
    want = expected(local_taxi_lake)
    if suffix == "csv":  # CSV keeps values, not types: compare as DuckDB reads both back
        want = duckdb.sql("SELECT * FROM want").df().astype(str)
        written = written.astype(str)
    pd.testing.assert_frame_equal(written, want, check_dtype=suffix == "parquet")
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_a_failed_export_leaves_no_file(local_taxi_lake, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEMAGIC_INLINE_RESULT_BYTES", "0")
    lake = tmp_path / "lake"
    lake.mkdir()
    result = client.run_query(EmbeddedEngine(str(lake)), "SELECT range AS n FROM range(100000)")
    (lake / "_lakemagic" / "results" / f"{result.result_id}.parquet").unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(LakeQueryError, match="ResultNotFound"):
        export.write(result, str(out / "n.parquet"))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("cell, problem", [
    ("%%lakesql --export trips.json\nSELECT 1", "export to a .parquet or .csv file"),
    ("%%lakesql --export /no/such/folder/t.csv\nSELECT 1", "there is no folder /no/such/folder"),
    ("%%lakesql --as arrow\nSELECT 1", "--as arrow gives the whole result to a variable"),
])
def test_export_and_as_refuse_what_they_cannot_do_before_the_query_runs(shell, cell, problem):
    with capture_output():
        outcome = shell.run_cell(cell)
    assert isinstance(outcome.error_in_exec, UsageError) and problem in str(outcome.error_in_exec)


@pytest.mark.parametrize("kind, package", [("arrow", "pyarrow"), ("polars", "polars")])
def test_as_arrow_or_polars_gives_duckdbs_own_frame(shell, local_taxi_lake, kind, package):
    pytest.importorskip(package)
    run(shell, f"%%lakesql --as {kind} trips <<\n{SQL}")
    frame = shell.user_ns["trips"]
    want = duckdb.sql(SQL.replace("taxi_2019_04", f"'{local_taxi_lake}/dataset/taxi_2019_04.parquet'"))
    if kind == "arrow":
        assert frame.equals(want.to_arrow_table())
    else:
        assert frame.equals(want.pl())


@pytest.mark.parametrize("kind, package", [("arrow", "pyarrow"), ("polars", "polars")])
def test_as_names_the_package_that_is_missing(shell, monkeypatch, kind, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed: importing it fails
    with capture_output():
        outcome = shell.run_cell(f"%%lakesql --as {kind} x <<\nSELECT 1")
    assert isinstance(outcome.error_in_exec, UsageError)
    assert f"needs the {package} package" in str(outcome.error_in_exec) and "x" not in shell.user_ns
