"""`lakemagic bench`: how fast a deployed function answers and what it costs, measured as benchmarks/ measure.

`bench` times calls through an engine: after one warm-up call, a small
aggregate and page fetches of a stored result, each sample timed until its
rows are a DataFrame here; with `cold`, first a call to a fresh container. It
returns a `BenchReport`, which `print_report` prints as a table. A fresh
container comes from the recycle route of a local endpoint (`lakemagic
serve`) or, on AWS, from a change to the function's configuration, after
which Lambda starts new containers.
"""

from __future__ import annotations

import secrets
import statistics
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from .client import CallStats, QueryResult, run_query
from .engines.aws_lambda import LambdaEngine
from .errors import EngineError, LakeQueryError
from .locallambda.s3proxy import S3Proxy
from .locallambda.server import RECYCLE_PATH

DEFAULT_SQL = "SELECT payment_type, count(*) AS trips, avg(total_amount) AS avg_total FROM taxi_2019_04 GROUP BY 1"
STORED_SQL = "SELECT * FROM taxi_2019_04 LIMIT 200000"  # usually too big to come inline: its pages are fetched
PAGE_ROWS = 50
NONCE_VARIABLE = "LAKEMAGIC_BENCH_NONCE"
LOCAL_HOSTS = ("127.0.0.1", "localhost")
RECYCLE_TIMEOUT_S = 30


@dataclass(frozen=True)
class Sample:
    """One timed call: its round trip to a DataFrame here, what the handler and Lambda reported, its S3 requests."""

    round_trip_ms: float
    call: CallStats
    s3_requests: int | None = None  # None: not counted

    def figure(self, name: str):
        """One of Lambda's figures for the call (LambdaFigures.<name>), None where Lambda reported none."""
        return getattr(self.call.lambda_figures, name, None)


@dataclass(frozen=True)
class Series:
    """The samples of one kind of call, and what they add up to."""

    samples: tuple[Sample, ...]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def round_trip_p50_ms(self) -> float:
        return percentile([sample.round_trip_ms for sample in self.samples], 50)

    @property
    def round_trip_p95_ms(self) -> float:
        return percentile([sample.round_trip_ms for sample in self.samples], 95)

    @property
    def engine_p50_ms(self) -> float:
        """The handler's own time (its engine_ms), without the trip to and from the function."""
        return percentile([sample.call.engine.engine_ms for sample in self.samples], 50)

    @property
    def billed_p50_ms(self) -> float | None:
        return _known_p50([sample.figure("billed_ms") for sample in self.samples])

    @property
    def init_p50_ms(self) -> float | None:
        """Lambda's Init Duration, reported for a cold start only."""
        return _known_p50([sample.figure("init_ms") for sample in self.samples])

    @property
    def memory_mb(self) -> int | None:
        return self.samples[-1].figure("memory_mb")

    @property
    def architecture(self) -> str:
        return self.samples[-1].call.engine.architecture

    @property
    def cost_per_thousand_usd(self) -> float | None:
        """A thousand times the mean of the calls' cost estimates; None unless every call has one."""
        costs = [sample.figure("cost_usd") for sample in self.samples]
        return None if None in costs else 1000 * statistics.fmean(costs)

    @property
    def s3_requests_p50(self) -> float | None:
        return _known_p50([sample.s3_requests for sample in self.samples])


@dataclass(frozen=True)
class BenchReport:
    function_name: str
    sql: str
    aggregate: Series  # `sql`, warm
    pages: Series | None  # pages of STORED_SQL's result, warm; None: see pages_skipped
    pages_skipped: str | None
    cold: Series | None = None  # one sample: `sql` on a fresh container, only when asked for
    cold_start_by: str | None = None  # how the fresh container was obtained


def bench(engine: LambdaEngine, repeat: int, sql: str = DEFAULT_SQL, cold: bool = False,
          s3_proxy: S3Proxy | None = None) -> BenchReport:
    """Time `sql` and a page fetch `repeat` times each, warm; with `cold`, first `sql` on a fresh container.

    Given the `s3_proxy` the function's S3 traffic goes through, each sample
    also counts the S3 requests it made. EngineError or LakeQueryError (from
    `sql`) ends the run.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")

    def query() -> CallStats:
        result = run_query(engine, sql, reuse=False)  # what running it costs, not what a reused answer does
        result.first_page.frame()
        return result.stats

    cold_series = cold_start_by = None
    if cold:
        cold_start_by = start_fresh_container(engine)
        cold_series = Series((_sample(query, s3_proxy),))
    query()  # the warm-up, as benchmarks/ do: not a sample
    aggregate = Series(tuple(_sample(query, s3_proxy) for _ in range(repeat)))
    pages, pages_skipped = _page_fetches(engine, repeat, s3_proxy)
    return BenchReport(engine.function_name, sql, aggregate, pages, pages_skipped, cold_series, cold_start_by)


def _sample(call: Callable[[], CallStats], s3_proxy: S3Proxy | None) -> Sample:
    requests_before = s3_proxy.count() if s3_proxy is not None else None
    started = time.perf_counter()
    stats = call()
    round_trip_ms = (time.perf_counter() - started) * 1000
    if requests_before is None:
        return Sample(round_trip_ms, stats)
    return Sample(round_trip_ms, stats, s3_proxy.count() - requests_before)


def _page_fetches(engine: LambdaEngine, count: int, s3_proxy: S3Proxy | None) -> tuple[Series | None, str | None]:
    """`count` pages of STORED_SQL's result at offsets spread over it; or None and why there are none."""
    try:
        stored = run_query(engine, STORED_SQL, page_size=PAGE_ROWS, reuse=False)
    except LakeQueryError as error:
        return None, f"no page row: {STORED_SQL} failed ({error.error_type}: {error.message})"
    if stored.inline:
        return None, (f"no page row: the result of {STORED_SQL} ({stored.total_rows:,} rows) came back inline, "
                      "whole in its first answer, so it has no pages to fetch")
    offsets = [1 + (stored.total_rows - 1) * (index + 1) // (count + 1) for index in range(count)]
    return Series(tuple(_sample(lambda offset=offset: _fetch_page(stored, offset), s3_proxy) for offset in offsets)), None


def _fetch_page(result: QueryResult, offset: int) -> CallStats:
    result.page(offset, PAGE_ROWS).frame()
    return result.last_call


def start_fresh_container(engine: LambdaEngine) -> str:
    """Make the function's next invocation a cold start; say how ("retiring ...", "setting ...").

    The Lambda endpoint is the one boto3 resolves for the engine's region and
    profile (AWS_ENDPOINT_URL_LAMBDA included): on this machine it is
    `lakemagic serve`, whose recycle route retires its warm workers.
    """
    try:
        control = boto3.Session(profile_name=engine.profile, region_name=engine.region).client("lambda")
    except BotoCoreError as error:
        raise EngineError(f"no Lambda client for the cold start could be made: {error}") from None
    endpoint = control.meta.endpoint_url.rstrip("/")
    if urllib.parse.urlsplit(endpoint).hostname in LOCAL_HOSTS:
        _recycle(endpoint)
        return f"retiring the local endpoint's warm workers (POST {endpoint}{RECYCLE_PATH})"
    touch_configuration(control, engine.function_name)
    return f"setting a new {NONCE_VARIABLE} in the function's configuration"


def _recycle(endpoint: str) -> None:
    request = urllib.request.Request(endpoint + RECYCLE_PATH, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=RECYCLE_TIMEOUT_S):
            pass
    except OSError as error:
        raise EngineError(f"the local Lambda endpoint {endpoint} did not retire its workers ({error}); "
                          "a cold start needs `lakemagic serve` there") from None


def touch_configuration(lambda_client, function_name: str) -> None:
    """Set NONCE_VARIABLE to a new random value, keeping every other variable; wait until the update is Successful.

    Lambda runs the next invocation of a function whose configuration changed in a new container.
    """
    function = f"the Lambda function {function_name}"
    try:
        configuration = lambda_client.get_function_configuration(FunctionName=function_name)
        environment = configuration.get("Environment") or {}
        if "Error" in environment:
            raise EngineError(f"the environment variables of {function} cannot be read "
                              f"({environment['Error'].get('Message', '')}), so --cold leaves them alone")
        variables = {**environment.get("Variables", {}), NONCE_VARIABLE: secrets.token_hex(8)}
        unchanged_since = {"RevisionId": configuration["RevisionId"]} if configuration.get("RevisionId") else {}
        lambda_client.update_function_configuration(FunctionName=function_name, Environment={"Variables": variables},
                                                    **unchanged_since)
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function_name)
    except ClientError as error:
        raise EngineError(_configuration_error_sentence(error, function_name, lambda_client.meta.region_name)) from None
    except WaiterError as error:
        reason = (error.last_response or {}).get("Configuration", {}).get("LastUpdateStatusReason") or error
        raise EngineError(f"the configuration update of {function} did not succeed: {reason}") from None
    except BotoCoreError as error:
        raise EngineError(f"changing the configuration of {function} failed: {error}") from None


def _configuration_error_sentence(error: ClientError, function_name: str, region: str) -> str:
    code = error.response.get("Error", {}).get("Code", "")
    function = f"the Lambda function {function_name}"
    if code == "ResourceNotFoundException":
        return f"there is no Lambda function named {function_name!r} in region {region}"
    if code in ("AccessDeniedException", "AccessDenied"):
        return (f"--cold changes the configuration of {function}, which the AWS credentials in use may not: "
                "they need lambda:GetFunctionConfiguration, lambda:UpdateFunctionConfiguration and lambda:GetFunction")
    if code == "ResourceConflictException":
        return f"{function} is being updated; run bench again when that update has finished"
    if code == "PreconditionFailedException":
        return f"the configuration of {function} changed while bench was changing it; run bench again"
    return f"changing the configuration of {function} failed: {code}: {error.response.get('Error', {}).get('Message', '')}"


def percentile(values: Sequence[float], percent: int) -> float:
    """The `percent`th percentile, interpolated between the samples either side of it; one sample is its own.

    From few samples a high percentile lies between the largest of them, which is why the report gives n.
    """
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def _known_p50(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return percentile(known, 50) if known else None


def print_report(report: BenchReport, out: TextIO | None = None) -> None:
    """The report as a table on `out` (default: stdout), with what each column means and what the figures leave out."""
    aggregate = report.aggregate
    memory = f"{aggregate.memory_mb:,} MB" if aggregate.memory_mb is not None else "memory not reported"
    rows = [("warm aggregate", aggregate), (f"warm page fetch ({PAGE_ROWS} rows)", report.pages),
            ("cold start to first answer", report.cold)]
    lines = [
        f"lakemagic bench: the Lambda function {report.function_name} ({memory})",
        f"  SQL: {' '.join(report.sql.split())}",
        "",
        f"{'':<30}{'n':>4}{'round trip p50':>16}{'p95':>12}{'handler p50':>14}{'billed p50':>13}{'Init Duration':>15}",
    ]
    for label, series in rows:
        if series is not None:
            p95 = _ms(series.round_trip_p95_ms) if series.n > 1 else "-"
            lines.append(f"{label:<30}{series.n:>4}{_ms(series.round_trip_p50_ms):>16}{p95:>12}"
                         f"{_ms(series.engine_p50_ms):>14}{_ms(series.billed_p50_ms, 0):>13}{_ms(series.init_p50_ms):>15}")
    lines.append("")
    if report.pages_skipped:
        lines.append(report.pages_skipped)
    lines.append("round trip: the call until its rows are a DataFrame here; handler: its own time (engine_ms); "
                 "billed, Init Duration: Lambda's REPORT")
    lines.append(_p95_note(aggregate.n))
    if report.cold is not None:
        lines.append(f"cold start by {report.cold_start_by}")
    cost = aggregate.cost_per_thousand_usd
    lines.append(f"cost: ${cost:.6f} per 1,000 of these aggregates at us-east-1 list price "
                 f"({aggregate.architecture or 'x86_64'}: billed duration × memory, plus the requests)"
                 if cost is not None else "cost: not estimated (Lambda reported no billed duration or memory)")
    lines.append(_s3_line(report))
    print("\n".join(lines), file=out)


def _p95_note(n: int) -> str:
    """What a p95 of `n` samples is worth: from 20 or fewer, it is interpolated between the two largest."""
    if n == 1:
        return "n=1: one sample has no p95"
    if n <= 20:
        return f"p95 of n={n} samples lies between the two largest; raise --repeat for a steadier one"
    return f"p95 of n={n} samples"


def _ms(value: float | None, decimals: int = 1) -> str:
    return "-" if value is None else f"{value:,.{decimals}f} ms"


def _s3_line(report: BenchReport) -> str:
    aggregate_requests = report.aggregate.s3_requests_p50
    if aggregate_requests is None:
        return "S3 requests: not measured here (see tests/test_s3_requests.py)"
    page_requests = report.pages.s3_requests_p50 if report.pages is not None else None
    per_page = f", {page_requests:g} per page fetch" if page_requests is not None else ""
    return f"S3 requests (p50): {aggregate_requests:g} per warm aggregate{per_page}"
