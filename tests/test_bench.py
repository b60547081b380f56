"""`lakemagic bench` against a real local Lambda over the moto S3 lake, and its configuration touch against moto's Lambda.

The function here stores every result (LAKEMAGIC_INLINE_RESULT_BYTES=0), so
the 20,000-row SELECT * has pages to fetch, and reaches S3 through a
counting proxy. Timings vary, so only their shape is asserted; the cost is
recomputed from the REPORT figures of each sample.
"""

from __future__ import annotations

import io
import zipfile

import boto3
import pytest
from servers import FAKE_KEYS, FUNCTION, start_function

from lakemagic.bench import NONCE_VARIABLE, bench, print_report, touch_configuration
from lakemagic.cli import main
from lakemagic.engines.aws_lambda import PRICE_PER_GB_SECOND_USD, PRICE_PER_REQUEST_USD, LambdaEngine
from lakemagic.errors import EngineError
from lakemagic.locallambda.s3proxy import S3Proxy

REPEAT = 4


@pytest.fixture(scope="module")
def s3_proxy(s3_lake, moto_endpoint):
    with S3Proxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def storing_function(s3_lake, aws_environment, s3_proxy):
    local = start_function(s3_lake, dict(aws_environment, AWS_ENDPOINT_URL_S3=s3_proxy.endpoint_url),
                           env={"LAKEMAGIC_INLINE_RESULT_BYTES": "0"}, max_workers=1)
    yield local
    local.stop()


@pytest.fixture
def storing(storing_function, monkeypatch):
    """The storing function, as the Lambda endpoint of this test (the session's may have been set meanwhile)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", storing_function.endpoint_url)
    return storing_function


@pytest.fixture
def inline(lambda_endpoint, monkeypatch):
    """The session's function, which answers a small result (the whole test lake is one) inline."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint.endpoint_url)
    return lambda_endpoint


def listed_cost_usd(sample) -> float:
    figures = sample.call.lambda_figures
    gb_seconds = figures.billed_ms / 1000 * figures.memory_mb / 1024
    return gb_seconds * PRICE_PER_GB_SECOND_USD[sample.call.engine.architecture] + PRICE_PER_REQUEST_USD


def test_warm_rows_have_their_samples_timings_figures_and_s3_requests(storing, s3_proxy, capsys):
    report = bench(LambdaEngine(FUNCTION), REPEAT, s3_proxy=s3_proxy)

    assert report.cold is None and report.pages_skipped is None
    for series in (report.aggregate, report.pages):
        assert series.n == REPEAT
        for sample in series.samples:
            assert sample.call.engine.engine_ms > 0
            assert sample.round_trip_ms >= sample.call.round_trip_ms > 0  # the call, then its rows decoded
            assert sample.figure("init_ms") is None  # warm
        assert 0 < series.round_trip_p50_ms <= series.round_trip_p95_ms
        assert series.billed_p50_ms >= 1 and series.memory_mb == 2048
    aggregate = report.aggregate
    assert all(sample.s3_requests >= 1 for sample in aggregate.samples)  # at least the stored result's upload
    assert all(sample.s3_requests >= 0 for sample in report.pages.samples)  # a warm container may have the file
    assert aggregate.cost_per_thousand_usd == pytest.approx(
        1000 * sum(map(listed_cost_usd, aggregate.samples)) / REPEAT)

    print_report(report)
    table = capsys.readouterr().out
    assert "warm aggregate" in table and "warm page fetch (50 rows)" in table and "cold start" not in table
    assert f"p95 of n={REPEAT} samples" in table
    assert "S3 requests (p50):" in table and "per page fetch" in table


def test_cold_start_is_a_fresh_worker_with_an_init_duration(storing):
    report = bench(LambdaEngine(FUNCTION), 1, cold=True)

    cold = report.cold
    assert cold.n == 1 and cold.samples[0].call.engine.cold
    assert 0 < cold.init_p50_ms <= cold.round_trip_p50_ms
    assert report.cold_start_by.startswith("retiring the local endpoint's warm workers")
    assert report.aggregate.init_p50_ms is None


def test_an_inline_result_has_no_page_row_and_says_why(inline, capsys):
    report = bench(LambdaEngine(FUNCTION), 2)

    assert report.pages is None and "came back inline" in report.pages_skipped
    print_report(report)
    table = capsys.readouterr().out
    assert "warm page fetch" not in table and "came back inline" in table


def test_the_command_prints_the_table(storing, capsys):
    assert main(["bench", "--repeat", "2"]) == 0
    plain = capsys.readouterr().out
    assert main(["bench", "--repeat", "2", "--cold", "--sql", "SELECT count(*) FROM taxi_2019_04"]) == 0
    cold = capsys.readouterr().out

    for table in (plain, cold):
        assert "lakemagic bench: the Lambda function lakemagic (2,048 MB)" in table
        assert "warm aggregate" in table and "warm page fetch (50 rows)" in table
        assert "cost: $" in table and "per 1,000 of these aggregates" in table
        assert "S3 requests: not measured here (see tests/test_s3_requests.py)" in table
    assert "cold start" not in plain
    assert "cold start to first answer" in cold and "SQL: SELECT count(*) FROM taxi_2019_04" in cold
    print(cold)  # for -s: a sample of the table


def test_an_unknown_function_is_one_sentence_and_exit_1(storing, capsys):
    assert main(["bench", "--function", "no-such-function", "--repeat", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    # The local Lambda in this process logs its invocations to the same stderr.
    said = [line for line in captured.err.splitlines() if not line.startswith("local-lambda ")]
    assert len(said) == 1 and said[0].startswith("lakemagic bench: there is no Lambda function named 'no-such-function'")


def test_an_sql_error_is_the_handlers_message_and_exit_1(storing, capsys):
    assert main(["bench", "--sql", "SELECT no_such_column FROM taxi_2019_04", "--repeat", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "lakemagic bench: BinderException: " in captured.err
    assert "LINE 1: SELECT no_such_column FROM taxi_2019_04" in captured.err  # the SQL line, with its caret


@pytest.fixture(scope="module")
def moto_lambda(moto_endpoint):
    """moto's Lambda control plane (it cannot invoke) with a function whose configuration bench may touch."""
    session = boto3.Session(region_name="us-east-1", **FAKE_KEYS)
    iam = session.client("iam", endpoint_url=moto_endpoint)
    lam = session.client("lambda", endpoint_url=moto_endpoint)
    role = iam.create_role(RoleName="bench-touch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    lam.create_function(FunctionName="bench-touch", Runtime="python3.12", Role=role, Handler="handler.handler",
                        Code={"ZipFile": code.getvalue()}, Environment={"Variables": {"LAKEMAGIC_LAKE": "s3://lake"}})
    return lam


def test_touching_the_configuration_sets_a_new_nonce_and_keeps_the_other_variables(moto_lambda):
    nonces = []
    for _ in range(2):
        touch_configuration(moto_lambda, "bench-touch")
        configuration = moto_lambda.get_function_configuration(FunctionName="bench-touch")
        variables = configuration["Environment"]["Variables"]
        assert variables["LAKEMAGIC_LAKE"] == "s3://lake" and configuration["LastUpdateStatus"] == "Successful"
        nonces.append(variables[NONCE_VARIABLE])
    assert nonces[0] != nonces[1]

    with pytest.raises(EngineError, match="^there is no Lambda function named 'missing' in region us-east-1$"):
        touch_configuration(moto_lambda, "missing")
