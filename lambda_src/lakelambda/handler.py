"""The lake handler: what AWS Lambda calls, and what the embedded engine calls in-process.

The edge parses and validates the event, then hands plain values to
`query.run_query` / `query.read_page`. Every outcome, SQL errors included,
is an answer in the protocol's shape; only bugs escape as exceptions.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time

import duckdb

from . import protocol, query
from .database import Settings, open_database
from .lake import Lake, warm_up_s3_client
from .results import ResultStore

# Time kept back from the function's remaining time to answer after an interrupt.
ANSWER_RESERVE_MS = 1500


class LakeHandler:
    """A handler bound to one lake. Lambda keeps one per warm container."""

    def __init__(self, lake: str, settings: Settings | None = None):
        self.lake = Lake(lake)
        if self.lake.is_s3:
            warm_up_s3_client()
        self.settings = settings or Settings.from_environment()
        self._cold = True
        self.results = ResultStore(self.lake, self.settings.results_folder)
        self.results.prepare()
        # One database per container; each invocation gets its own cursor, whose
        # temporary views vanish with it, so nothing carries over between callers.
        self._database = open_database(self.lake, self.settings)

    def __call__(self, event, context=None) -> dict:
        started = time.perf_counter()
        cold, self._cold = self._cold, False
        try:
            request = protocol.parse_request(event)
            with self._database.cursor() as con, _time_budget(con, context) as budget:
                try:
                    answer = self._answer(con, request)
                except (query.QueryError, duckdb.InterruptException) as exc:
                    if budget.expired:
                        raise query.QueryError(
                            "QueryTimeout",
                            f"the query exceeded its time budget of {budget.seconds:.1f} s "
                            "(the function's timeout, less time to answer)",
                        ) from exc
                    raise
        except protocol.ProtocolError as exc:
            answer = protocol.failure("ProtocolError", str(exc))
        except query.QueryError as exc:
            answer = protocol.failure(exc.error_type, exc.message, exc.position)
        answer["stats"] = self._stats(answer, started, cold)
        return answer

    def _answer(self, con, request: protocol.Request) -> dict:
        pages = self.settings.pages_folder
        if isinstance(request, protocol.MaterializeRequest):
            path, rows, size = query.materialize(
                con, self.lake, self.settings.results_folder, request.sql, request.path, request.views
            )
            return protocol.materialized(path, rows, size)
        if isinstance(request, protocol.QueryRequest):
            result = query.run_query(con, self.lake, self.results, request.sql, request.params, request.views)
            content = {"page": query.read_page(con, result, 0, request.page_size, pages)}
        else:
            result = query.open_result(con, self.results, request.result_id)
            if isinstance(request, protocol.PageRequest):
                content = {"page": query.read_page(con, result, request.offset, request.limit, pages)}
            else:
                content = {"part": query.read_part(self.results, result, request.start, request.length)}
        return protocol.success(result.result_id, result.columns, result.total_rows, result.size_bytes, content)

    @staticmethod
    def _stats(answer: dict, started: float, cold: bool) -> dict:
        content = answer.get("page") or answer.get("part") or {}
        return {
            "engine_ms": round((time.perf_counter() - started) * 1000, 3),
            "cold": cold,
            "rows": answer.get("total_rows", 0),
            "encoded_bytes": len(content.get("data", "")),
            "duckdb_version": duckdb.__version__,
            "architecture": platform.machine(),
        }


class _Budget:
    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.expired = False


@contextlib.contextmanager
def _time_budget(con, context):
    """Interrupt DuckDB before Lambda would kill the function, so the caller gets an answer."""
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else None
    budget = _Budget(None if remaining_ms is None else max(0.1, (remaining_ms - ANSWER_RESERVE_MS) / 1000))
    if budget.seconds is None:
        yield budget
        return

    def interrupt():
        budget.expired = True
        con.interrupt()

    timer = threading.Timer(budget.seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield budget
    finally:
        timer.cancel()


_lambda_handler: LakeHandler | None = None


def handler(event, context):
    """AWS Lambda's entry point: the lake comes from the function's LAKEMAGIC_LAKE."""
    global _lambda_handler
    if _lambda_handler is None:
        lake = os.environ.get("LAKEMAGIC_LAKE")
        if not lake:
            raise RuntimeError("the function has no LAKEMAGIC_LAKE environment variable naming its lake (s3://bucket[/prefix])")
        _lambda_handler = LakeHandler(lake)
    return _lambda_handler(event, context)
