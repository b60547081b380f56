"""Fan-out against one invocation on the date-partitioned taxi month: measured here, and simulated for N Lambdas.

    python -m benchmarks.fanout [--rows N] [--repeat K] [--workers 10,30] [--days 10,30] [--s3 moto,real]
                                [--cached] [--check]

moto's S3 API and the local Lambda endpoint run on 127.0.0.1, the S3 API
behind a counting proxy twice: as it is (moto answers in about a millisecond
with no bound on bandwidth) and at real S3's pace (s3proxy.REAL_S3: each
answer's first byte after 30 ms, then 85 MB/s per connection; sources in the
README). The query counts trips per pickup location over the first 10 days
or the whole month (30 day partitions), fanned out to at most N tasks. Two
figures for each S3, days and N, and each line says which it is:
  - measured: the fanned-out query (listing, N tasks at once on N workers,
    merge in the kernel) against the same query on one invocation,
    interleaved. This machine has 2 cores shared by everyone on it, so N
    workers here share them: not what N Lambdas give (on real S3's pace,
    where a task mostly waits, closer to it);
  - simulated N Lambdas: the listing call and each task run alone, one
    after another, then the merge, each timed here (the fastest of K runs,
    as timeit takes it: this machine is shared); N Lambdas would take
    listing + slowest task + merge (each invocation's overhead is in its
    round trip), and the speedup is the one invocation's time over it, timed
    alone in the same state: a first read from S3 (a started container that
    has read nothing, as the original design measured: 3.452 s on one
    Lambda, 0.989 s over ten), and with --cached also with the data in the
    container's cache (where one invocation takes tens of ms: fan-out cannot pay).
    The listing is a first query's (the kernel keeps no listing and plans a
    text it has not seen; the container answers from the listing it keeps
    for 30 s); the merge runs in a kernel whose kernel engine is open (a
    kernel's first merge, which opens it, is printed apart).
    Goals, for a first read: a speedup >= 0.6 n on moto as it is and >= 0.8 n
    at real S3's pace, n being the tasks the plan has (N, or fewer where the
    query reads fewer partitions: 10 days are 10 tasks at N = 30 too).
Each simulated line also prints the S3 requests of each task and of the one invocation.
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
from lakemagic.engines.kernel import KernelEngine, kernel_engine
from lakemagic.fanout import runner
from lakemagic.fanout.tree import PARTIALS
from lakemagic.locallambda import FunctionSpec, LocalLambda
from lakemagic.locallambda.layout import LAKE_PACKAGES
from lakemagic.locallambda.s3proxy import REAL_S3, S3Model, S3Proxy
from lakemagic.taxi import TAXI_MONTH_ROWS, build_lake

from .measure import Ratio, add_check_option, compare, show, timed, verdict

QUERY = "SELECT pickup_location_id, count(*) AS trips FROM partitioned{where} GROUP BY 1 ORDER BY 1"
TEN_DAYS = " WHERE date BETWEEN DATE '2019-04-01' AND DATE '2019-04-10'"
# Each S3: its model (None: moto as it is) and the speedup per task a first read should reach on it.
S3_PACES: dict[str, tuple[S3Model | None, float]] = {"moto": (None, 0.6), "real": (REAL_S3, 0.8)}
S3_LABELS = {"moto": "moto as is", "real": "real S3's pace"}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
# One worker that has read every file: the one-invocation baseline, and each task alone, with the data
# cached alike (a task sent to the N-worker function may land on a worker that has not read its files).
ALONE = "lakemagic-alone"


def one_invocation(engine: LambdaEngine, sql: str):
    return lambda: client.run_query(engine, sql, reuse=False).to_dataframe()


def fanned_out(engine: LambdaEngine, sql: str, fanout: int):
    return lambda: runner.run(engine, sql, {}, 50, (), fanout, reuse=False).to_dataframe()


def simulated(alone: LambdaEngine, proxy: S3Proxy, sql: str, fanout: int, repeat: int, prepare) -> dict:
    """The fan-out's parts timed alone (seconds): listing and planning, each task, the merge, and the
    one invocation; each task's and the one invocation's run after `prepare()`, with the S3 requests of
    each. Each part is the fastest of `repeat` runs, as timeit takes it: slower runs time the other
    work on this shared machine, which the slowest of N tasks would pick up N times to the one
    invocation's once."""
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

    def fastest(action) -> float:
        samples = []
        for _ in range(repeat):
            prepare()
            samples.append(timed(action))
        return min(samples)

    task_s, s3_requests, results = [], [], []
    for request in requests:
        result, count = counted(lambda: client.run_request(alone, request, sql))
        assert result.first_page.row_count == result.total_rows, "a task's result did not come in one page"
        results.append(result)
        s3_requests.append(count)
        task_s.append(fastest(lambda: client.run_request(alone, request, sql)))
    with contextlib.ExitStack() as held:
        files = [path for result in results for path in held.enter_context(result.local_files())]

        def merge(kernel: KernelEngine) -> None:
            kernel.merge(files, results[0].columns, planned.plan.merge_sql, PARTIALS, {}, MAX_PAGE_ROWS)

        merge_s = min(timed(lambda: merge(kernel_engine())) for _ in range(repeat))
        first_merge_s = min(timed(lambda: merge(KernelEngine())) for _ in range(repeat))
    _, single_requests = counted(one_invocation(alone, sql))
    return {"listing": min(listing), "tasks": task_s, "merge": merge_s, "first_merge": first_merge_s,
            "s3": s3_requests, "files": [len(task.files) for task in planned.plan.tasks],
            "single": fastest(one_invocation(alone, sql)), "single_s3": single_requests}


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


def on_one_s3(name: str, proxy: S3Proxy, options, results: list[Ratio]) -> None:
    """Every measured and simulated figure with the functions reading S3 through `proxy`."""
    model, goal_per_task = S3_PACES[name]
    env = dict(CREDENTIALS, AWS_ENDPOINT_URL_S3=proxy.endpoint_url, LAKEMAGIC_LAKE="s3://lake")
    spec = {"env": env, "timeout_s": 300.0, "packages": LAKE_PACKAGES}
    functions = {f"lakemagic-{n}": FunctionSpec("lakelambda.handler.handler", max_workers=n, **spec)
                 for n in options.workers}
    functions[ALONE] = FunctionSpec("lakelambda.handler.handler", max_workers=1, **spec)
    # The endpoint logs a line per invocation to stderr; the figures are what to read here.
    with LocalLambda(functions) as local, contextlib.redirect_stderr(io.StringIO()):
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = local.endpoint_url
        alone = LambdaEngine(ALONE)
        for days in options.days:
            sql = QUERY.format(where=TEN_DAYS if days == 10 else "")
            simulated_tasks: set[int] = set()
            for workers in options.workers:
                engine = LambdaEngine(f"lakemagic-{workers}")
                print(f"\n{S3_LABELS[name]}, {days} days, N = {workers} (`lakemagic serve --max-workers {workers}`, "
                      f"at most {workers} tasks)", flush=True)
                print(f"{'':<58} {'fan-out':>12} {'one call':>12}  ratio", flush=True)
                fanned_out(engine, sql, workers)()  # every worker started before anything is timed
                results.append(compare(f"measured here, {workers} workers on 2 shared cores",
                                       fanned_out(engine, sql, workers), one_invocation(alone, sql),
                                       options.repeat, None))
                states = [("first read from S3", fresh_container(local, alone))]
                if options.cached:
                    states.append(("data cached", lambda: None))
                planned = runner.decide(alone, sql, (), workers)
                assert planned.plan is not None, planned.reason
                tasks = len(planned.plan.tasks)
                if tasks in simulated_tasks:
                    print(f"  simulated: the plan has the same {tasks} tasks as above (the query reads {days} "
                          "partitions)")
                    continue
                simulated_tasks.add(tasks)
                for state, prepare in states:
                    parts = simulated(alone, proxy, sql, workers, options.repeat, prepare)
                    wall = parts["listing"] + max(parts["tasks"]) + parts["merge"]
                    speedup = parts["single"] / wall
                    goal = round(1 / (goal_per_task * tasks), 4) if state == "first read from S3" else None
                    results.append(show(Ratio(f"  simulated {tasks} Lambdas, {state} ({speedup:.2f}x, "
                                              f"{speedup / tasks:.2f}n; {S3_LABELS[name]})", wall, parts["single"],
                                              goal)))
                    print(f"    listing {parts['listing'] * 1000:.1f} ms + slowest of {tasks} "
                          f"tasks {max(parts['tasks']) * 1000:.1f} ms (median {statistics.median(parts['tasks']) * 1000:.1f}"
                          f" ms; files per task {sorted(set(parts['files']))}) + merge {parts['merge'] * 1000:.1f} ms "
                          f"(a kernel's first: {parts['first_merge'] * 1000:.1f} ms); S3 requests per task "
                          f"{sorted(set(parts['s3']))} (one invocation: {parts['single_s3']})", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=TAXI_MONTH_ROWS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="10,30", help="the N to measure, comma-separated")
    parser.add_argument("--days", default="10,30", help="days of the month the query reads (10 or 30), comma-separated")
    parser.add_argument("--s3", default="moto,real", help="moto (as it is), real (real S3's pace), comma-separated")
    parser.add_argument("--cached", action="store_true", help="simulate with the data in the containers' cache too")
    add_check_option(parser)
    options = parser.parse_args(argv)
    options.workers = sorted({int(n) for n in options.workers.split(",")})
    options.days = sorted({int(n) for n in options.days.split(",")})
    paces = options.s3.split(",")
    if not set(options.days) <= {10, 30} or not set(paces) <= set(S3_PACES) or min(options.workers) < 2:
        parser.error("--days takes 10 and 30, --s3 takes moto and real, --workers numbers of 2 or more")

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxies = {name: S3Proxy(f"http://{host}:{port}", model=S3_PACES[name][0]).start() for name in paces}
    saved = dict(os.environ)
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL_S3=f"http://{host}:{port}")
    results: list[Ratio] = []
    try:
        upload_partitioned_month(options.rows)
        for name, proxy in proxies.items():
            on_one_s3(name, proxy, options, results)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for proxy in proxies.values():
            proxy.stop()
        server.stop()
    return verdict(results, options.check)


if __name__ == "__main__":
    raise SystemExit(main())
