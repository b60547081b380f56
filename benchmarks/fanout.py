"""Fan-out against one invocation on the date-partitioned taxi month, measured here and simulated.

    python -m benchmarks.fanout [--rows N] [--repeat K] [--workers 1,2,4,10] [--s3-delay-ms D | --real-s3] [--check]

moto's S3 API (behind a counting proxy) and the local Lambda endpoint run on
127.0.0.1. For each N the endpoint gets N workers and the query at most N
tasks (N = 1 is fan-out off). Two figures per query and N:
  - measured: the fanned-out query (listing, N tasks at once, merge in the
    kernel) against the same query on one invocation, interleaved. This
    machine has 2 cores, so N workers here share them: this is not what N
    Lambdas give;
  - simulated N concurrent Lambdas: the listing call and each task run
    alone, one after another, then the merge, each timed here; the wall
    time N Lambdas would take is listing + slowest task + merge (every
    invocation's overhead is in its round trip), and the speedup is the one
    invocation's time over it (timed alone in the same state). Twice: with
    the data in the container's DuckDB cache (a warm repeat), and as a
    first read from S3 (a started container that has read nothing, as the
    original design measured: 3.452 s on one Lambda, 0.989 s over ten).
    Goal: >= 0.6 N at the largest N for the first read.
    In both, the listing is a first query's: the kernel keeps no listing and
    plans a query text it has not seen, the container answers from the
    listing it keeps for 30 s; the merge runs in a kernel whose kernel
    engine is open; the first merge of a kernel, which opens that engine, is
    printed apart.
Each simulated row also prints the S3 requests of each task and of the one
invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import tempfile
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from lakelambda.protocol import MAX_PAGE_ROWS
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.fanout import runner
from lakemagic.engines.kernel import KernelEngine, kernel_engine
from lakemagic.fanout.tree import PARTIALS
from lakemagic.locallambda import FunctionSpec, LocalLambda
from lakemagic.locallambda.layout import LAKE_PACKAGES
from lakemagic.locallambda.s3proxy import REAL_S3, S3Proxy
from lakemagic.taxi import TAXI_MONTH_ROWS, build_lake

from .measure import Ratio, add_check_option, compare, show, timed, verdict

TEN_DAYS = "date BETWEEN DATE '2019-04-01' AND DATE '2019-04-10'"
QUERIES = {
    "counts per pickup location, 10 days":
        f"SELECT pickup_location_id, count(*) AS trips FROM partitioned WHERE {TEN_DAYS} GROUP BY 1 ORDER BY 1",
    "avg fare with a filter, 10 days":
        f"SELECT payment_type, count(*) AS trips, avg(total_amount) AS avg_total FROM partitioned "
        f"WHERE {TEN_DAYS} AND trip_distance > 2 GROUP BY 1 ORDER BY 1",
}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
FUNCTION = "lakemagic"
# One worker that has read every file: the one-invocation baseline, and each task alone, with the data
# cached alike (a task sent to the N-worker function may land on a worker that has not read its files).
ALONE = "lakemagic-alone"


def one_invocation(engine: LambdaEngine, sql: str):
    return lambda: client.run_query(engine, sql, reuse=False).to_dataframe()


def fanned_out(engine: LambdaEngine, sql: str, fanout: int):
    return lambda: runner.run(engine, sql, {}, 50, (), fanout, reuse=False).to_dataframe()


def simulated(alone: LambdaEngine, proxy: S3Proxy, sql: str, fanout: int, repeat: int, prepare) -> dict:
    """The fan-out's parts timed alone (medians, seconds): listing and planning, each task, the merge,
    and the one invocation; each task's and the one invocation's run after `prepare()`, with the S3
    requests of each."""
    # Each timed listing plans a text the kernel has not seen (the planner keeps what it parsed and split).
    listing = [timed(lambda: runner.decide(alone, f"{sql}\n-- timed {number}", (), fanout)) for number in range(repeat)]
    planned = runner.decide(alone, sql, (), fanout)
    assert planned.plan is not None, planned.reason
    requests = runner.task_requests(planned, {}, ())

    def counted(action):
        prepare()
        proxy.reset()
        outcome = action()
        return outcome, proxy.count()

    def median_time(action) -> float:
        samples = []
        for _ in range(repeat):
            prepare()
            samples.append(timed(action))
        return statistics.median(samples)

    task_s, s3_requests, results = [], [], []
    for request in requests:
        result, count = counted(lambda: client.run_request(alone, request, sql))
        assert result.first_page.row_count == result.total_rows, "a task's result did not come in one page"
        results.append(result)
        s3_requests.append(count)
        task_s.append(median_time(lambda: client.run_request(alone, request, sql)))
    with contextlib.ExitStack() as held:
        files = [path for result in results for path in held.enter_context(result.local_files())]

        def merge(kernel: KernelEngine) -> None:
            kernel.merge(files, results[0].columns, planned.plan.merge_sql, PARTIALS, {}, MAX_PAGE_ROWS)

        merge_s = statistics.median([timed(lambda: merge(kernel_engine())) for _ in range(repeat)])
        first_merge_s = statistics.median([timed(lambda: merge(KernelEngine())) for _ in range(repeat)])
    _, single_requests = counted(one_invocation(alone, sql))
    return {"listing": statistics.median(listing), "tasks": task_s, "merge": merge_s, "first_merge": first_merge_s,
            "s3": s3_requests,
            "files": [len(task.files) for task in planned.plan.tasks], "single": median_time(one_invocation(alone, sql)),
            "single_s3": single_requests}


def fresh_container(local: LocalLambda, alone: LambdaEngine):
    """A started container that has read no data yet, as a query's first read from S3 finds it."""
    def prepare():
        local.recycle()
        client.run_query(alone, "SELECT 1", reuse=False)
    return prepare


def upload_partitioned_month(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lakemagic-bench-") as folder:
        print(f"uploading a generated taxi month ({rows:,} rows), partitioned by date, to the local S3 server...",
              flush=True)
        build_lake(folder, rows=rows)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="lake")
        for path in Path(folder, "partitioned").rglob("*.parquet"):
            s3.upload_file(str(path), "lake", path.relative_to(folder).as_posix())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=TAXI_MONTH_ROWS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", default="1,2,4,10", help="the N to measure, comma-separated")
    parser.add_argument("--s3-delay-ms", type=float, default=0.0,
                        help="wait this long before each S3 request (real S3 answers in about 10-30 ms)")
    parser.add_argument("--real-s3", action="store_true",
                        help="answer at real S3's pace (s3proxy.REAL_S3: first byte after 30 ms, 85 MB/s per connection)")
    add_check_option(parser)
    options = parser.parse_args(argv)
    counts = sorted({int(n) for n in options.workers.split(",")})

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = S3Proxy(f"http://{host}:{port}", delay_s=options.s3_delay_ms / 1000,
                    model=REAL_S3 if options.real_s3 else None).start()
    saved = dict(os.environ)
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL_S3=proxy.endpoint_url)
    results = []
    try:
        upload_partitioned_month(options.rows)
        env = dict(CREDENTIALS, AWS_ENDPOINT_URL_S3=proxy.endpoint_url, LAKEMAGIC_LAKE="s3://lake")
        for workers in counts:
            functions = {name: FunctionSpec("lakelambda.handler.handler", env=env, max_workers=count, timeout_s=300.0,
                                            packages=LAKE_PACKAGES)
                         for name, count in ((FUNCTION, workers), (ALONE, 1))}
            # The endpoint logs a line per invocation to stderr; the figures are what to read here.
            with LocalLambda(functions) as local, contextlib.redirect_stderr(io.StringIO()):
                os.environ["AWS_ENDPOINT_URL_LAMBDA"] = local.endpoint_url
                engine, alone = LambdaEngine(FUNCTION), LambdaEngine(ALONE)
                print(f"\nN = {workers}: `lakemagic serve --max-workers {workers}`, at most {workers} tasks", flush=True)
                print(f"{'':<58} {'fan-out':>12} {'one call':>12}  ratio", flush=True)
                for label, sql in QUERIES.items():
                    fanned_out(engine, sql, workers)()  # every worker started before anything is timed
                    results.append(compare(f"measured: {label}", fanned_out(engine, sql, workers),
                                           one_invocation(alone, sql), options.repeat, None))
                    if workers == 1:
                        continue
                    for state, prepare in (("data cached", lambda: None),
                                           ("first read from S3", fresh_container(local, alone))):
                        parts = simulated(alone, proxy, sql, workers, options.repeat, prepare)
                        wall = parts["listing"] + max(parts["tasks"]) + parts["merge"]
                        speedup = parts["single"] / wall
                        goal = (round(1 / (0.6 * workers), 3)
                                if workers == max(counts) and state == "first read from S3" else None)
                        results.append(show(Ratio(f"  simulated {workers} Lambdas, {state} ({speedup:.2f}x, "
                                                  f"{speedup / workers:.2f}N)", wall, parts["single"], goal)))
                        print(f"    listing {parts['listing'] * 1000:.1f} ms + slowest of {len(parts['tasks'])} "
                              f"tasks {max(parts['tasks']) * 1000:.1f} ms (files per task {parts['files']}) "
                              f"+ merge {parts['merge'] * 1000:.1f} ms (a kernel's first: "
                              f"{parts['first_merge'] * 1000:.1f} ms); S3 requests per task {parts['s3']} "
                              f"(one invocation: {parts['single_s3']})", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        proxy.stop()
        server.stop()
    return verdict(results, options.check)


if __name__ == "__main__":
    raise SystemExit(main())
