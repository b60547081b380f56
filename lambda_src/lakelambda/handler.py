"""The lake handler: what AWS Lambda calls, and what the embedded engine calls in-process.

The edge parses and validates the event, then hands plain values to
`query.run_query` / `query.read_page`. Every outcome, SQL errors included,
is an answer in the protocol's shape; only bugs escape as exceptions.
"""

from __future__ import annotations

import os
import time

import duckdb

from . import protocol, query
from .lake import Lake


class LakeHandler:
    """A handler bound to one lake. Lambda keeps one per warm container."""

    def __init__(self, lake: str):
        self.lake = Lake(lake)
        self._cold = True
        # One database per container; each invocation gets its own cursor, whose
        # temporary views vanish with it, so nothing carries over between callers.
        self._database = duckdb.connect()
        self._database.execute("SET enable_progress_bar = false")

    def __call__(self, event, context=None) -> dict:
        started = time.perf_counter()
        cold, self._cold = self._cold, False
        try:
            request = protocol.parse_request(event)
            if cold:
                self.lake.prepare_results_location()
            with self._database.cursor() as con:
                answer = self._answer(con, request)
        except protocol.ProtocolError as exc:
            answer = protocol.failure("ProtocolError", str(exc))
        except query.QueryError as exc:
            answer = protocol.failure(exc.error_type, exc.message, exc.position)
        answer["stats"] = self._stats(answer, started, cold)
        return answer

    def _answer(self, con, request: protocol.Request) -> dict:
        if isinstance(request, protocol.QueryRequest):
            result = query.run_query(con, self.lake, request.sql, request.params)
            content = {"page": query.read_page(con, result, 0, request.page_size)}
        else:
            result = query.open_result(con, self.lake, request.result_id)
            if isinstance(request, protocol.PageRequest):
                content = {"page": query.read_page(con, result, request.offset, request.limit)}
            else:
                content = {"part": query.read_part(result, request.start, request.length)}
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
        }


_lambda_handler: LakeHandler | None = None


def handler(event, context):
    """AWS Lambda's entry point: the lake comes from the function's LAKEMAGIC_LAKE."""
    global _lambda_handler
    if _lambda_handler is None:
        _lambda_handler = LakeHandler(os.environ["LAKEMAGIC_LAKE"])
    return _lambda_handler(event, context)
