"""LambdaEngine through real boto3 against the local Lambda: answers, figures, and failures as one sentence.

Every call goes over HTTP to LocalLambda (or, for errors only AWS itself can
produce, a tiny server answering like it); boto3 is never mocked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pandas as pd
import pytest

from lakelambda import protocol
from lakemagic.engines import aws_lambda as lambda_engine
from lakemagic.client import run_query
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import EngineError, LakeQueryError
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.locallambda import SYNC_RESPONSE_LIMIT_BYTES, FunctionSpec, LocalLambda

FIXTURES = f"{__package__}.lambda_fixture_handlers" if __package__ else "lambda_fixture_handlers"
SQL = "SELECT * FROM trips ORDER BY trip_id"


def record_start_then_sleep(event, context):
    """A handler that leaves one line in event["path"] per invocation, then sleeps."""
    with open(event["path"], "a") as starts:
        starts.write("started\n")
    time.sleep(event["sleep"])


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    (lake / "dataset").mkdir()
    duckdb.sql(
        "COPY (SELECT i AS trip_id, 'zone ' || (i % 7) AS zone, i * 1.25 AS fare, "
        "DATE '2024-01-01' + i::INTEGER AS day, TIMESTAMP '2024-01-01 08:00' + to_minutes(i) AS pickup "
        f"FROM range(95) t(i)) TO '{lake / 'dataset' / 'trips.parquet'}' (FORMAT parquet)"
    )
    return str(lake)


@pytest.fixture(scope="module")
def local(lake):
    functions = {
        # These tests page through stored results: none is small enough to travel inline.
        "lakemagic": FunctionSpec("lakelambda.handler.handler", memory_mb=1024,
                                  env={"LAKEMAGIC_LAKE": lake, "LAKEMAGIC_INLINE_RESULT_BYTES": "0"}),
        "lakemagic-behave": FunctionSpec(f"{FIXTURES}.behave", timeout_s=10),
        "lakemagic-single": FunctionSpec(f"{FIXTURES}.behave", max_workers=1),
        "lakemagic-big": FunctionSpec(f"{FIXTURES}.big_response"),
        "lakemagic-describe": FunctionSpec(f"{FIXTURES}.describe"),
        "lakemagic-once": FunctionSpec(f"{__name__}.record_start_then_sleep", timeout_s=1),
    }
    with LocalLambda(functions) as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials, and nothing from this machine's AWS setup or instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def endpoint(local, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
    return local.endpoint_url


def expected_frame(lake: str, sql: str) -> pd.DataFrame:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW trips AS SELECT * FROM '{lake}/dataset/trips.parquet'")
    return con.sql(sql).df()


def engine_error(engine: LambdaEngine, request: dict) -> str:
    """The EngineError's message, checked to be one line with no botocore exception behind it."""
    with pytest.raises(EngineError) as caught:
        engine.call(request)
    message = str(caught.value)
    assert message and "\n" not in message, message
    chained = caught.value.__cause__ or (None if caught.value.__suppress_context__ else caught.value.__context__)
    assert chained is None, chained
    return message


# --- answers -------------------------------------------------------------------------


def test_query_in_lambda_equals_embedded_engine_and_duckdb(lake, endpoint):
    expected = expected_frame(lake, SQL)
    result = run_query(LambdaEngine(), SQL, page_size=10)

    assert result.total_rows == 95 and result.first_page.row_count == 10
    pd.testing.assert_frame_equal(result.first_page.frame(), expected.iloc[:10])
    pd.testing.assert_frame_equal(result.page(40, 10).frame(), expected.iloc[40:50].reset_index(drop=True))
    pd.testing.assert_frame_equal(result.to_dataframe(), expected)
    pd.testing.assert_frame_equal(result.to_dataframe(), run_query(EmbeddedEngine(lake), SQL).to_dataframe())


def test_each_answer_reports_lambda_figures_and_cold_starts(local, endpoint):
    local.recycle()
    engine = LambdaEngine()
    first = run_query(engine, "SELECT count(*) AS trips FROM trips").stats
    second = run_query(engine, "SELECT count(*) AS trips FROM trips").stats

    figures = second.lambda_figures
    assert figures.billed_ms >= 1 and figures.memory_mb == 1024
    assert 0 < figures.cost_usd < 1e-4
    assert figures.request_id and figures.request_id != first.lambda_figures.request_id
    assert first.lambda_figures.init_ms is not None and first.engine.cold
    assert figures.init_ms is None and not second.engine.cold


def test_a_result_outlives_the_container_that_made_it(lake, local, endpoint):
    result = run_query(LambdaEngine(), SQL, page_size=10)
    local.recycle()

    page = result.page(20, 10)

    assert result.last_call.engine.cold
    pd.testing.assert_frame_equal(page.frame(), expected_frame(lake, SQL).iloc[20:30].reset_index(drop=True))


def test_sql_errors_are_query_errors_not_engine_errors(endpoint):
    with pytest.raises(LakeQueryError) as caught:
        run_query(LambdaEngine(), "SELECT no_such_column FROM trips")
    assert caught.value.error_type == "BinderException"
    assert not isinstance(caught.value, EngineError)


def test_one_engine_serves_several_threads(endpoint):
    engine = LambdaEngine()
    with ThreadPoolExecutor(4) as pool:
        totals = list(pool.map(lambda n: run_query(engine, f"SELECT {n} + count(*) AS n FROM trips"), range(4)))
    assert [result.first_page.frame()["n"][0] for result in totals] == [95, 96, 97, 98]


def test_figures_of_a_report_line_as_aws_lambda_writes_it():
    log = (
        "START RequestId: c793869b Version: $LATEST\nEND RequestId: c793869b\n"
        "REPORT RequestId: c793869b\tDuration: 2.55 ms\tBilled Duration: 1500 ms\tMemory Size: 2048 MB\t"
        "Max Memory Used: 60 MB\tInit Duration: 139.26 ms\t\n"
    )
    figures = lambda_engine._report(base64.b64encode(log.encode()).decode())

    assert figures == {"billed_ms": 1500, "memory_mb": 2048, "max_memory_used_mb": 60, "init_ms": 139.26}
    assert lambda_engine._cost_usd(figures, "arm64") == pytest.approx(3 * 0.0000133334 + 0.0000002)
    assert lambda_engine._cost_usd(figures, None) == pytest.approx(3 * 0.0000166667 + 0.0000002)
    assert lambda_engine._cost_usd(lambda_engine._report(None), None) is None


def test_a_silent_endpoint_gets_one_request_and_the_stated_wait(monkeypatch):
    """An invocation that may have started is never sent again, and the wait is the one the message states."""
    received = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def accept_and_stay_silent():
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                received.append(connection.recv(65536))  # keep the connection open, answer nothing

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{listener.getsockname()[1]}")
    engine = LambdaEngine("lakemagic", timeout_s=1, read_margin_s=1)
    started = time.monotonic()
    with pytest.raises(EngineError) as silent:
        engine.call(protocol.TablesRequest())
    waited = time.monotonic() - started
    listener.close()

    assert "gave no answer within 2 s" in str(silent.value)
    assert 1.5 < waited < 10
    assert len(received) == 1 and received[0].startswith(b"POST ")


# --- the function's failures -------------------------------------------------------------


def test_handler_exception(endpoint):
    message = engine_error(LambdaEngine("lakemagic-behave"), {"raise": "division by zero"})
    assert message == "the Lambda function lakemagic-behave failed: ValueError: division by zero"


def test_timeout_is_reported_and_never_retried(endpoint, tmp_path):
    starts = tmp_path / "starts.txt"
    message = engine_error(LambdaEngine("lakemagic-once", timeout_s=1), {"path": str(starts), "sleep": 5})
    assert message.startswith("the Lambda function lakemagic-once timed out after 1 s;")
    assert starts.read_text().splitlines() == ["started"]


def test_response_too_large(endpoint):
    message = engine_error(LambdaEngine("lakemagic-big"), {"bytes": SYNC_RESPONSE_LIMIT_BYTES + 1})
    assert "larger than Lambda's 6 MB response limit" in message


def test_runtime_exit(endpoint):
    message = engine_error(LambdaEngine("lakemagic-behave"), {"exit": 3})
    assert message == "the Lambda function lakemagic-behave crashed: Runtime exited with error: exit status 3"


def test_an_answer_outside_the_protocol(endpoint):
    with pytest.raises(EngineError) as caught:
        run_query(LambdaEngine("lakemagic-describe"), "SELECT 1")
    assert "did not answer in lakemagic's protocol" in str(caught.value)


def test_throttled_after_retries(endpoint, capsys):
    # The one worker sleeps meanwhile, so the second call is throttled on each attempt.
    busy = threading.Thread(target=LambdaEngine("lakemagic-single").call, args=({"sleep": 3},))
    busy.start()
    time.sleep(0.5)
    try:
        message = engine_error(LambdaEngine("lakemagic-single", max_attempts=2), {})
    finally:
        busy.join()
    assert message.startswith("the Lambda function lakemagic-single is throttled")
    throttled = [line for line in capsys.readouterr().err.splitlines() if "TooManyRequestsException" in line]
    assert len(throttled) == 2, "a throttled call (which never ran) is retried"


# --- Lambda's API refusing the call ------------------------------------------------------


def test_unknown_function_names_the_region_and_the_setting(endpoint):
    message = engine_error(LambdaEngine("no-such-function"), {})
    assert "'no-such-function'" in message and "us-east-1" in message
    assert "%config LakeMagic.function_name" in message


def test_request_over_six_megabytes(endpoint):
    with pytest.raises(EngineError) as caught:
        run_query(LambdaEngine(), "SELECT '" + "x" * 7_000_000 + "' AS big")
    assert str(caught.value) == "the request is larger than Lambda's 6 MB limit: the SQL or its parameters are too big"


@pytest.fixture
def aws_refusing(monkeypatch):
    """An endpoint answering every call with the AWS error set in `refusal` (status, error code)."""
    refusal = {}

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            status, code = refusal["error"]
            body = json.dumps({"message": "refused"}).encode()
            self.send_response(status)
            self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{server.server_address[1]}")
    yield refusal
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "status, code",
    [(403, "AccessDeniedException"), (403, "UnrecognizedClientException"), (403, "ExpiredTokenException")],
)
def test_credentials_refused(aws_refusing, status, code):
    aws_refusing["error"] = (status, code)
    message = engine_error(LambdaEngine(), {})
    assert "credentials" in message and "lambda:InvokeFunction" in message and "lakemagic" in message


# --- no call made at all -------------------------------------------------------------------


def test_no_credentials(endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = engine_error(LambdaEngine(), {})
    assert message.startswith("no AWS credentials were found;") and "lambda:InvokeFunction" in message


def test_unreachable_endpoint(monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago, so nothing listens on it
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", url)
    message = engine_error(LambdaEngine(max_attempts=1), {})
    assert message.startswith(f"could not reach the Lambda endpoint {url};")
