"""Running a query fanned out over many invocations: list, prune, plan, run the tasks at once, merge.

The query's own invocation answers with the listing of the partitioned tables
a splittable query reads (or runs it, where none is); each task is one `task` invocation over its
share of the files, at most `max_fanout` of them, run at once on bounded
threads over the engine (boto3's Lambda client is thread-safe). A task that
fails in a way another try may cure (throttled, crashed, timed out) is run
again, a bounded number of times; any other failure fails the query, and no
result is shown without every task's part. The kernel engine merges the
tasks' results into a result it holds and serves like any other.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

import duckdb

from lakelambda import protocol
from lakelambda.protocol import MAX_LISTED_TABLES, MAX_PAGE_ROWS, MAX_TASK_FILE_CHARS, MAX_TASK_FILES, View
from lakelambda.sql import duckdb_error, parameter_names, referenced_tables

from .. import client
from ..client import CallStats, FanoutReceipt, QueryResult
from ..engines import Engine
from ..engines.kernel import kernel_engine
from ..errors import EngineError, LakeQueryError, RetryableEngineError
from .files import PartitionFile
from .planner import NotSplit, Plan, plan, shape
from .prune import prune
from .transforms import prune_format
from .tree import PARTIALS

# LakeMagic.max_fanout's default: the most invocations one query fans out to.
DEFAULT_MAX_FANOUT = 32
# Threads that wait on invocations at once; the rest of the tasks queue behind them.
MAX_THREADS = 64
# Tries of one task in all, for failures another try may cure.
TASK_ATTEMPTS = 6
RETRY_MAX_DELAY_S = 2.0
RETRY_BASE_DELAY_S = 0.25
# How a reason names a table format.
FORMAT_NAMES = {"iceberg": "an Iceberg", "delta": "a Delta"}
# Error answers another try may cure: the task ran out of time, or storage did not answer.
RETRYABLE_ANSWERS = {"QueryTimeout", "LakeUnavailable"}


@dataclass
class Decision:
    """What a fan-out does with a query: its plan, or why it runs on one invocation."""

    plan: Plan | None = None
    reason: str | None = None
    table: str | None = None
    key_types: dict[str, str] = field(default_factory=dict)
    partitioned: bool = False  # the query reads a partitioned table (so not splitting it is news)
    pin: str | None = None  # an Iceberg or Delta table's: the snapshot the listing read, which every task reads
    calls: list[CallStats] = field(default_factory=list)  # the listing's


def decide(engine: Engine, sql: str, views: tuple[View, ...], max_fanout: int,
           params: dict | None = None) -> Decision:
    """Plan `sql` over the partitioned lake table it reads, or say why it is not split; runs nothing but a listing."""
    tables, reason = _splittable_tables(sql, views, max_fanout)
    if not tables:
        return Decision(reason=reason)
    answer, stats = client.call(engine, protocol.PartitionsRequest(tuple(tables)), protocol.PartitionsAnswer, sql)
    return _plan_over(answer, stats, tables, sql, views, max_fanout, params)


def _splittable_tables(sql: str, views: tuple[View, ...], max_fanout: int) -> tuple[tuple[str, ...], str | None]:
    """The lake tables whose files the query's shape could be split over (at most MAX_LISTED_TABLES), or
    none and why; from the parse tree alone, before anything is listed."""
    if max_fanout <= 1:
        return (), "fan-out is off (at most 1 task)"
    view_names = {view.name.lower() for view in views}
    candidates = sorted(name for name in referenced_tables(sql) if name.lower() not in view_names)
    if not candidates:
        through_views = sorted({name for view in views for name in referenced_tables(view.sql)
                                if name.lower() not in view_names})
        if through_views:
            return (), f"the query reads {', '.join(through_views)} only through its views, which are not split"
        return (), "the query reads no lake table"
    shapes = {name: shape(sql, name) for name in candidates}
    splittable = tuple(name for name, shape in shapes.items() if not isinstance(shape, NotSplit))
    if not splittable:
        return (), shapes[candidates[0]].reason
    return splittable[:MAX_LISTED_TABLES], None


def _plan_over(answer: protocol.PartitionsAnswer, listing: CallStats, tables: tuple[str, ...], sql: str,
               views: tuple[View, ...], max_fanout: int, params: dict | None) -> Decision:
    """The plan of `sql` over the partitioned tables the listing found (Hive, or Iceberg and Delta tables split
    over their data files), or why it is not split. An Iceberg or Delta table that is not split, read beside
    the split one, is read whole by every task, as a dataset is."""
    decision = Decision(calls=[listing])
    listed: list[protocol.PartitionedTable | protocol.FormatTable] = [*answer.tables, *answer.format_tables]
    if not listed:
        if answer.table_formats:  # said, as a Hive table's reason would be
            decision.table, decision.partitioned = answer.table_formats[0][0], True
            decision.reason = _one_invocation(answer.table_formats)
        else:
            decision.reason = f"{' or '.join(tables)} is not a Hive-partitioned table"
        return decision
    table = max(listed, key=lambda found: sum(file.bytes for file in found.files))
    decision.table, decision.partitioned = table.name, True
    for view in views:
        if table.name.lower() in {name.lower() for name in referenced_tables(view.sql)}:
            decision.reason = f"the view {view.name} reads {table.name}, so each task would see only its share there too"
            return decision
    if isinstance(table, protocol.FormatTable):
        decision.pin = table.pin
        files, kept = _format_files(sql, table, params)
    else:
        decision.key_types = {column.name: column.type for column in table.key_types}
        files = [PartitionFile(file.path, file.bytes, dict(file.partition)) for file in table.files]
        kept = prune(sql, table.name, files, decision.key_types, params)
    planned = plan(sql, table.name, kept, max_fanout, key_types=decision.key_types)
    if isinstance(planned, NotSplit):
        decision.reason = planned.reason
    elif any(not _fits_a_request(task.files) for task in planned.tasks):
        decision.reason = (f"the {len(kept)} files of {table.name} it reads are too many for {len(planned.tasks)} "
                           f"tasks (one names at most {MAX_TASK_FILES} files, {MAX_TASK_FILE_CHARS} characters "
                           "of them); a larger --fanout splits them finer")
    elif len(planned.tasks) == 1:
        one = len(kept) == 1
        decision.reason = (f"{'the file' if one else f'the {len(kept)} files'} of {table.name} it reads "
                           f"({'one ' if one else ''}of {len(files)}, after pruning) make{'s' * one} one task")
    else:
        decision.plan = planned
    return decision


def _format_files(sql: str, table: protocol.FormatTable, params: dict | None
                  ) -> tuple[list[PartitionFile], list[PartitionFile]]:
    """An Iceberg or Delta table's data files, and those the query's filter leaves, as the planner takes them:
    a file's partition is what --explain shows of it, `column` or `transform(column)` = value."""
    def planned(file: protocol.FormatFile) -> PartitionFile:
        return PartitionFile(file.path, file.bytes, {
            column if how == "identity" else f"{how}({column})": "NULL" if value is None else value
            for column, how, value in file.partition})

    return list(map(planned, table.files)), list(map(planned, _kept_format_files(sql, table, params)))


def _kept_format_files(sql: str, table: protocol.FormatTable, params: dict | None) -> list[protocol.FormatFile]:
    """The data files whose partition values (Iceberg transforms, Delta identity values) and statistics may
    hold rows passing the query's filter, by transforms.prune_format over the table's columns as the listing
    types them. A forged listing can only drop files the handler itself listed, as a Hive listing's values can."""
    return prune_format(sql, table.name, table.files, {column.name: column.type for column in table.columns}, params)


def _one_invocation(table_formats: protocol.TableFormats) -> str:
    """Why a query over an Iceberg or Delta table is not split, in the handler's words."""
    name, kind, reason = table_formats[0]
    return f"{name} is {FORMAT_NAMES[kind]} table that is not split over its data files: {reason}"


def _fits_a_request(files) -> bool:
    """A task's files, as few and as short as a task request may name (protocol.py)."""
    return len(files) <= MAX_TASK_FILES and sum(len(file.path) for file in files) <= MAX_TASK_FILE_CHARS


def explain(engine: Engine, sql: str, views: tuple[View, ...], max_fanout: int) -> str:
    """What %%lakesql --explain prints: the plan, or why the query runs on one invocation."""
    decision = decide(engine, sql, views, max_fanout)
    if decision.plan is None:
        return f"Runs on one invocation: {decision.reason}."
    return decision.plan.explanation


def run(engine: Engine, sql: str, params: dict, page_size: int, views: tuple[View, ...], max_fanout: int,
        progress: Callable[[int, int], None] | None = None, reuse: bool | str = True) -> QueryResult:
    """The result of `sql`, fanned out where its shape and its table allow, else run on one invocation
    (which may reuse a stored result, with `reuse`, as client.run_query; a fan-out's tasks always run)."""
    started = time.perf_counter()
    tables, _ = _splittable_tables(sql, views, max_fanout)
    if not tables:
        return client.run_query(engine, sql, params, page_size, views, reuse)
    # One call: the query runs there unless a table it could be split over is partitioned, whose listing comes back.
    first, stats, table_formats = client.run_query_unless_partitioned(engine, sql, params, page_size, views, reuse,
                                                                      tables)
    if isinstance(first, QueryResult):
        if table_formats:  # it ran, in one invocation: the footer says why it was not split
            first.stats = first.last_call = _with_receipt(first.stats, FanoutReceipt(not_split=_one_invocation(
                table_formats)))
        return first
    decision = _plan_over(first, stats, tables, sql, views, max_fanout, params)
    if decision.plan is None:
        result = client.run_query(engine, sql, params, page_size, views, reuse)
        # The reason is news to someone who may have expected a fan-out.
        result.stats = result.last_call = _with_receipt(result.stats, FanoutReceipt(not_split=decision.reason))
        return result
    planned = decision.plan
    outcomes = _run_all(engine, task_requests(decision, params, views), sql, progress)
    merged = merge_results(planned, [outcome.result for outcome in outcomes], params, page_size)
    receipt = _receipt(planned, outcomes, decision.calls + [outcome.result.stats for outcome in outcomes])
    stats = CallStats(merged.stats, round(1000 * (time.perf_counter() - started), 3), None, receipt)
    return client.result_of(kernel_engine(), sql, merged, stats)


def task_requests(decision: Decision, params: dict, views: tuple[View, ...]) -> list[protocol.TaskRequest]:
    """The `task` request of each task of a decision's plan."""
    planned = decision.plan
    task_params = {name: value for name, value in params.items() if name in parameter_names(planned.task_sql)}
    key_types = () if decision.pin else tuple(dict(planned.key_types).items())
    return [protocol.TaskRequest(planned.task_sql, task_params, MAX_PAGE_ROWS, planned.shape.table,
                                 tuple(file.path for file in task.files), key_types, tuple(views), decision.pin)
            for task in planned.tasks]


def merge_results(planned: Plan, results: list[QueryResult], params: dict, page_size: int) -> protocol.PageAnswer:
    """The tasks' results merged by the kernel engine into a result it holds, with its first page.

    Each task's result is read whole where it is (the kernel holds an inline one) or fetched as one file;
    the tasks' results the kernel held are let go once merged.
    """
    columns = results[0].columns
    if any(result.columns != columns for result in results):
        raise EngineError("the fan-out's tasks answered with different columns; run the query with --fanout 1")
    kernel = kernel_engine()
    try:
        with contextlib.ExitStack() as fetched:
            files = [path for result in results for path in fetched.enter_context(result.local_files())]
            return kernel.merge(files, columns, planned.merge_sql, PARTIALS, params, page_size,
                                rows=sum(result.total_rows for result in results))
    except duckdb.Error as exc:
        error = duckdb_error(exc)
        raise LakeQueryError(error.error_type, f"in the fan-out's merge: {error.message}") from None
    finally:
        for result in results:
            if result.engine is kernel:
                kernel.forget(result.result_id)


@dataclass
class _Outcome:
    result: QueryResult
    retries: int  # tries that failed before this one
    wall_ms: float


def _run_all(engine: Engine, requests: list[protocol.TaskRequest], sql: str,
             progress: Callable[[int, int], None] | None) -> list[_Outcome]:
    """Every task's outcome, in task order; the first failure that no retry cures fails them all."""
    if progress is not None:
        progress(0, len(requests))
    pool = ThreadPoolExecutor(min(len(requests), MAX_THREADS), thread_name_prefix="lakemagic-task")
    given_up = threading.Event()  # once one task has failed for good, the others stop trying again
    try:
        pending = {pool.submit(_run_task, engine, request, sql, given_up) for request in requests}
        futures = list(pending)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # raises the task's failure: no result is shown without every task
            if progress is not None:
                progress(len(requests) - len(pending), len(requests))
        return [future.result() for future in sorted(futures, key=futures.index)]
    finally:
        given_up.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _run_task(engine: Engine, request: protocol.TaskRequest, sql: str, given_up: threading.Event) -> _Outcome:
    started, attempt = time.perf_counter(), 1
    while True:
        try:
            result = client.run_request(engine, request, sql)
            return _Outcome(result, attempt - 1, 1000 * (time.perf_counter() - started))
        except RetryableEngineError:
            if attempt == TASK_ATTEMPTS or given_up.is_set():
                raise
        except LakeQueryError as error:
            if error.error_type not in RETRYABLE_ANSWERS or attempt == TASK_ATTEMPTS or given_up.is_set():
                # The task's SQL is not the cell's: a position in it would point at the wrong text.
                raise LakeQueryError(error.error_type, error.message) from None
        # Waiting on the event, not sleeping: a fan-out given up meanwhile pays for no further call.
        if given_up.wait(random.uniform(0, min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2**attempt))):
            raise EngineError("the fan-out was given up while this task waited to be tried again")
        attempt += 1


def _receipt(planned: Plan, outcomes: list[_Outcome], calls: list[CallStats]) -> FanoutReceipt:
    figures = [call.lambda_figures for call in calls if call.lambda_figures is not None]
    billed = [f for f in figures if f.billed_ms is not None and f.memory_mb is not None]
    costs = [f.cost_usd for f in figures if f.cost_usd is not None]
    return FanoutReceipt(
        tasks=len(planned.tasks),
        partitions=sum(len(task.partitions()) for task in planned.tasks),
        slowest_task_ms=max(outcome.wall_ms for outcome in outcomes),
        billed_gb_s=sum(f.billed_ms / 1000 * f.memory_mb / 1024 for f in billed) if billed else None,
        cost_usd=sum(costs) if costs else None,
        retries=sum(outcome.retries for outcome in outcomes),
    )


def _with_receipt(stats: CallStats, receipt: FanoutReceipt) -> CallStats:
    return CallStats(stats.engine, stats.round_trip_ms, stats.lambda_figures, receipt)
