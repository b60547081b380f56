"""Running queries on an engine and fetching their pages, as plain Python.

The magic and the widget are thin layers over `run_query` and `QueryResult`;
scripts and tests can use them directly. Every answer is parsed and checked
by the protocol module; an error answer becomes LakeQueryError.
"""

from __future__ import annotations

import base64
import datetime
import contextlib
import os
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from lakelambda import protocol
from lakelambda.errors import ProtocolError
from lakelambda.protocol import Column

from .decode import (TextRow, decode_data, decode_files, decode_pages, file_rows, file_text, in_this_zone, page_text,
                     takes_as_is)
from .engines import Engine, LambdaFigures
from .engines.kernel import kernel_engine
from .errors import EngineError, LakeQueryError
from .reuse_scope import reuse_scope


@dataclass(frozen=True)
class Page:
    offset: int
    row_count: int
    data: str
    columns: tuple[Column, ...]

    def frame(self) -> pd.DataFrame:
        return decode_pages([self.data], self.columns, self.row_count)

    def text(self) -> tuple[TextRow, ...]:
        """Each value as DuckDB writes it (decode.page_text)."""
        return page_text(self.data, self.columns, self.row_count)


@dataclass(frozen=True)
class HeldPage:
    """Rows [offset, offset + row_count) of a result whose file is on this machine, read where it is: the first
    page of a query its engine ran in this process, which no page file, base64 or JSON ever carried."""

    offset: int
    row_count: int
    path: str
    columns: tuple[Column, ...]

    def frame(self) -> pd.DataFrame:
        return file_rows(self.path, self.columns, self.offset, self.row_count)

    def text(self) -> tuple[TextRow, ...]:
        return file_text(self.path, self.columns, self.offset, self.row_count)


@dataclass(frozen=True)
class TextPage:
    """Rows [0, row_count) of a result the engine in this process keeps in memory: their text as DuckDB writes
    it, written by the handler in the call that ran the query; a DataFrame of them is one page call."""

    offset: int
    row_count: int
    rows: tuple[TextRow, ...]
    columns: tuple[Column, ...]
    fetch: Callable[[], Page] = field(repr=False, compare=False)

    def frame(self) -> pd.DataFrame:
        return self.fetch().frame()

    def text(self) -> tuple[TextRow, ...]:
        return self.rows


@dataclass(frozen=True)
class CallStats:
    """What one engine call cost: the handler's own figures, the platform's, and the round trip."""

    engine: protocol.HandlerStats
    round_trip_ms: float
    lambda_figures: LambdaFigures | None = None
    fanout: FanoutReceipt | None = None  # a fanned-out query's: its tasks together


@dataclass(frozen=True)
class FanoutReceipt:
    """What a query cost over all its invocations, or why it ran on one (`not_split`)."""

    tasks: int = 0
    partitions: int = 0
    slowest_task_ms: float = 0.0
    billed_gb_s: float | None = None  # the tasks' and the listing's billed GB-seconds, where Lambda reports them
    cost_usd: float | None = None
    retries: int = 0
    not_split: str | None = None


@dataclass
class QueryResult:
    """A result and the engine that holds it: every row, sort, filter, profile and download is a call on
    that engine (the kernel engine for a result that came inline or was merged here)."""

    engine: Engine
    sql: str
    info: protocol.ResultInfo
    first_page: Page | HeldPage | TextPage
    stats: CallStats
    reused_from: float | None = None  # answered from an earlier run's stored result: when that ran (Unix time)
    inline: bool = False  # travelled whole in its query's answer; the kernel engine holds it
    last_call: CallStats = field(init=False)
    _first_frame: pd.DataFrame | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.last_call = self.stats

    @property
    def reuse_note(self) -> str:
        """For a footer: "reused result of 2026-12-02 14:03:05 UTC" when the engine answered from an
        earlier run's result, else ""."""
        if self.reused_from is None:
            return ""
        at = datetime.datetime.fromtimestamp(self.reused_from, datetime.timezone.utc)
        return f"reused result of {at:%Y-%m-%d %H:%M:%S} UTC"

    @property
    def result_id(self) -> str:
        return self.info.result_id

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.info.columns

    @property
    def total_rows(self) -> int:
        return self.info.total_rows

    def rows(self, offset: int, limit: int) -> tuple[int, pd.DataFrame]:
        """Rows [offset, offset + limit) as a DataFrame, and how many there are (possibly fewer than asked).

        Rows the first page holds come from it, decoded once; any others are a page call on the engine.
        """
        if min(offset + limit, self.total_rows) <= self.first_page.row_count:
            if self._first_frame is None:
                self._first_frame = self.first_page.frame()
            frame = self._first_frame.iloc[offset : offset + limit].reset_index(drop=True)
            return len(frame), frame
        page = self.page(offset, limit)
        return page.row_count, page.frame()

    def page(self, offset: int, limit: int) -> Page | HeldPage | TextPage:
        """Rows [offset, offset + limit) of the result, from its engine (possibly fewer: see Page.row_count)."""
        if offset == 0 and self.first_page.row_count == min(limit, self.total_rows):
            return self.first_page
        answer, self.last_call = _call(self.engine, protocol.PageRequest(self.info.result_id, offset, limit),
                                       protocol.PageAnswer, self.sql)
        return _page_of(answer)

    def derive(self, sort: tuple[protocol.SortKey, ...] = (), where: str | None = None,
               page_size: int = 50) -> "QueryResult":
        """The whole result sorted by `sort` and cut to the rows where the SQL condition `where` holds, as a
        new result made by the engine that holds this one."""
        request = protocol.DeriveRequest(self.info.result_id, tuple(sort), where, page_size)
        answer, self.last_call = _call(self.engine, request, protocol.PageAnswer, where or self.sql)
        return result_of(self.engine, self.sql, answer, self.last_call)

    def profile(self, column: str) -> protocol.Profile:
        """What `column` holds over the whole result (counts, range, mean, a histogram or top values)."""
        answer, self.last_call = _call(self.engine, protocol.ProfileRequest(self.info.result_id, column),
                                       protocol.ProfileAnswer, self.sql)
        return answer.profile

    def summaries(self) -> protocol.SummariesAnswer:
        """Every column at a glance (nulls, a histogram or top values), in one call: over the whole result,
        or over a fixed-seed sample when it has more rows than the engine summarizes (the answer's `sampled`).
        A call beside the rows: `last_call` stays the figures of the rows last fetched, as a footer says them."""
        answer, _ = _call(self.engine, protocol.SummarizeRequest(self.info.result_id), protocol.SummariesAnswer,
                          self.sql)
        return answer

    def to_dataframe(self, progress: Callable[[int, int], None] | None = None, kind: str = "pandas"):
        """The whole result as a DataFrame (`kind` "pandas"), a pyarrow Table ("arrow") or a polars DataFrame ("polars")."""
        with self.local_files(progress) as paths:
            # Files an engine keeps on this machine were counted as they came (KernelEngine.adopt) or were made
            # here: only a fetched one's rows are counted against the answer again.
            return decode_files(paths, self.columns, None if self.engine.shares_files else self.total_rows, kind)

    @contextlib.contextmanager
    def local_files(self, progress: Callable[[int, int], None] | None = None):
        """The whole result as Parquet files on this machine, in the page format, for the `with` block.

        It is the result's stored file: read where it is when the engine runs
        on this machine (the kernel engine, the embedded one), or fetched with
        one GET of a URL the function presigned with its own role (the
        notebook signs nothing for S3), or, where there is no URL this
        notebook can reach or the engine cannot vouch for, in parts as large
        as a response allows. A path from a remote engine is never opened
        here, and a URL is read only where the engine keeps the result
        (Engine.may_download).
        """
        answer, self.last_call = _call(self.engine, protocol.DownloadRequest(self.info.result_id),
                                       protocol.DownloadAnswer, self.sql)
        readable = self.engine.may_download(answer.url, self.info.result_id)
        is_url = answer.url.startswith(("https://", "http://"))
        if readable and not is_url and self.engine.shares_files:
            yield [answer.url]
            return
        with tempfile.TemporaryDirectory(prefix="lakemagic-result-") as folder:
            path = os.path.join(folder, "result.parquet")
            try:
                if not (readable and is_url):  # a path on the function's machine, or a URL none can vouch for
                    raise FileNotFoundError(answer.url)
                _download(answer.url, path, self.info.result_bytes, progress)
            except OSError:  # not reachable from here: through the function instead
                self._fetch_parts(path, progress)
            yield [path]

    def _fetch_parts(self, path: str, progress: Callable[[int, int], None] | None) -> None:
        size = self.info.result_bytes
        with open(path, "wb") as stored, ThreadPoolExecutor(self.engine.concurrency) as pool:
            for data in pool.map(self._part, range(0, size, protocol.MAX_PART_BYTES)):
                stored.write(data)
                if progress is not None:
                    progress(stored.tell(), size)

    def _part(self, start: int) -> bytes:
        answer, self.last_call = _call(self.engine, protocol.PartRequest(self.info.result_id, start, protocol.MAX_PART_BYTES),
                                       protocol.PartAnswer, self.sql)
        return base64.b64decode(answer.part.data)


def run_query(
    engine: Engine, sql: str, params: dict | None = None, page_size: int = 50, views: tuple[protocol.View, ...] = (),
    reuse: bool | str = True,
) -> QueryResult:
    """Run `sql` on `engine` with the notebook views it uses; raise LakeQueryError on an error answer.

    With `reuse`, the engine may answer from the stored result of the same query over unchanged inputs
    run with the same reuse scope: the user's own (True), or the scope `reuse` names (reuse_scope.py).
    """
    return run_request(engine, _query_request(sql, params or {}, page_size, views, reuse), sql)


def run_query_unless_partitioned(engine: Engine, sql: str, params: dict, page_size: int,
                                 views: tuple[protocol.View, ...], reuse: bool | str,
                                 tables: tuple[str, ...]
                                 ) -> tuple[QueryResult | protocol.PartitionsAnswer, CallStats, protocol.TableFormats]:
    """`run_query`, unless one of `tables` is Hive-partitioned in the lake or an Iceberg or Delta table a fan-out
    may split: then their listing, and nothing has run. One call either way, so a query a fan-out cannot split
    pays no call of its own for the listing. With what the call cost and the Iceberg and Delta tables among
    `tables` that are not split, with why."""
    request = _query_request(sql, params, page_size, views, reuse, fanout_tables=tables)
    answer, stats = _call(engine, request, (protocol.PageAnswer, protocol.PartitionsAnswer), sql)
    if isinstance(answer, protocol.PartitionsAnswer):
        return answer, stats, answer.table_formats
    return result_of(engine, sql, answer, stats), stats, answer.table_formats


def _query_request(sql: str, params: dict, page_size: int, views: tuple[protocol.View, ...], reuse: bool | str,
                   fanout_tables: tuple[str, ...] = ()) -> protocol.QueryRequest:
    scope = reuse_scope(reuse if isinstance(reuse, str) else "") if reuse else None
    return protocol.QueryRequest(sql, dict(params), page_size, tuple(views), bool(reuse), tuple(fanout_tables), scope)


def run_request(engine: Engine, request: protocol.Request, sql: str) -> QueryResult:
    """A request answered with a result's first page (`query`, a fan-out's `task`) as a QueryResult.

    An engine that hosts the handler in this process answers a query there: a small result stays in its
    database's memory, its first page's text with the answer; a larger one stays where the handler wrote it,
    and the first page is read from that file.
    """
    if isinstance(request, protocol.QueryRequest) and engine.in_process:
        here, stats = _here(engine, request, sql)
        if here.text is not None:
            info = here.stored.info
            first = TextPage(0, len(here.text), here.text, info.columns,
                             lambda: _page_of(_call(engine, protocol.PageRequest(info.result_id, 0, len(here.text)),
                                                    protocol.PageAnswer, sql)[0]))
            return QueryResult(engine, sql, info, first, stats)
        stored, inline = here.stored, here.stored.inline_data is not None
        if inline:  # too small to store: the kernel engine holds it, as it holds an inline answer's
            engine = kernel_engine()
            stored = engine.hold(here.stored.inline_data, here.stored.info)
        first = HeldPage(0, min(request.page_size, stored.info.total_rows), stored.path, stored.info.columns)
        return QueryResult(engine, sql, stored.info, first, stats, here.stored.reused_from, inline=inline)
    answer, stats = _call(engine, request, protocol.PageAnswer, sql)
    return result_of(engine, sql, answer, stats)


def query_frame(engine: Engine, sql: str, params: dict | None = None, views: tuple[protocol.View, ...] = (),
                reuse: bool | str = True, kind: str = "pandas"):
    """The whole result of `sql` as a DataFrame (`kind`: decode.FRAME_KINDS), for `VAR <<`.

    Where the engine hosts the handler in this process, the rows come straight from its cursor and
    nothing is stored that nobody will page or reuse; values are as the decoder gives them (instants
    in this machine's zone). Elsewhere, the result run_query makes, fetched whole.
    """
    if not engine.in_process:
        return run_query(engine, sql, params, protocol.MAX_PAGE_ROWS, views, reuse).to_dataframe(kind=kind)

    def take(con, columns: tuple[Column, ...]):
        if not takes_as_is(columns, kind):
            return None  # stored, and decoded from its file here
        if kind == "arrow":
            return con.fetch_arrow_table()
        return con.pl() if kind == "polars" else in_this_zone(con.df(), columns)

    here, _ = _here(engine, _query_request(sql, params or {}, 1, views, reuse), sql, take)
    stored = here.stored
    if stored is None:
        return here.rows
    if stored.inline_data is not None:
        return decode_data(stored.inline_data, stored.info.columns, stored.info.total_rows, kind)
    return decode_files([stored.path], stored.info.columns, stored.info.total_rows, kind)


def _here(engine: Engine, request: protocol.QueryRequest, sql: str, take=None):
    """A query answered in the engine's own process (Engine.query_here), and what it cost."""
    started = time.perf_counter()
    here = engine.query_here(request, take)
    round_trip_ms = round((time.perf_counter() - started) * 1000, 3)
    if isinstance(here, protocol.ErrorAnswer):
        raise LakeQueryError(here.type, here.message, sql, here.position)
    return here, CallStats(here.stats, round_trip_ms)


def result_of(engine: Engine, sql: str, answer: protocol.PageAnswer, stats: CallStats) -> QueryResult:
    """An answer's result (its first page in the answer); one that came inline is adopted by the kernel engine, which serves it from then on."""
    if not answer.result.inline:
        return QueryResult(engine, sql, answer.result, _page_of(answer), stats, answer.reused_from)
    kernel = kernel_engine()
    adopted = kernel.adopt(answer)
    return QueryResult(kernel, sql, adopted.result, _page_of(adopted), stats, answer.reused_from, inline=True)



def call(engine: Engine, request: protocol.Request, expected: type, sql: str):
    """Any request: its answer, checked to be of the `expected` type, and what the call cost."""
    return _call(engine, request, expected, sql)


def materialize(engine: Engine, sql: str, path: str, views: tuple[protocol.View, ...] = ()) -> protocol.MaterializeAnswer:
    """Write the result of `sql` to `path` (under dashboard/) in the lake; say where, how many rows and bytes."""
    answer, _ = _call(engine, protocol.MaterializeRequest(sql, path, tuple(views)), protocol.MaterializeAnswer, sql)
    return answer


def tables(engine: Engine) -> tuple[protocol.TableInfo, ...]:
    """The lake's tables, with their files, bytes and rows."""
    answer, _ = _call(engine, protocol.TablesRequest(), protocol.TablesAnswer, None)
    return answer.tables


def estimate(engine: Engine, sql: str, params: dict, views: tuple[protocol.View, ...] = ()
             ) -> tuple[protocol.EstimateAnswer, CallStats]:
    """What `sql` would read, source by source, from the lake's listings and Parquet footers: nothing of it runs."""
    return _call(engine, protocol.EstimateRequest(sql, dict(params), tuple(views)), protocol.EstimateAnswer, sql)


def _call(engine: Engine, request: protocol.Request, expected: type | tuple[type, ...], sql: str | None):
    """One engine call: the answer, checked to be of the `expected` type (or one of them), and what it cost."""
    started = time.perf_counter()
    reply = engine.call(request)
    round_trip_ms = round((time.perf_counter() - started) * 1000, 3)
    try:
        answer = protocol.parse_answer(reply.answer)
    except ProtocolError as exc:
        raise EngineError(f"the {engine.name} engine did not answer in lakemagic's protocol ({exc}); "
                          "check that its handler is lakelambda.handler.handler") from None
    if isinstance(answer, protocol.ErrorAnswer):
        raise LakeQueryError(answer.type, answer.message, sql, answer.position)
    if not isinstance(answer, expected):
        raise EngineError(f"the {engine.name} engine answered a {request.op!r} request with a "
                          f"{type(answer).__name__}")
    return answer, CallStats(answer.stats, round_trip_ms, reply.lambda_figures)


DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 60
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A presigned URL answers itself; a redirect would lead this notebook wherever an answer says."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _download(url: str, path: str, size: int, progress: Callable[[int, int], None] | None) -> None:
    """A plain HTTP GET of a presigned URL into `path`: https (plain http only to this machine, as a
    local S3 server is), no redirects, and never more than the result's own size."""
    target = urllib.parse.urlsplit(url)
    if target.scheme != "https" and not (target.scheme == "http" and target.hostname in LOOPBACK_HOSTS):
        raise EngineError(f"the engine's download URL is neither https nor on this machine: {target.scheme}://{target.hostname}")
    with _OPENER.open(url, timeout=DOWNLOAD_TIMEOUT_S) as answer, open(path, "wb") as stored:
        while chunk := answer.read(DOWNLOAD_CHUNK_BYTES):
            stored.write(chunk)
            if stored.tell() > size:
                raise EngineError(f"the download is larger than the {size:,}-byte result it is said to be")
            if progress is not None:
                progress(stored.tell(), size)


def _page_of(answer: protocol.PageAnswer) -> Page:
    page = answer.page
    return Page(page.offset, page.row_count, page.data, answer.result.columns)
