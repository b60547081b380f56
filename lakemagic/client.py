"""Running queries on an engine and fetching their pages, as plain Python.

The magic and the widget are thin layers over `run_query` and `QueryResult`;
scripts and tests can use them directly.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from lakelambda import protocol
from lakelambda.page_format import decode_files, decode_pages

from .engine import Engine
from .errors import LakeQueryError


@dataclass
class Page:
    offset: int
    row_count: int
    data: str
    columns: list[dict]

    def frame(self) -> pd.DataFrame:
        return decode_pages([self.data], self.columns)


@dataclass
class CallStats:
    """What one engine call cost: the handler's own figures plus the round trip."""

    engine: dict
    round_trip_ms: float


@dataclass
class QueryResult:
    engine: Engine
    sql: str
    result_id: str
    columns: list[dict]
    total_rows: int
    result_bytes: int
    first_page: Page
    stats: CallStats
    last_call: CallStats = field(init=False)

    def __post_init__(self) -> None:
        self.last_call = self.stats

    def page(self, offset: int, limit: int) -> Page:
        """Rows [offset, offset + limit), fetched from the engine (possibly fewer: see Page.row_count)."""
        if offset == 0 and self.first_page.row_count == min(limit, self.total_rows):
            return self.first_page
        answer, self.last_call = _call(self.engine, protocol.page_request(self.result_id, offset, limit), self.sql)
        return _page_of(answer)

    def to_dataframe(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """The whole result as a DataFrame.

        A result larger than its first page is fetched as its stored Parquet
        file, in parts as large as a response allows (several at once where
        the engine allows it), and decoded once.
        """
        if self.first_page.row_count >= self.total_rows:
            return self.first_page.frame()
        starts = range(0, self.result_bytes, protocol.MAX_PART_BYTES)
        with tempfile.TemporaryDirectory(prefix="lakemagic-result-") as folder:
            path = os.path.join(folder, "result.parquet")
            with open(path, "wb") as stored, ThreadPoolExecutor(getattr(self.engine, "concurrency", 1)) as pool:
                for data in pool.map(self._part, starts):
                    stored.write(data)
                    if progress is not None:
                        progress(stored.tell(), self.result_bytes)
            return decode_files([path], self.columns)

    def _part(self, start: int) -> bytes:
        answer, self.last_call = _call(self.engine, protocol.part_request(self.result_id, start), self.sql)
        return base64.b64decode(answer["part"]["data"])


def run_query(
    engine: Engine, sql: str, params: dict | None = None, page_size: int = 50, views: tuple[protocol.View, ...] = ()
) -> QueryResult:
    """Run `sql` on `engine` with the notebook views it uses; raise LakeQueryError on an error answer."""
    answer, stats = _call(engine, protocol.query_request(sql, params or {}, page_size, views), sql)
    return QueryResult(
        engine=engine,
        sql=sql,
        result_id=answer["result_id"],
        columns=answer["columns"],
        total_rows=answer["total_rows"],
        result_bytes=answer["result_bytes"],
        first_page=_page_of(answer),
        stats=stats,
    )


def materialize(engine: Engine, sql: str, path: str, views: tuple[protocol.View, ...] = ()) -> dict:
    """Write the result of `sql` to `path` (under dashboard/) in the lake; return {path, rows, bytes}."""
    answer, _ = _call(engine, protocol.materialize_request(sql, path, views), sql)
    return answer["materialized"]


def _call(engine: Engine, request: dict, sql: str) -> tuple[dict, CallStats]:
    started = time.perf_counter()
    answer = engine.call(request)
    stats = CallStats(answer.get("stats", {}), round((time.perf_counter() - started) * 1000, 3))
    if "error" in answer:
        error = answer["error"]
        raise LakeQueryError(error["type"], error["message"], sql, error.get("position"))
    return answer, stats


def _page_of(answer: dict) -> Page:
    page = answer["page"]
    return Page(page["offset"], page["row_count"], page["data"], answer["columns"])
