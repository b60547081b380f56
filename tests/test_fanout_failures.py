"""A fan-out whose tasks fail, on real local servers (moto S3 and `lakemagic serve`'s Invoke API).

Issue 12's "done means": the failure of one task is retried (a crashed worker) or reported (an SQL
error in one task's share of the files), and a result missing a task is never shown as complete.
The lake is a bucket of its own: the generated taxi month partitioned by date, and a small
partitioned table `readings` whose one partition holds a value that cannot be cast.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import boto3
import duckdb
import pytest
from IPython.utils.capture import capture_output

from lakelambda import protocol
from lakelambda.protocol import MAX_PAGE_ROWS
from lakelambda.sql import quote_literal
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines import Reply
from lakemagic.errors import LakeQueryError, RetryableEngineError
from lakemagic.fanout import runner
from lakemagic.locallambda import FunctionSpec, LocalLambda
from kept import kept
from lambda_fixture_handlers import CRASH_MARKERS_ENV
from servers import FUNCTION
from test_fanout_run import assert_same, invocations
import events

BUCKET = "fanout-failures"
CRASHING = "lakemagic-crash-once"
FIXTURES = f"{__package__}.lambda_fixture_handlers" if __package__ else "lambda_fixture_handlers"
TASKS = 3
READING_DAYS = (1, 2, 3, 4)
BAD_DAY = 3  # its file holds the one amount that is not a number
BAD_AMOUNT = "n/a"
TOTALS = "SELECT day, sum(CAST(amount AS INTEGER)) AS total FROM readings {where}GROUP BY day ORDER BY day"


@pytest.fixture(scope="module")
def failures_lake(aws_environment, local_taxi_lake) -> str:
    """The bucket: the taxi lake's files, and readings/day=N/data.parquet (100 amounts as text each)."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in local_taxi_lake.rglob("*.parquet"):
        if "_lakemagic" not in path.parts:
            s3.upload_file(str(path), BUCKET, path.relative_to(local_taxi_lake).as_posix())
    with tempfile.TemporaryDirectory(prefix="lakemagic-fanout-failures-") as folder:
        for day in READING_DAYS:
            bad = "range = 50" if day == BAD_DAY else "false"
            path = Path(folder) / f"readings-{day}.parquet"
            duckdb.sql(f"COPY (SELECT CASE WHEN {bad} THEN {quote_literal(BAD_AMOUNT)} ELSE (range + {day})::VARCHAR "
                       f"END AS amount FROM range(100)) TO {quote_literal(str(path))}")
            s3.upload_file(str(path), BUCKET, f"readings/day={day}/data.parquet")
    return f"s3://{BUCKET}"


def start(lake: str, aws_environment: dict, functions: dict[str, tuple[str, dict]]) -> LocalLambda:
    env = dict(aws_environment, LAKEMAGIC_LAKE=lake)
    local = LocalLambda({name: FunctionSpec(handler, env={**env, **extra}, timeout_s=60.0, max_workers=TASKS)
                         for name, (handler, extra) in functions.items()})
    local.start()
    return local


@pytest.fixture
def crashing_function(failures_lake, aws_environment, monkeypatch):
    """The lake's handler, whose worker exits the first time it is given each fan-out task; and the
    folder of its markers (one per task it crashed on)."""
    with tempfile.TemporaryDirectory(prefix="lakemagic-crash-markers-") as markers:
        local = start(failures_lake, aws_environment,
                      {CRASHING: (f"{FIXTURES}.crash_once_per_task", {CRASH_MARKERS_ENV: markers})})
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
        try:
            yield LambdaEngine(CRASHING), Path(markers)
        finally:
            local.stop()


@pytest.fixture
def lambda_shell(failures_lake, aws_environment, ipython, monkeypatch):
    """The IPython shell on the Lambda engine, over the lake's own handler, fanning out to TASKS tasks."""
    local = start(failures_lake, aws_environment, {FUNCTION: ("lakelambda.handler.handler", {})})
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
    ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
    ipython.run_line_magic("config", f"LakeMagic.function_name = {FUNCTION!r}")
    ipython.run_line_magic("config", f"LakeMagic.max_fanout = {TASKS}")
    try:
        yield ipython
    finally:
        local.stop()


def test_a_task_whose_worker_crashes_is_run_again_and_the_result_is_whole(crashing_function, capsys):
    engine, markers = crashing_function
    sql = ("SELECT payment_type, count(tip_amount) AS tipped, min(fare_amount) AS cheapest, avg(trip_distance) "
           "FROM partitioned GROUP BY 1 ORDER BY 1")
    single = client.run_query(engine, sql, {}, MAX_PAGE_ROWS, reuse=False)  # a query, not a task: no crash
    invocations(capsys)
    fanned = runner.run(engine, sql, {}, 50, (), TASKS, reuse=False)
    assert_same(fanned, single, ordered=True)
    receipt = fanned.stats.fanout
    assert receipt is not None and receipt.tasks == TASKS, receipt
    assert len(list(markers.iterdir())) == TASKS  # each task's worker did crash, once
    # Every crash was tried again (throttles the engine did not cure itself would be counted too).
    assert receipt.retries >= TASKS, receipt
    calls = invocations(capsys, outcome="")
    crashed = [line for line in calls if "outcome=Unhandled Runtime.ExitError" in line]
    ran = [line for line in calls if "outcome=ok" in line]
    assert len(crashed) == TASKS and len(ran) == 1 + TASKS, calls  # the listing, then each task's second try


def test_one_task_failing_for_good_fails_the_cell_and_shows_no_partial_result(lambda_shell):
    shell = lambda_shell
    everything, without_bad_day = TOTALS.format(where=""), TOTALS.format(where=f"WHERE day <> {BAD_DAY} ")
    with capture_output() as captured:
        shell.run_cell(f"%%lakesql --explain\n{everything}").raise_error()
    assert captured.stdout.startswith(f"Fan-out over {TASKS} tasks, reading {len(READING_DAYS)} files"), captured.stdout

    shell.user_ns["totals"] = "before"
    with capture_output() as captured:
        outcome = shell.run_cell(f"%%lakesql totals <<\n{everything}")
    error = outcome.error_in_exec
    assert isinstance(error, LakeQueryError), repr(error)
    assert error.error_type == "ConversionException" and BAD_AMOUNT in error.message, str(error)
    assert "ConversionException" in captured.stdout and BAD_AMOUNT in captured.stdout, captured.stdout
    assert shell.user_ns["totals"] == "before"  # not assigned: no frame of the other tasks' days
    with capture_output() as captured:
        outcome = shell.run_cell(f"%%lakesql\n{everything}")
    assert isinstance(outcome.error_in_exec, LakeQueryError)
    shown = [output.data for output in kept(captured.outputs)]
    assert not any("text/html" in data or "application/vnd.jupyter.widget-view+json" in data for data in shown), shown

    # The other days' share runs, fanned out, and is assigned: the failure was that one task's.
    with capture_output() as captured:
        shell.run_cell(f"%%lakesql --explain\n{without_bad_day}").raise_error()
    assert captured.stdout.startswith("Fan-out over"), captured.stdout
    shell.run_cell(f"%%lakesql totals <<\n{without_bad_day}").raise_error()
    days = [day for day in READING_DAYS if day != BAD_DAY]
    assert shell.user_ns["totals"].to_dict("list") == {
        "day": days, "total": [sum(range(day, 100 + day)) for day in days]}


class _OneFailsOthersThrottled:
    """An engine whose first task fails for good at once and whose other tasks are throttled every time."""

    name, concurrency, shares_files = "two-faced", 4, False

    def __init__(self):
        self.calls: dict[str, int] = {}

    def call(self, request: dict) -> Reply:
        file = request["files"][0]
        self.calls[file] = self.calls.get(file, 0) + 1
        if file.endswith("0.parquet"):
            return Reply(protocol.encode(protocol.ErrorAnswer("ConversionException", "cannot cast 'n/a'")))
        time.sleep(0.05)
        raise RetryableEngineError("throttled")


def test_once_a_task_fails_for_good_the_others_are_not_tried_again():
    """A fan-out that has failed pays for no more calls: its throttled tasks stop instead of retrying for seconds."""
    engine = _OneFailsOthersThrottled()
    requests = [events.task_request("SELECT 1", {}, 10, "t", [f"t/k={number}/{number}.parquet"], {"k": "BIGINT"})
                for number in range(3)]
    with pytest.raises(LakeQueryError, match="ConversionException|cannot cast"):
        runner._run_all(engine, requests, "SELECT 1", None)
    time.sleep(runner.RETRY_MAX_DELAY_S + 0.5)  # as long as any retry would have waited
    throttled = [count for file, count in engine.calls.items() if not file.endswith("0.parquet")]
    assert throttled and max(throttled) <= 2, engine.calls  # not runner.TASK_ATTEMPTS tries each
