"""The `lakemagic` command: build the demo lake, run the demo notebooks, serve a local Lambda, deploy to AWS."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .engines import DEFAULT_LAKE

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEMO_NOTEBOOKS = ("01_load.ipynb", "02_views.ipynb", "03_charts.ipynb", "04_explore.ipynb")
# In the folder the demo is run from (the repository, for `make demo`), where a user looks, not a hidden one.
DEFAULT_EXECUTED = "lakemagic-demo"

Run = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    return options.run(options)


def _parser() -> argparse.ArgumentParser:
    """One parser for every command; serve, deploy and destroy bring their own options.

    Their modules are imported here, not at the top, so importing this module stays cheap.
    """
    from lakedeploy.cli import register as register_deploy

    from .locallambda.command import add_arguments as add_serve_arguments
    from .locallambda.command import run as run_serve

    parser = argparse.ArgumentParser(prog="lakemagic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    load = commands.add_parser(
        "load", help="put the NYC taxi month into a lake (a folder or s3://bucket[/prefix])",
        description="Put the NYC taxi month into a lake: dataset/taxi_2019_04.parquet, the same trips "
                    "Hive-partitioned by date under partitioned/, and the Iceberg table taxi_iceberg/ (where "
                    "pyiceberg is installed), replacing an earlier load's.")
    _lake_options(load, "the lake: a folder, or s3://bucket[/prefix] to upload it to")
    load.set_defaults(run=_errors_in_one_line(_load))

    demo = commands.add_parser(
        "demo", help="build the demo lake and run the demo notebooks on the embedded engine",
        description="Build the demo lake (as `lakemagic load` does, every run) and run the four demo notebooks "
                    "in order on the embedded engine with papermill, then say where the executed copies are and "
                    "how to open them.")
    _lake_options(demo, "the lake folder")
    demo.add_argument("--output", default=DEFAULT_EXECUTED,
                      help="where the executed notebooks (and the models they save) go (default: %(default)s)")
    demo.set_defaults(run=_errors_in_one_line(_demo))

    serve = commands.add_parser(
        "serve", help="run a local endpoint that speaks the Lambda Invoke API (see `lakemagic serve --help`)",
        description="Serve a Python Lambda handler locally behind the AWS Lambda Invoke API.")
    add_serve_arguments(serve)
    serve.set_defaults(run=run_serve)

    bench = commands.add_parser(
        "bench", help="time and price queries on your deployed function, or on `lakemagic serve`",
        description="Time a small aggregate and page fetches of a stored result on the Lambda function (or a local "
                    "endpoint named by AWS_ENDPOINT_URL_LAMBDA), warm, and print p50/p95 round trips, the handler's "
                    "own time, the billed duration, the memory and the cost per 1,000 queries.")
    _bench_options(bench)
    bench.set_defaults(run=_bench)

    register_deploy(commands)
    return parser


def _errors_in_one_line(run: Run) -> Run:
    """For load and demo, an expected failure (a bad lake, a failing notebook, AWS refusing an S3 lake's upload or
    finding no credentials) is a sentence, not a traceback."""
    def run_with_short_errors(options: argparse.Namespace) -> int:
        try:
            return run(options)
        except _expected_errors() as exc:  # evaluated only when something is raised: boto3 is imported then
            print(f"lakemagic {options.command}: {exc}", file=sys.stderr)
            return 1
    return run_with_short_errors


def _expected_errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return ValueError, RuntimeError, OSError, Boto3Error, BotoCoreError, ClientError


def _lake_options(parser: argparse.ArgumentParser, lake: str) -> None:
    from .taxi import TAXI_MONTH_ROWS

    parser.add_argument("--lake", default=os.environ.get("LAKEMAGIC_LAKE", DEFAULT_LAKE),
                        help=f"{lake} (default: LAKEMAGIC_LAKE or {DEFAULT_LAKE})")
    parser.add_argument("--rows", type=int, default=TAXI_MONTH_ROWS, help=f"trips to generate (default: the real month's {TAXI_MONTH_ROWS:,})")
    parser.add_argument("--source", choices=("generate", "download"), default="generate",
                        help="generate data offline, or download the public NYC TLC file (default: %(default)s)")


def _load(options: argparse.Namespace) -> int:
    from .taxi import load_lake

    print(f"loading the taxi month into {options.lake} ({options.rows:,} trips, {options.source}d)...", flush=True)
    summary = load_lake(options.lake, rows=options.rows, source=options.source, progress=_say)
    tables = [summary["dataset"], f"{summary['partitioned']}/"] + ([f"{summary['iceberg']}/"] if summary["iceberg"] else [])
    print(f"done: {summary['rows']:,} trips in {', '.join(tables[:-1])} and {tables[-1]}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def demo_notebooks() -> Traversable:
    """The repository's notebooks/ folder, installed as the package data of `lakemagic.notebooks`."""
    from importlib.resources import files

    return files("lakemagic.notebooks")


def _demo(options: argparse.Namespace) -> int:
    """Run the demo notebooks in order on the embedded engine; the first one loads the lake.

    They run in the output folder, not where they are installed (which may be
    read-only): 02_views writes its models/ folder next to itself. What the
    first one prints (the load's steps and progress) is shown as it comes.
    """
    import tempfile
    from importlib.resources import as_file

    import papermill
    from traitlets.config import Config

    output = Path(options.output).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    lake = options.lake if options.lake.startswith("s3://") else os.path.abspath(os.path.expanduser(options.lake))
    parameters = {"engine": "local", "lake": lake, "rows": options.rows, "source": options.source}  # cwd is output
    # The kernels listen on Unix sockets in a private folder, not on TCP ports of 127.0.0.1: only this
    # user can reach them, and ipykernel has no cause for its warning that TCP traffic is unencrypted.
    with tempfile.TemporaryDirectory(prefix="lakemagic-kernels-") as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
        for name in DEMO_NOTEBOOKS:
            target = output / name
            print(f"running {name} on the embedded engine...", flush=True)
            with as_file(demo_notebooks() / name) as notebook:
                known = papermill.inspect_notebook(str(notebook))  # each notebook takes only its own parameters
                try:
                    papermill.execute_notebook(
                        str(notebook), str(target), cwd=str(output), progress_bar=False, config=config,
                        parameters={key: value for key, value in parameters.items() if key in known},
                        stdout_file=sys.stdout if name == DEMO_NOTEBOOKS[0] else None,
                    )
                except papermill.PapermillExecutionError as failure:
                    raise RuntimeError(f"{name} failed in cell {failure.exec_count}: {failure.ename}: "
                                       f"{failure.evalue} (executed copy: {target})") from None
    output = output.resolve()
    print(f"\nran {len(DEMO_NOTEBOOKS)} notebooks on the embedded engine over the lake in {parameters['lake']};")
    print(f"the executed notebooks are in {output}:")
    for name in DEMO_NOTEBOOKS:
        print(f"  {output / name}")
    lab = Path(sys.executable).parent / "jupyter-lab"
    if lab.exists():
        print(f"open them in JupyterLab (widgets live again once a cell is re-run):\n  {lab} {output}")
    else:
        print(f"open them in JupyterLab: pip install jupyterlab, then\n  jupyter lab {output}")
    return 0


def _bench_options(parser: argparse.ArgumentParser) -> None:
    from lakelambda import DEFAULT_FUNCTION_NAME

    parser.add_argument("--function", default=os.environ.get("LAKEMAGIC_FUNCTION", DEFAULT_FUNCTION_NAME),
                        help="the Lambda function (default: LAKEMAGIC_FUNCTION or %(default)s)")
    parser.add_argument("--region", help="the AWS region (default: boto3's: AWS_DEFAULT_REGION or the profile's)")
    parser.add_argument("--profile", help="an AWS profile (default: boto3's, e.g. AWS_PROFILE)")
    parser.add_argument("--repeat", type=_positive, default=10, help="warm samples of each call (default: %(default)s)")
    parser.add_argument("--sql", help="the query to time (default: an aggregate over taxi_2019_04)")
    parser.add_argument("--cold", action="store_true",
                        help="also time a cold start to the first answer. On AWS this CHANGES THE FUNCTION'S "
                             "CONFIGURATION: it sets the environment variable LAKEMAGIC_BENCH_NONCE (the others "
                             "stay; the next deploy removes it); against `lakemagic serve` it retires the warm workers")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _bench(options: argparse.Namespace) -> int:
    """Run the benchmark and print its table; a failure is its one sentence on stderr (an SQL error adds its line)."""
    from .bench import DEFAULT_SQL, bench, print_report
    from .engines.aws_lambda import LambdaEngine
    from .errors import LakeMagicError

    engine = LambdaEngine(options.function, options.region, options.profile)
    try:
        report = bench(engine, options.repeat, options.sql or DEFAULT_SQL, cold=options.cold)
    except LakeMagicError as error:
        print(f"lakemagic bench: {error}", file=sys.stderr)
        return 1
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
