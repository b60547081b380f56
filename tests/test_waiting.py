"""Waiting for a query in a real IPython shell: the live line, and a real SIGINT stopping the wait.

The Lambda path runs on the real local servers (moto S3 + `lakemagic serve`).
Outputs are read as a notebook saves them (`kept`: an update replaces the output
with its display id), so a test sees what papermill would keep.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import duckdb
import nbformat
import papermill
import pytest
from IPython.utils.capture import capture_output

from lakemagic import client, waiting
from lakemagic.errors import QueryInterrupted

from kept import kept
from servers import start_function

# Seconds of work on any machine here, and no lake file read: the cross join of two ranges.
ENDLESS = "SELECT count(*) AS n FROM range(3000000000) a, range(100) b WHERE (a.range * b.range) % 7 = 3"
INTERRUPT_AFTER_S = 2.5
# Tens of seconds of work here, but it ends (so a lost interrupt fails a test rather than hanging it).
TENS_OF_SECONDS = "SELECT count(*) AS n FROM range(1000000000) a WHERE hash(a.range) % 7 = 3"


HINTS = {"text/plain": " (Ctrl-C interrupts)", "text/html": "(■ or I,I interrupts)"}  # a terminal's, a notebook's


def shown_lines(outputs) -> list[str]:
    """The waiting lines' words, each checked to say how to interrupt in the front ends that show it."""
    lines = [output for output in outputs if "running on" in output.data.get("text/plain", "")]
    for line in lines:
        assert line.data["text/plain"].endswith(HINTS["text/plain"]) and HINTS["text/html"] in line.data["text/html"]
    return [line.data["text/plain"].removesuffix(HINTS["text/plain"]) for line in lines]


def interrupted_cell(shell, cell: str, after_s: float = INTERRUPT_AFTER_S):
    """Run `cell`, with a real SIGINT to this process `after_s` in, as the kernel's ■ sends it."""
    timer = threading.Timer(after_s, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with capture_output() as captured:
            outcome = shell.run_cell(cell)
    finally:
        timer.cancel()
    return outcome, captured, time.monotonic() - started


@pytest.fixture
def local_shell(ipython, local_taxi_lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(local_taxi_lake)!r}")
    return ipython


@pytest.fixture(scope="module")
def short_budget_function(s3_lake, aws_environment):
    """The handler behind `lakemagic serve` with a 6 s timeout, so an abandoned query ends soon on its own."""
    local = start_function(s3_lake, aws_environment, timeout_s=6.0)
    yield local
    local.stop()


@pytest.fixture
def lambda_shell(ipython, short_budget_function, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", short_budget_function.endpoint_url)
    ipython.run_line_magic("config", 'LakeMagic.engine = "lambda"')
    return ipython


def test_a_quick_query_shows_no_waiting_line(local_shell):
    with capture_output() as captured:
        assert local_shell.run_cell("%%lakesql\nSELECT 42 AS answer").success
    assert shown_lines(captured.outputs) == []
    (table,) = kept(captured.outputs)
    assert "application/vnd.jupyter.widget-view+json" in table.data


def test_the_line_counts_seconds_and_the_result_takes_its_place(local_shell):
    def slow_answer():
        time.sleep(2.3)
        return waiting.current()

    with capture_output() as captured:
        wait = waiting.Wait(local_shell.magics_manager.registry["LakeMagic"].current_engine())
        status = wait.run(slow_answer)
        wait.show(_Result())
    lines = shown_lines(captured.outputs)
    assert lines[:2] == ["running on local · 1 s", "running on local · 2 s"]
    assert status is not waiting.current()  # the call had a status of its own
    (result,) = kept(captured.outputs)  # the line's output now holds the result, and nothing of the wait
    assert result.data["text/plain"] == "the result"


class _Result:
    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": "the result"}


def test_tasks_done_of_total_show_in_the_line(local_shell):
    def fan_out():
        status = waiting.current()
        for done in range(4):
            status.tasks(done, 3)
            time.sleep(0.6)

    with capture_output() as captured, waiting.Wait(local_shell.magics_manager.registry["LakeMagic"].current_engine()) as wait:
        wait.run(fan_out)
    lines = shown_lines(captured.outputs)
    assert any("· 1 of 3 tasks done ·" in line for line in lines), lines
    assert "3 of 3 tasks done" in lines[-1] or "2 of 3 tasks done" in lines[-1]
    assert kept(captured.outputs) == []  # emptied when the cell ends without showing anything there


@pytest.mark.parametrize("target", ["", "x <<"], ids=["table", "variable"])
def test_interrupt_stops_duckdb_at_once_and_the_kernel_goes_on(local_shell, target):
    outcome, captured, took = interrupted_cell(local_shell, f"%%lakesql {target}\n{ENDLESS}")
    assert isinstance(outcome.error_in_exec, QueryInterrupted)
    assert took < INTERRUPT_AFTER_S + 1.5
    assert captured.stdout.strip() == "QueryInterrupted: interrupted after 2 s; the local engine stopped the query"
    assert kept(captured.outputs) == []  # nothing live is left in the saved cell
    # The line showed and counted (its first tick may come late while DuckDB holds both cores: "2 s").
    assert any(line in ("running on local · 1 s", "running on local · 2 s") for line in shown_lines(captured.outputs))
    engine = local_shell.magics_manager.registry["LakeMagic"].current_engine()
    assert not engine._handler._running  # DuckDB stopped: no call of the handler still runs

    with capture_output():
        assert local_shell.run_cell("x = %lakesql SELECT count(*) AS n FROM taxi_2019_04").success
    assert local_shell.user_ns["x"].n[0] == 20_000


def test_an_interrupt_during_the_checks_still_stops_the_query_that_follows(local_shell):
    """The kernel's interrupt may land between statements (here in Python before the query): it is not lost."""
    engine = local_shell.magics_manager.registry["LakeMagic"].current_engine()

    def checks_then_query():
        time.sleep(1.5)  # the interrupt comes meanwhile, when no statement runs
        return client.query_frame(engine, TENS_OF_SECONDS)

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with capture_output(), pytest.raises(QueryInterrupted, match="^interrupted after 0 s; the local engine stopped"):
            waiting.Wait(engine).run(checks_then_query)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 1.5 + 1.5
    assert not engine._handler._running


def test_a_second_interrupt_stops_a_call_the_engine_does_not(local_shell):
    """A call busy in Python (no statement of the engine's to interrupt) stops at the interrupt after next."""
    engine = local_shell.magics_manager.registry["LakeMagic"].current_engine()

    def python_that_runs_on():
        for _ in range(2000):  # about 20 s
            time.sleep(0.01)

    timers = [threading.Timer(after, os.kill, (os.getpid(), signal.SIGINT))
              for after in (0.5, 0.5 + waiting.STOP_WITHIN_S + 0.5)]
    started = time.monotonic()
    for timer in timers:
        timer.start()
    try:
        with capture_output(), pytest.raises(QueryInterrupted, match="did not stop within 5 s, so the second interrupt"):
            waiting.Wait(engine).run(python_that_runs_on)
    finally:
        for timer in timers:
            timer.cancel()
    assert time.monotonic() - started < waiting.STOP_WITHIN_S + 2.5


def test_after_a_query_the_interrupt_stops_plain_python_again(local_shell):
    with capture_output():
        assert local_shell.run_cell("x = %lakesql SELECT 42 AS answer").success
    outcome, _, took = interrupted_cell(local_shell, "import time\nfor _ in range(100):\n    time.sleep(0.05)", after_s=0.5)
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)
    assert took < 4.5  # stopped by the interrupt: the loop runs 5 s (a loaded machine may send it late)


@pytest.mark.parametrize("engine", ["local", "lambda"])
def test_a_quick_second_interrupt_is_the_first_one_until_the_cell_ends(engine, request):
    """Two quick ■: the second may come once the query has stopped, while the cell ends (its message shown); it
    is the same interrupt, not a KeyboardInterrupt in IPython's code, on either engine's path (DuckDB stopped on
    the cell's thread; a Lambda call left on its own). The next cell's interrupt works again."""
    shell = request.getfixturevalue(f"{engine}_shell")
    cell = ("import time\nfrom lakemagic.errors import QueryInterrupted\n"
            f"try:\n    get_ipython().run_line_magic('lakesql', {ENDLESS!r})\n"
            "except QueryInterrupted:\n    stopped = True\ntime.sleep(1.5)")
    second = threading.Timer(INTERRUPT_AFTER_S + 0.5, os.kill, (os.getpid(), signal.SIGINT))
    second.start()
    try:
        outcome, _, _ = interrupted_cell(shell, cell)
    finally:
        second.cancel()
    assert outcome.success, outcome.error_in_exec
    assert shell.user_ns["stopped"] and shell.user_ns.get("time")  # stopped, then the cell ran on
    outcome, _, took = interrupted_cell(shell, "import time\nfor _ in range(100):\n    time.sleep(0.05)", after_s=0.5)
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)
    assert took < 4.5  # stopped by the interrupt: the loop runs 5 s (a loaded machine may send it late)


@pytest.fixture(scope="module")
def row_group_lake(tmp_path_factory):
    """A lake of one table in 98 row groups, which DuckDB's scan reports its progress through."""
    lake = tmp_path_factory.mktemp("row-groups")
    (lake / "dataset").mkdir()
    duckdb.sql(f"COPY (SELECT range AS i, CAST(range AS VARCHAR) AS s FROM range(200000)) "
               f"TO '{lake / 'dataset' / 'numbers.parquet'}' (ROW_GROUP_SIZE 2048)")
    return lake


def test_the_embedded_engine_shows_duckdbs_own_progress_then_the_result(ipython, row_group_lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(row_group_lake)!r}")
    with capture_output() as captured:  # seconds of hashing, row group after row group
        assert ipython.run_cell("%%lakesql\nSELECT count(*) AS n FROM numbers WHERE md5(repeat(s, 4000)) < '1'").success
    percents = [float(line.split("% done")[0].rsplit("· ", 1)[1]) for line in shown_lines(captured.outputs)
                if "% done" in line]
    # DuckDB may say 100% while it hands the result over; some step before that is shown
    assert any(0 < percent < 100 for percent in percents), shown_lines(captured.outputs)
    assert all(0 < percent <= 100 for percent in percents) and percents == sorted(percents)
    (table,) = kept(captured.outputs)  # the result took the line's place
    expected = duckdb.sql(f"SELECT count(*) FROM '{row_group_lake}/dataset/numbers.parquet' "
                          "WHERE md5(repeat(s, 4000)) < '1'").fetchone()[0]
    assert f">{expected:,}</td>" in table.data["text/html"]


# About 2-6 s here, then a conversion error once the count is known.
SLOW_COUNT = "SELECT count(*) AS n FROM range(40000000) a, range(10) b WHERE (a.range * b.range) % 7 = 3"
FAILS_LATE = ("SELECT CAST('x' || count(*) AS INTEGER) AS n FROM range(40000000) a, range(10) b "
              "WHERE (a.range * b.range) % 7 = 3")


def test_an_error_after_a_wait_still_fails_the_cell_and_leaves_only_itself(local_shell):
    with capture_output() as captured:
        outcome = local_shell.run_cell(f"%%lakesql\n{FAILS_LATE}")
    assert not outcome.success
    assert any(line.startswith("running on local · ") for line in shown_lines(captured.outputs))  # it did wait
    assert captured.stdout.startswith("ConversionException")
    assert kept(captured.outputs) == []


def test_papermill_keeps_the_table_and_nothing_of_the_wait(tmp_path, local_taxi_lake):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(f"%load_ext lakemagic\n%config LakeMagic.lake = {str(local_taxi_lake)!r}"),
        nbformat.v4.new_code_cell(f"%%lakesql\n{SLOW_COUNT}"),
        nbformat.v4.new_code_cell(f"%%lakesql\n{FAILS_LATE}"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "slow.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(tmp_path / "slow.ipynb"), str(tmp_path / "ran.ipynb"), progress_bar=False,
                                   kernel_name="python3", cwd=str(tmp_path))
    assert failure.value.ename == "LakeQueryError"
    slow, failed = [cell for cell in nbformat.read(tmp_path / "ran.ipynb", 4).cells if "%%lakesql" in cell.source]
    (table,) = slow.outputs
    assert "application/vnd.jupyter.widget-view+json" not in table["data"]  # headless: the static table alone
    assert f">{duckdb.sql(SLOW_COUNT).fetchone()[0]:,}</td>" in table["data"]["text/html"]
    assert all("running on" not in str(output) for output in slow.outputs + failed.outputs)
    assert failed.outputs[-1]["output_type"] == "error"


def test_on_lambda_the_wait_stops_at_once_and_the_late_answer_is_dropped(lambda_shell, short_budget_function):
    outcome, captured, took = interrupted_cell(lambda_shell, f"%%lakesql\n{ENDLESS}")
    assert isinstance(outcome.error_in_exec, QueryInterrupted)
    assert took < INTERRUPT_AFTER_S + 1
    assert captured.stdout.strip().startswith("QueryInterrupted: stopped waiting after 2 s; the lambda engine")
    lines = shown_lines(captured.outputs)
    # No answer yet in this kernel (the first tick may come late on a loaded machine: "2 s").
    assert lines[0] in ("running on lambda · likely starting a container · 1 s",
                        "running on lambda · likely starting a container · 2 s")
    assert kept(captured.outputs) == []

    # The next query is answered while the abandoned one still runs in the function.
    with capture_output() as captured:
        assert lambda_shell.run_cell("%%lakesql\nSELECT 42 AS answer").success
    (table,) = kept(captured.outputs)
    assert ">42</td>" in table.data["text/html"]

    # After the function's time budget ended the abandoned query, nothing of it shows and queries go on.
    time.sleep(6)
    with capture_output() as captured:
        assert lambda_shell.run_cell("y = %lakesql SELECT count(*) AS n FROM taxi_2019_04").success
    assert captured.outputs == [] and captured.stdout == ""
    assert "Traceback" not in captured.stderr  # only `lakemagic serve`'s own log lines, from this process
    assert lambda_shell.user_ns["y"].n[0] == 20_000
