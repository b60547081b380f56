"""The `lakemagic` command: build the demo lake, run the demo notebooks, serve a local Lambda."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .engine import DEFAULT_LAKE

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
DEMO_NOTEBOOKS = ("01_load.ipynb", "02_views.ipynb", "03_charts.ipynb")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from .local_lambda import main as serve

        return serve(argv[1:])
    if argv[:1] in (["deploy"], ["destroy"]):
        from lakedeploy.cli import main as deploy

        return deploy(argv)
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        return options.run(options)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"lakemagic {options.command}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakemagic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    load = commands.add_parser("load", help="put the NYC taxi month into a lake (a folder or s3://bucket[/prefix])")
    _lake_options(load)
    load.set_defaults(run=_load)

    demo = commands.add_parser("demo", help="build the demo lake if needed and run the demo notebooks with papermill")
    _lake_options(demo)
    demo.add_argument("--output", default=str(NOTEBOOKS / "executed"), help="where the executed notebooks go")
    demo.set_defaults(run=_demo)

    commands.add_parser("serve", help="run a local endpoint that speaks the Lambda Invoke API (see `lakemagic serve --help`)")
    commands.add_parser("deploy", help="create or update the Lambda function over an S3 lake (see `lakemagic deploy --help`)")
    commands.add_parser("destroy", help="remove what `lakemagic deploy` created, except the bucket and its data")
    return parser


def _lake_options(parser: argparse.ArgumentParser) -> None:
    from .taxi import TAXI_MONTH_ROWS

    parser.add_argument("--lake", default=os.environ.get("LAKEMAGIC_LAKE", DEFAULT_LAKE), help="the lake folder (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=TAXI_MONTH_ROWS, help="trips to generate (default: the real month's %(default)s)")
    parser.add_argument("--source", choices=("generate", "download"), default="generate",
                        help="generate data offline, or download the public NYC TLC file (default: %(default)s)")


def _load(options) -> int:
    from .taxi import load_lake

    print(f"loading the taxi month into {options.lake} ({options.rows:,} trips, {options.source}d)...", flush=True)
    summary = load_lake(options.lake, rows=options.rows, source=options.source)
    print(f"done: {summary['rows']:,} trips in {summary['dataset']} and {summary['partitioned']}/")
    return 0


def _demo(options) -> int:
    """Run the demo notebooks in order on the embedded engine; the first one loads the lake."""
    import papermill

    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    parameters = {"engine": "local", "lake": os.path.expanduser(options.lake), "rows": options.rows, "source": options.source}
    for name in DEMO_NOTEBOOKS:
        target = output / name
        print(f"running {name} on the embedded engine...", flush=True)
        known = papermill.inspect_notebook(str(NOTEBOOKS / name))  # each notebook takes only its own parameters
        try:
            papermill.execute_notebook(
                str(NOTEBOOKS / name), str(target), cwd=str(NOTEBOOKS), progress_bar=False,
                parameters={key: value for key, value in parameters.items() if key in known},
            )
        except papermill.PapermillExecutionError as failure:
            raise RuntimeError(f"{name} failed in cell {failure.exec_count}: {failure.ename}: {failure.evalue} "
                               f"(executed copy: {target})") from None
        print(f"  executed copy: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
