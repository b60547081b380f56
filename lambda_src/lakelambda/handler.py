"""The lake handler: what AWS Lambda calls, and what the embedded engine calls in-process.

The edge parses and validates the event, runs it within the time budget,
and answers every outcome in the protocol's shape (SQL errors included).
Even a failure nobody foresaw (a bug) is answered, as an InternalError that
says nothing of the request or the machine; the log has its details. So no
event makes Lambda report a FunctionError. Each operation is one method here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import threading
import time
import weakref
from typing import Any, Callable

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

# First of the package: where Lambda imports this module, importing `loading` starts the database's load,
# which then runs beside the imports below (loading.py).
from . import loading
# The fan-out's modules (tasks: listings and tasks) and the estimate's are imported by the operations that use
# them: a cold start's plain query needs neither.
from . import protocol, run, sandbox
from .database import NeedsTableFormats, Settings, open_database
from .errors import InternalError, LakeError, ProtocolError, QueryTimeout
from .lake import Lake
from .protocol import (ErrorAnswer, EstimateAnswer, EstimateRequest, MaterializeAnswer, MaterializeRequest,
                       PageAnswer, PartitionsAnswer, PartitionsRequest, QueryRequest, TablesAnswer, TablesRequest,
                       TaskRequest)
from .results import OPERATIONS, ResultStore
from .run import Here
from .reuse import ResultReuse
from .sql import duckdb_error, single_query
from .storage import open_storage, s3_request_timeout_s

_log = logging.getLogger(__name__)

# What platform.machine() reads (that module costs a cold start 2 ms to import).
_MACHINE = os.uname().machine
# Time kept back from the function's remaining time to answer after an interrupt.
ANSWER_RESERVE_MS = 1500


class LakeHandler:
    """A handler bound to one lake. Lambda keeps one per warm container."""

    def __init__(self, lake: str, settings: Settings | None = None, s3=None, track_progress: bool = False,
                 loaded: duckdb.DuckDBPyConnection | None = None):
        self.settings = settings or Settings.from_environment()
        self.lake = Lake(lake, s3, s3_request_timeout_s(self.settings.function_timeout_s))
        self._cold = True
        self.lake.storage.prepare()
        self.results = ResultStore(self.lake, self.settings.results_folder, self.settings.pages_folder,
                                   self.settings.inline_result_bytes, self.settings.scratch_space,
                                   self.settings.max_result_bytes)
        self.results.prepare()
        self.reuse = ResultReuse(self.lake, self.results)
        self.reuse.prepare()
        # One database per container; each invocation gets its own cursor, whose
        # temporary views vanish with it, so nothing carries over between callers.
        self._database = open_database(self.lake, self.settings, loaded=loaded)
        self.results.open_memory(self._database)
        # The table formats ("iceberg", "delta") whose extensions it has loaded (_open_table_format).
        self.table_formats: frozenset[str] = frozenset()
        self._reopen_lock = threading.Lock()
        self._running: set = set()  # the cursors of calls in progress, for interrupt() and progress()
        self._track_progress = track_progress
        # Whenever the handler goes (closed, collected, or the interpreter exits), so do its
        # database and scratch folder; a process killed outright leaves the folder to the
        # next handler's start (database.remove_stale_scratch_folders).
        self.close = weakref.finalize(self, _close, self._database, self.settings.scratch)
        # The requests about an existing result are answered by the result operations every host shares.
        self._operations: dict[type, Callable[[Any, Any], protocol.Answer]] = {
            QueryRequest: self.query, MaterializeRequest: self.materialize, TablesRequest: self.tables,
            PartitionsRequest: self.partitions, TaskRequest: self.task, EstimateRequest: self.estimate,
            **dict.fromkeys(OPERATIONS, self.serve)}

    def __call__(self, event, context=None) -> dict:
        started = time.perf_counter()
        cold, self._cold = self._cold, False
        try:
            answer = self._answer(event, context)
            return protocol.encode(dataclasses.replace(answer, stats=_stats(answer, started, cold)))
        except Exception:  # a bug no check foresaw: still an answer (never a FunctionError), its details only logged
            incident = secrets.token_hex(6)
            _log.exception("incident %s: the handler failed unexpectedly", incident)
            answer = ErrorAnswer.of(InternalError(f"the handler failed unexpectedly; its log has the details "
                                                  f"(incident {incident})"))
            return protocol.encode(dataclasses.replace(answer, stats=_stats(answer, started, cold)))

    def _answer(self, event, context) -> protocol.Answer:
        """The event's answer: every failure the protocol names (SQL errors included) is an error answer."""
        try:
            request = protocol.parse_request(event)
        except LakeError as exc:
            return ErrorAnswer.of(exc)
        return self._answered(context, lambda con: self._operations[type(request)](con, request))

    def query_here(self, request: QueryRequest, take: Callable | None = None) -> Here | ErrorAnswer:
        """A query for a host in this process (the embedded engine): its answer as an object, never encoded.

        The request is checked as the edge checks an event, and the query as
        `query` checks it, within the same budget. With `take`, the rows are
        taken from the cursor (run.execute_here) and nothing is stored that
        nobody will page or reuse; without, a small result is kept in the
        database's memory, its first page's text with it, and a larger one is
        stored as `query` stores it, for the host to read its first page where it is.
        """
        started = time.perf_counter()
        cold, self._cold = self._cold, False
        try:
            checked = protocol.parse_request(protocol.encode(request))
            if not isinstance(checked, QueryRequest) or checked.fanout_tables:
                raise ProtocolError("only a query without fan-out tables is answered in-process")
        except LakeError as exc:
            return ErrorAnswer.of(exc)

        def answer(con) -> Here:
            reuse = self.reuse.scoped(checked.reuse_scope) if checked.reuse and checked.reuse_scope else None
            if take is not None:
                return run.execute_here(con, self.lake, self.results, checked.sql, checked.params, checked.views,
                                        reuse, take)
            return run.execute_and_keep_in_memory(con, self.lake, self.results, checked.sql, checked.params,
                                                  checked.views, reuse, checked.page_size)

        here = self._answered(None, answer)
        if isinstance(here, ErrorAnswer):
            return here
        rows = here.stored.info.total_rows if here.stored is not None else len(here.rows)  # a DataFrame's
        return here._replace(stats=protocol.HandlerStats(engine_ms=round((time.perf_counter() - started) * 1000, 3),
                                                         cold=cold, rows=rows, duckdb_version=duckdb.__version__))

    def _answered(self, context, operation: Callable[[Any], Any]):
        """`operation(cursor)`, the database given a table format's extensions where a query needs them; every
        failure the protocol names (SQL errors included) is an error answer."""
        try:
            try:
                return self._run(operation, context)
            except NeedsTableFormats as needed:  # a query may read both formats: each is added once
                self._open_table_format(needed.table_format)
                try:
                    return self._run(operation, context)
                except NeedsTableFormats as more:
                    self._open_table_format(more.table_format)
                    return self._run(operation, context)
        except LakeError as exc:
            return ErrorAnswer.of(exc)
        except duckdb.Error as exc:  # in a statement of the handler's own: the catalog, a stored result
            return ErrorAnswer.of(duckdb_error(exc))

    def _run(self, operation: Callable[[Any], Any], context):
        """`operation(cursor)` on a cursor of its own, within the time budget."""
        with self._database.cursor() as con, _time_budget(con, context) as budget:
            if self._track_progress:
                # The PRAGMAs, unlike SET, pass the configuration lock; nothing is printed.
                con.execute("PRAGMA enable_progress_bar; PRAGMA disable_print_progress_bar")
            self._running.add(con)
            try:
                return operation(con)
            except (LakeError, duckdb.InterruptException) as exc:
                if budget.expired:
                    raise QueryTimeout(
                        f"the query exceeded its time budget of {budget.seconds:.1f} s "
                        "(the function's timeout, less time to answer)"
                    ) from exc
                raise
            finally:
                self._running.discard(con)

    def _open_table_format(self, table_format: str) -> None:
        """Replace the database by one that has `table_format`'s extensions too, once per container and
        format: a locked database loads none (database.open_database). Calls running on the old one finish there,
        and it is freed with their cursors (closing it would end them)."""
        with self._reopen_lock:
            if table_format in self.table_formats:
                return
            formats = self.table_formats | {table_format}
            database = open_database(self.lake, self.settings, table_formats=formats)
            self.results.open_memory(database)
            self.close.detach()
            self._database, self.table_formats = database, formats
            self.close = weakref.finalize(self, _close, database, self.settings.scratch)
            self.lake.forget_listings()  # the lake's views were the old database's

    def interrupt(self) -> None:
        """Interrupt the statements of every call in progress: each ends with an error answer.

        An interrupt that lands between two statements of a call is lost, so a
        caller that wants a call stopped repeats this until the call returns.
        """
        for con in list(self._running):
            con.interrupt()

    def progress(self) -> float | None:
        """DuckDB's progress (0-100) of the statement running now, when one call runs and DuckDB reports one.

        Only with `track_progress`: DuckDB keeps it for a statement that has run its
        progress_bar_time (2 s) and reports it for scans, not for every operator.
        """
        running = list(self._running)
        if len(running) != 1:
            return None
        percent = running[0].query_progress()
        return percent if percent > 0 else None

    def query(self, con, request: QueryRequest) -> PageAnswer | PartitionsAnswer:
        table_formats: protocol.TableFormats = ()
        if request.fanout_tables:
            from . import tasks

            listing = tasks.partitions(con, self.lake, request.fanout_tables)
            if listing.tables or listing.format_tables:  # the notebook plans the fan-out over them, or asks again without
                return listing
            table_formats = listing.table_formats  # run here, in one invocation: the answer says which
        # Without a scope nothing is reused or kept: its caller shares no secret with any other.
        reuse = self.reuse.scoped(request.reuse_scope) if request.reuse and request.reuse_scope else None
        result = run.execute_and_store(con, self.lake, self.results, request.sql, request.params, request.views, reuse)
        return PageAnswer(result.info, self.results.page(con, result, 0, request.page_size),
                          reused_from=result.reused_from, table_formats=table_formats)

    def serve(self, con, request) -> protocol.Answer:
        """A request about a stored result, answered by the result operations every host shares."""
        return OPERATIONS[type(request)](con, self.results, request)

    def materialize(self, con, request: MaterializeRequest) -> MaterializeAnswer:
        path, rows, size = run.materialize(
            con, self.lake, self.settings.results_folder, request.sql, request.path, request.views
        )
        return MaterializeAnswer(path, rows, size)

    def tables(self, con, request: TablesRequest) -> TablesAnswer:
        return TablesAnswer(self.lake.tables(con))

    def partitions(self, con, request: PartitionsRequest) -> PartitionsAnswer:
        from . import tasks

        return tasks.partitions(con, self.lake, request.tables)

    def estimate(self, con, request: EstimateRequest) -> EstimateAnswer:
        """What the query would read, from listings and footers: nothing of it runs."""
        from .estimate import reads

        return reads(con, self.lake, request, self.settings.memory_mb)

    def task(self, con, request: TaskRequest) -> PageAnswer:
        from . import tasks

        result = tasks.run_task(con, self.lake, self.results, request)
        return PageAnswer(result.info, self.results.page(con, result, 0, request.page_size))


def _close(database, scratch: str) -> None:
    database.close()
    shutil.rmtree(scratch, ignore_errors=True)


def _stats(answer: protocol.Answer, started: float, cold: bool) -> protocol.HandlerStats:
    content = getattr(answer, "page", None) or getattr(answer, "part", None)
    result = getattr(answer, "result", None)
    return protocol.HandlerStats(
        engine_ms=round((time.perf_counter() - started) * 1000, 3),
        cold=cold,
        rows=result.total_rows if result else 0,
        encoded_bytes=len(content.data) if content else 0,
        duckdb_version=duckdb.__version__,
        architecture=protocol.LAMBDA_ARCHITECTURES.get(_MACHINE, _MACHINE),
    )


class _Budget:
    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.expired = False


# How often an expired budget interrupts DuckDB again: an interrupt that lands while
# the connection is between statements (checking, planning) is lost.
REINTERRUPT_S = 0.1


@contextlib.contextmanager
def _time_budget(con, context):
    """Interrupt DuckDB before Lambda would kill the function, so the caller gets an answer.

    Once the budget runs out, DuckDB is interrupted again and again until the
    call ends, so a statement that starts after the first interrupt stops too.
    """
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else None
    budget = _Budget(None if remaining_ms is None else max(0.1, (remaining_ms - ANSWER_RESERVE_MS) / 1000))
    if budget.seconds is None:
        yield budget
        return
    done = threading.Event()

    def interrupt_when_expired():
        if done.wait(budget.seconds):
            return
        budget.expired = True
        while not done.is_set():
            con.interrupt()
            done.wait(REINTERRUPT_S)

    watcher = threading.Thread(target=interrupt_when_expired, name="time-budget", daemon=True)
    watcher.start()
    try:
        yield budget
    finally:
        done.set()
        watcher.join()


def _check_ahead(event, lake: str) -> None:
    """The first query's checks (one statement, then the sandbox on its parse tree), run while the database
    loads (loading.py): both keep their outcome per text, so the handler's own checks, which run as always,
    find the work done. Any failure is left for them to answer, as they answer it."""
    try:
        request = protocol.parse_request(event)
        if isinstance(request, QueryRequest):
            sandbox.check_query(single_query(request.sql).text, open_storage(lake).root)
    except Exception:  # the same checks run again inside the handler's edge, which answers any failure
        pass


_lambda_handler: LakeHandler | None = None
# The database's load, begun where Lambda imports this module (loading.py); None elsewhere.
_loading = loading.take()


def handler(event, context):
    """AWS Lambda's entry point: the lake comes from the function's LAKEMAGIC_LAKE."""
    global _lambda_handler, _loading
    if _lambda_handler is None:
        lake = os.environ.get("LAKEMAGIC_LAKE")
        if not lake:
            raise RuntimeError("the function has no LAKEMAGIC_LAKE environment variable naming its lake (s3://bucket[/prefix])")
        # At the first invocation the remaining time is the function's whole timeout.
        timeout_s = context.get_remaining_time_in_millis() / 1000 if context is not None else None
        if _loading is not None:  # once: had it failed, the next invocation opens the database itself
            started, _loading = _loading, None
            _check_ahead(event, lake)
            settings, loaded = started.result()
            settings = dataclasses.replace(settings, function_timeout_s=timeout_s or settings.function_timeout_s)
        else:
            settings, loaded = Settings.from_environment(function_timeout_s=timeout_s), None
        _lambda_handler = LakeHandler(lake, settings, loaded=loaded)
    return _lambda_handler(event, context)
