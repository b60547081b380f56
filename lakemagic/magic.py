"""The `%%lakesql` cell magic and `%lakesql` line magic: thin layers over `client.run_query`."""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import os
import re
import shlex

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import HTML, display
from traitlets import Bool, Enum, Int, Unicode, default, observe

from lakelambda import DEFAULT_FUNCTION_NAME
from lakelambda.protocol import DASHBOARD_FOLDER

from . import catalog, charts, client, dryrun, export, waiting
from .decode import FRAME_KINDS
from .display.widget import ResultTable
from .engines import DEFAULT_LAKE, Engine
from .engines.aws_lambda import LambdaEngine
from .engines.embedded import EmbeddedEngine
from .errors import ViewError, lines_as_in_the_cell
from .fanout import runner as fanout_runner
from .fanout.runner import DEFAULT_MAX_FANOUT
from .params import bind_parameters
from .views import ViewRegistry

_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_]\w*)\s*<<\s*(.*)$", re.S)


@magics_class
class LakeMagic(Magics):
    """Query the lake with SQL. Configure with %config LakeMagic.<name> = value."""

    engine = Enum(["local", "lambda"], help="Where queries run: 'local' (in this kernel) or 'lambda'.").tag(config=True)
    lake = Unicode(help="The lake folder of the 'local' engine; for 'lambda', the function's lake (s3://bucket[/prefix]), "
                        "the one place its download URLs may lead.").tag(config=True)
    page_size = Int(help="Rows per page in the result table.").tag(config=True)
    function_name = Unicode(help="The Lambda function of the 'lambda' engine.").tag(config=True)
    region = Unicode("", help="AWS region of the function (default: boto3's own resolution).").tag(config=True)
    profile = Unicode("", help="AWS profile to invoke with (default: boto3's own resolution).").tag(config=True)
    reuse_results = Bool(help="Answer a repeated query over unchanged inputs from its stored result.").tag(config=True)
    reuse_scope = Unicode(help="A secret shared by those whose stored results may answer each other's queries "
                               "(default: $LAKEMAGIC_REUSE_SCOPE, else your own in ~/.lakemagic/reuse-scope)."
                          ).tag(config=True)
    max_fanout = Int(help="On the 'lambda' engine, the most invocations one query over a Hive-partitioned "
                          "table fans out to (1: never).").tag(config=True)
    max_scan_bytes = Int(help="Refuse a %%lakesql query the engine estimates would read more bytes of the lake "
                              "(0: no limit; see --dry-run).").tag(config=True)

    @default("function_name")
    def _default_function_name(self):
        return os.environ.get("LAKEMAGIC_FUNCTION", DEFAULT_FUNCTION_NAME)

    @default("engine")
    def _default_engine(self):
        return os.environ.get("LAKEMAGIC_ENGINE", "local")

    @default("lake")
    def _default_lake(self):
        return os.environ.get("LAKEMAGIC_LAKE", DEFAULT_LAKE)

    @default("reuse_results")
    def _default_reuse_results(self):
        return os.environ.get("LAKEMAGIC_REUSE_RESULTS", "1") not in ("0", "false", "no")

    @default("max_fanout")
    def _default_max_fanout(self):
        return int(os.environ.get("LAKEMAGIC_MAX_FANOUT", str(DEFAULT_MAX_FANOUT)))

    @default("max_scan_bytes")
    def _default_max_scan_bytes(self):
        return int(os.environ.get("LAKEMAGIC_MAX_SCAN_BYTES", "0"))

    @default("page_size")
    def _default_page_size(self):
        return int(os.environ.get("LAKEMAGIC_PAGE_SIZE", "50"))

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._engine: Engine | None = None
        self.views = ViewRegistry()

    @observe("engine", "lake", "function_name", "region", "profile")
    def _forget_engine(self, change) -> None:
        self._engine = None

    def current_engine(self) -> Engine:
        if self._engine is None:
            if self.engine == "lambda":  # the trait's value names the engine to make
                self._engine = LambdaEngine(self.function_name, self.region or None, self.profile or None,
                                            lake=self.lake if self.lake.startswith("s3://") else None)
            else:
                self._engine = EmbeddedEngine(self.lake)
        return self._engine

    @magic_arguments()
    @argument("-p", "--page-size", type=int, help="Rows per page for this result (default: LakeMagic.page_size).")
    @argument("--no-reuse", action="store_true",
              help="Run the query even if its result over the same inputs is stored (default: LakeMagic.reuse_results).")
    @argument("--fanout", type=int, metavar="N",
              help="On the lambda engine, fan the query out to at most N invocations (1: one; default: LakeMagic.max_fanout).")
    @argument("--explain", action="store_true",
              help="Print the fan-out plan (tasks, partitions, task and merge SQL) or why none, and what it reads; run nothing.")
    @argument("--dry-run", action="store_true",
              help="Say what the query would read (files, bytes, row groups) and cost, from the lake's listings "
                   "and Parquet footers; run nothing.")
    @argument("--save", metavar="NAME", help="Keep the query as view NAME; later queries and views use it by name.")
    @argument("--materialize", action="store_true",
              help="With --save NAME: write the view's result into the lake (dashboard/NAME.parquet); "
                   "from then on NAME reads that file. Without SQL, materializes the saved view NAME.")
    @argument("--to", metavar="PATH", help="Where --materialize writes, under dashboard/ (default: dashboard/NAME.parquet).")
    @argument("--views", action="store_true", help="List the saved views, what each uses, and which are materialized.")
    @argument("--save-views", metavar="FOLDER", help="Write every view to FOLDER/<name>.sql (one model per file).")
    @argument("--load-views", metavar="FOLDER", help="Read views from FOLDER/*.sql.")
    @argument("--tables", action="store_true",
              help="List the lake's tables (kind, partition keys, files, bytes, rows, snapshot, location) and saved views.")
    @argument("--columns", metavar="NAME", help="The columns of table or saved view NAME, with their types.")
    @argument("--export", metavar="PATH", help="Write the whole result to a local .parquet or .csv file (atomically).")
    @argument("--as", dest="kind", choices=sorted(FRAME_KINDS), default="pandas",
              help="With VAR << (or the line magic): the whole result as a pandas DataFrame (the default), "
                   "a pyarrow Table (arrow) or a polars DataFrame (polars).")
    @line_cell_magic
    @no_var_expand  # $name is a bound parameter, not text for IPython to splice in
    @lines_as_in_the_cell
    def lakesql(self, line: str, cell: str | None = None):
        """Run SQL on the lake and show the result as a paged table.

        Usage:

          %%lakesql [options] [VAR <<]
          SELECT ...

          %lakesql [options] [VAR <<] SELECT ...

        As a cell magic the result appears as a table that fetches pages on
        demand; click a header to sort the whole result, or a bar or value of
        the summary row to filter it to those rows; filter it with an SQL
        condition, profile a column, go to a row, export it. `VAR <<` assigns
        the whole result to VAR as a pandas DataFrame instead (`--as arrow`,
        `--as polars` for those). The line magic returns the whole result as a DataFrame, so
        `x = %lakesql SELECT ...` works too. `$name` in the SQL is bound to
        the notebook variable `name` as a query parameter. Saved views are
        used by name, in any query or view.
        """
        options, rest = _split_options(self.lakesql.parser, line)
        if options.views or options.save_views or options.load_views:
            return self._manage_views(options)
        if options.tables or options.columns:
            return self._catalog(options, rest, cell)
        target, sql = _target_and_sql(rest, cell)
        if options.materialize and not options.save:
            raise UsageError("--materialize needs the view's name: --save NAME")
        if options.materialize and not sql.strip():
            return self._materialize(options.save, options.to)
        if not sql.strip():
            raise UsageError("no SQL to run")
        page_size, fanout = self._sizes(options)
        _check_output_options(options, target is not None or cell is None)
        if options.explain or options.dry_run:
            return self._explain(sql, fanout, options.dry_run)
        return self._run(options, sql, target, cell is None, page_size, fanout)

    def _catalog(self, options, rest: str, cell: str | None):
        """--tables or --columns NAME: the lake's tables and saved views, or one's columns."""
        if rest.strip() or (cell or "").strip():
            raise UsageError("--tables and --columns NAME take no SQL; run the query in a cell of its own")
        if options.tables:
            return catalog.tables_frame(client.tables(self.current_engine()), self.views)
        return catalog.describe(self.current_engine(), options.columns, self.views)

    def _sizes(self, options) -> tuple[int, int]:
        """The page size and the most invocations a fan-out may use, from the options or the configuration."""
        page_size = options.page_size or self.page_size
        if page_size < 1:
            raise UsageError(f"the page size must be at least 1, not {page_size}")
        fanout = self.max_fanout if options.fanout is None else options.fanout
        if fanout < 1:
            raise UsageError(f"--fanout must be at least 1 (1 runs the query on one invocation), not {fanout}")
        return page_size, fanout

    def _run(self, options, sql: str, target: str | None, line: bool, page_size: int, fanout: int):
        """Run the query while the waiting line counts, then export, save, assign or show its result."""
        params = bind_parameters(sql, self.shell.user_ns)
        reuse = self._reuse(not options.no_reuse)
        engine = self.current_engine()
        # Only the whole result is wanted, and its engine runs here: its rows come straight from the query.
        whole_here = (target is not None or line) and not options.export and engine.in_process
        with waiting.Wait(engine) as wait:
            with catalog.saved_views_named(engine, self.views):
                views = self.views.resolve(sql)
                self._guard(engine, sql, params, views)
                if whole_here:
                    frame = wait.run(lambda: client.query_frame(engine, sql, params, views, reuse, options.kind))
                else:
                    result = wait.run(lambda: self._run_query(engine, sql, params, page_size, views, reuse, fanout))
            if options.export:  # never whole_here: the export writes the stored result
                _export(result, options.export)
            self._keep(options, sql)
            if target is None and not line:
                wait.show(ResultTable(result, page_size))  # in place of the waiting line
                return None
            if not whole_here:
                frame = _whole_frame(result, options.kind)
        if target is None:
            return frame
        self.shell.user_ns[target] = frame
        return None

    def _keep(self, options, sql: str) -> None:
        """--save NAME (and --materialize) once the query ran: only a query that ran is kept."""
        if options.save:
            self.views.save(options.save, sql)
            if options.materialize:
                self._materialize(options.save, options.to)

    def _reuse(self, wanted: bool) -> bool | str:
        """client.run_query's `reuse`: False, or the scope to reuse results within (True: the user's own)."""
        return (self.reuse_scope or True) if wanted and self.reuse_results else False

    def _run_query(self, engine: Engine, sql: str, params: dict, page_size: int, views: tuple, reuse: bool | str,
                   fanout: int) -> client.QueryResult:
        """The query on one invocation, or fanned out on the Lambda engine (the local one is one process);
        a fan-out's tasks done of total go to the waiting line."""
        if not engine.can_fan_out or fanout == 1:
            return client.run_query(engine, sql, params, page_size, views, reuse)
        return fanout_runner.run(engine, sql, params, page_size, views, fanout, waiting.current().tasks, reuse)

    def _guard(self, engine: Engine, sql: str, params: dict, views: tuple) -> None:
        """LakeMagic.max_scan_bytes: refuse, before it runs, a query estimated to read more."""
        if self.max_scan_bytes > 0:
            refusal = dryrun.refusal(dryrun.estimate(engine, sql, params, views), self.max_scan_bytes)
            if refusal:
                raise UsageError(refusal)

    def _explain(self, sql: str, fanout: int, dry_run: bool):
        """--explain prints the fan-out plan and a line of what the query reads; --dry-run returns what it reads,
        its invocations and its cost (a DryRun, shown as a table)."""
        engine, params = self.current_engine(), bind_parameters(sql, self.shell.user_ns)
        with catalog.saved_views_named(engine, self.views):
            views = self.views.resolve(sql)
            if dry_run:
                return dryrun.dry_run(engine, sql, params, views, fanout)
            text = fanout_runner.explain(engine, sql, views, fanout)
            text += "\n" + dryrun.estimate(engine, sql, params, views).line()
        if not engine.can_fan_out:
            text += f"\n(The {engine.name} engine runs every query in this kernel as one; this is the plan on the lambda engine.)"
        print(text)
        return None

    @magic_arguments()
    @argument("kind", choices=["hist", "bar", "line"], help="hist: a histogram of X; bar: the top values of X; line: X in order")
    @argument("x", help="the column (or, for line, an expression such as date_trunc('day', pickup_at))")
    @argument("--from", dest="source", required=True, metavar="SOURCE", help="a table, a view, or (SELECT ...)")
    @argument("--y", help="the column to aggregate per X (default: count rows)")
    @argument("--agg", default="count", help="count, sum, avg, min or max of --y (default: count)")
    @argument("--bins", type=int, default=30, help="bins of a histogram (default: 30)")
    @argument("--top", type=int, default=20, help="bars of a bar chart (default: 20)")
    @argument("--where", help="an SQL condition on the rows")
    @line_magic
    @no_var_expand
    def lakeplot(self, line: str):
        """Chart a table or view; the aggregation runs in the engine and only it crosses the wire.

        Examples:

          %lakeplot hist trip_distance --from taxi_2019_04 --bins 40 --where "trip_distance < 30"
          %lakeplot bar pickup_location_id --from my_view --y trips --agg sum
          %lakeplot line date --from partitioned
        """
        # Shell-style quoting, so `--where "payment_type = '1'"` keeps its inner quotes only.
        options = self.lakeplot.parser.parse_args(shlex.split(line))
        run = self._run_to_frame
        try:  # a bad option value is named in one line, like the parser's own errors
            if options.kind == "hist":
                return charts.histogram(run, options.source, options.x, options.bins, options.where)
            if options.kind == "bar":
                return charts.bar(run, options.source, options.x, options.y, options.agg, options.top, options.where)
            return charts.line(run, options.source, options.x, options.y, options.agg, options.where)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _run_to_frame(self, sql: str) -> pd.DataFrame:
        """A chart's aggregate, whole, in one call (client.query_frame)."""
        views, engine = self.views.resolve(sql), self.current_engine()
        with waiting.Wait(engine) as wait:
            return wait.run(lambda: client.query_frame(engine, sql, {}, views, self._reuse(True)))

    def _materialize(self, name: str, path: str | None):
        if name not in self.views:
            raise ViewError(f"there is no saved view named {name!r}; save one with %%lakesql --save {name}")
        view = self.views[name]
        written = client.materialize(
            self.current_engine(), view.sql, path or f"{DASHBOARD_FOLDER}/{view.name}.parquet", self.views.resolve(view.sql)
        )
        self.views.mark_materialized(view.name, written.path)
        display(HTML(f"<div class='lakemagic-summary'>materialized <b>{html.escape(view.name)}</b> → "
                     f"{html.escape(written.path)}: {written.rows:,} rows, {written.bytes:,} bytes</div>"))

    def _manage_views(self, options):
        if options.load_views:
            loaded = self.views.load_folder(options.load_views)
            print(f"loaded {len(loaded)} views from {options.load_views}: {', '.join(loaded)}")
        if options.save_views:
            written = self.views.save_folder(options.save_views)
            print(f"wrote {len(written)} views to {options.save_views}")
        if options.views:
            return catalog.Listing(self.views.listing(), columns=["view", "depends on", "materialized", "at"])
        return None


def _split_options(parser, line: str):
    """The magic's leading options, parsed by its own parser, and the rest of the line untouched.

    The rest may be SQL, which an argument parser would mangle (quotes), so
    the options end at the first word that starts no option and is not
    claimed as an option's value: the shortest run of leading words that
    the parser accepts as they are.
    """
    words = list(re.finditer(r"\S+", line))
    for count in range(len(words) + 1):
        if count < len(words) and words[count].group().startswith("-"):
            continue
        try:
            options = argparse.Namespace(**_options_of(parser, tuple(word.group() for word in words[:count])))
        except UsageError:
            continue
        return options, line[words[count].start():] if count < len(words) else ""
    return parser.parse_args([word.group() for word in words]), ""  # raises the parser's own UsageError


@functools.lru_cache(maxsize=64)  # a cell run again gives its options again: parsed once (each caller copies them)
def _options_of(parser, words: tuple[str, ...]) -> dict:
    return vars(parser.parse_args(list(words)))


def _target_and_sql(rest: str, cell: str | None) -> tuple[str | None, str]:
    """`VAR <<` (or None) and the SQL: the cell's, or the rest of the line's."""
    target, sql = _split_assignment(rest)
    if cell is None:
        return target, sql
    if sql.strip():
        raise UsageError(f"unexpected text before the SQL: {sql.strip()!r}; write `%%lakesql VAR <<`")
    return target, cell


def _split_assignment(text: str) -> tuple[str | None, str]:
    match = _ASSIGNMENT.match(text)
    return (match.group(1), match.group(2)) if match else (None, text)


def _check_output_options(options, whole: bool) -> None:
    """Refuse what cannot be done before the query runs: a file this cannot write, a frame kind not installed."""
    if options.export:
        try:
            export.file_format(options.export)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(options.export)))
        if not os.path.isdir(folder):
            raise UsageError(f"--export: there is no folder {folder}")
    if options.kind != "pandas":
        if not whole:
            raise UsageError(f"--as {options.kind} gives the whole result to a variable: write `%%lakesql --as "
                             f"{options.kind} VAR <<`")
        try:
            export.check_frame_kind(options.kind)
        except ImportError as exc:
            raise UsageError(str(exc)) from None


def _export(result: client.QueryResult, path: str) -> None:
    with _progress(result, "exporting") as progress:
        rows = export.write(result, path, progress)
    display(HTML(f"<div class='lakemagic-summary'>exported {rows:,} rows to {html.escape(path)}</div>"))


def _whole_frame(result: client.QueryResult, kind: str = "pandas"):
    """The whole result as a DataFrame (or `kind`), with a progress bar when it takes more than one call."""
    with _progress(result, "fetching") as progress:
        return result.to_dataframe(progress, kind)


@contextlib.contextmanager
def _progress(result: client.QueryResult, what: str):
    """A progress bar while a result is fetched from a remote engine; none for a result already on this machine."""
    if result.engine.shares_files:
        yield None
        return
    import ipywidgets as widgets

    bar = widgets.IntProgress(min=0, max=result.info.result_bytes, description=what)
    handle = display(bar, display_id=True)

    def progress(fetched: int, total: int) -> None:
        bar.value = fetched
        bar.description = f"{fetched / 1e6:,.1f}/{total / 1e6:,.1f} MB"

    try:
        yield progress
    finally:
        bar.close()
        if handle is not None:
            handle.update({"text/plain": ""}, raw=True)
