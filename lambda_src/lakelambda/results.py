"""The result store, and the operations every result is served by (page, part, download, derive, profile, summarize).

The operations are functions of (cursor, store, request), hosted by two
engines: the handler, over the lake's stored results, and the notebook's
kernel engine (lakemagic/engines/kernel.py), over the results it adopted from
inline answers or merged from a fan-out. So a result is sorted, filtered,
profiled and paged by the same code wherever it is held.

A result must outlive the container that made it, so it goes to
`<lake>/_lakemagic/results/`, where any container finds it. The one
exception is a small result of a query run in this process (the embedded
engine: run.execute_and_keep_in_memory), which only that process pages: it
stays a table of the handler's in-memory database, made straight from the
query (so every type is exactly DuckDB's), read by the same operations, and
written as the file only when something asks for the file itself (a part, a
download). On an S3 lake the
file is first written to local scratch, answered from there, and uploaded
once (PROTOCOL.md, "Stored results", says why); later pages served by the
same warm container read the local copy too.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import secrets
import threading
from typing import Any, Callable, NamedTuple, Sequence

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from . import explore, page_format
from .lake import Lake
from .errors import ResultNotFound, RowTooLarge
from .protocol import (INLINE_RESULT_BYTES, MAX_DECODED_BYTES, MAX_PART_BYTES, MAX_RESPONSE_BYTES, Answer, Column, DeriveRequest,
                       DownloadAnswer, DownloadRequest, Page, PageAnswer, PageRequest, Part, PartAnswer, PartRequest,
                       ProfileAnswer, ProfileRequest, ResultInfo, SummariesAnswer, SummarizeRequest)
from .sql import quote_identifier, quote_literal
from .storage import INTERNAL_FOLDER

RESULTS_PREFIX = f"{INTERNAL_FOLDER}/results"
RESULT_MAX_AGE_SECONDS = 24 * 3600
# The scratch space assumed where none is given: Lambda's default /tmp.
DEFAULT_SCRATCH_BYTES = 512 * 1024 * 1024
# Small row groups keep a page read small: a page touches one or two of them.
RESULT_ROW_GROUP_SIZE = 16_384
# How long a download URL of a stored result is good for.
DOWNLOAD_URL_SECONDS = 900
# The key of the stored file's key-value metadata that holds the declared column types.
COLUMNS_KEY = "lakemagic_columns"
# Results kept in memory (see above): the schema of their tables, which a query's plain table names never
# reach (sandbox: base tables are plain names), the most rows one may have, the most bytes (as
# page_format.decoded_size counts them) one may take, and all of them: the oldest go first beyond it.
MEMORY_SCHEMA = "lakemagic_in_memory"
MEMORY_ROWS = 10_000
MEMORY_RESULT_BYTES = 64 * 1024 * 1024
MEMORY_BYTES = 512 * 1024 * 1024


class StoredResult(NamedTuple):
    info: ResultInfo
    path: str  # the local copy if this container has one, else the lake's
    inline_data: bytes | None = None  # the whole file of a result too small to store
    reused_from: float | None = None  # when the result was computed, if this answer reuses it (Unix time)
    table: str | None = None  # the in-memory table that holds it, written as SQL; None: `path` holds it


class ResultStore:
    memory_rows = MEMORY_ROWS  # the most rows of a result kept in memory
    def __init__(self, lake: Lake, local_folder: str, pages_folder: str, inline_bytes: int = INLINE_RESULT_BYTES,
                 scratch_bytes: int = DEFAULT_SCRATCH_BYTES, max_result_bytes: int | None = None):
        self.lake = lake
        self.inline_bytes = inline_bytes
        # A quarter of the scratch space for local copies (DuckDB's spill has half, pages the rest).
        self.local_copies_bytes = scratch_bytes // 4
        self.max_result_bytes = max_result_bytes
        # Where results are written: straight into a local lake, or to local copies uploaded to S3.
        self.local_folder = lake.storage.working_folder(RESULTS_PREFIX, local_folder)
        self.pages_folder = pages_folder
        self._in_memory: dict[str, tuple[StoredResult, int]] = {}  # with their bytes, oldest first
        self._in_memory_bytes = 0  # theirs together: a query adds its own, never sums them all again
        self._in_memory_lock = threading.Lock()

    def prepare(self) -> None:
        """Make the local folder, and drop results older than a day (on S3 a lifecycle rule on the
        results prefix does it)."""
        os.makedirs(self.local_folder, exist_ok=True)
        self.lake.storage.expire(RESULTS_PREFIX, RESULT_MAX_AGE_SECONDS)

    def new_result(self, held_bytes: int = 0) -> tuple[str, str]:
        """A fresh result id and the path to write it to: locally (its folder made again if it was
        removed), or, for a result the engine holds in more than half the local copies' space, straight
        into the lake (where the working folder is a local one, S3: DuckDB uploads it in parts as it
        writes, so a big result never passes /tmp)."""
        result_id = secrets.token_urlsafe(24)
        os.makedirs(self.local_folder, exist_ok=True)
        if held_bytes > self.local_copies_bytes // 2:
            return result_id, self.lake_path(result_id)
        return result_id, self._local_path(result_id)

    def copy_options(self, columns: Sequence[Column]) -> str:
        """COPY options for a stored result: Parquet with the declared column types in its metadata."""
        metadata = quote_literal(json.dumps([{"name": c.name, "type": c.type} for c in columns]))
        return (
            f"FORMAT parquet, COMPRESSION {page_format.STORAGE_COMPRESSION}, ROW_GROUP_SIZE {RESULT_ROW_GROUP_SIZE}, "
            f"KV_METADATA {{{COLUMNS_KEY}: {metadata}}}"
        )

    def keep(self, result_id: str, path: str, columns: tuple[Column, ...], rows: int,
             size: int | None = None, carried: bool = True, held: tuple | None = None,
             writer: duckdb.DuckDBPyConnection | None = None) -> StoredResult:
        """The result just written to `path` (`size` bytes): stored for every container, or, if small, only in memory.

        A small result is read back and its file removed at once: it travels
        whole in the query's answer (PROTOCOL.md, "Answers"), unless it decodes
        past what a page may. Not `carried` (a host in this process takes it, as
        it is, into a file of its own), it is not measured: no answer carries it.
        `held` (a cursor, a table's name): the table the file was written from, which
        measures it faster (page_format.written_size); else it is measured on `writer`, the cursor that
        wrote it. One written straight into the lake is there already.
        """
        if not self.is_local(path):
            assert size is not None, "DuckDB reports the size of a file it writes into the lake"
            return StoredResult(ResultInfo(result_id, columns, rows, size), path)
        size = os.path.getsize(path)
        if size <= self.inline_bytes and (
                not carried or page_format.written_size(path, columns, rows, held, writer) <= MAX_DECODED_BYTES):
            with open(path, "rb") as small:
                data = small.read()
            os.remove(path)
            return StoredResult(ResultInfo(None, columns, rows, size), path, data)
        if path != self.lake_path(result_id):  # a local copy, which the lake gets for every container
            try:
                self.lake.storage.put(path, f"{RESULTS_PREFIX}/{result_id}.parquet")
            except BaseException:
                os.remove(path)  # no answer names this result, so its copy would only fill /tmp
                raise
            self._trim_local_copies(keep=path)
        return StoredResult(ResultInfo(result_id, columns, rows, size), path)

    def open_memory(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make a new database (`con`) the one results are kept in memory in: those of the one before are let go
        (a page of one then says to run the query again)."""
        with self._in_memory_lock:
            self._in_memory.clear()
            self._in_memory_bytes = 0
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {MEMORY_SCHEMA}")

    def memory_table(self, result_id: str) -> str:
        """The table a result kept in memory is made as, written as SQL."""
        return f"{MEMORY_SCHEMA}.{quote_identifier(result_id)}"

    def keep_in_memory(self, con, result_id: str, columns: tuple[Column, ...], rows: int) -> StoredResult:
        """The result just made as memory_table(result_id): kept there, the oldest let go beyond MEMORY_BYTES; or,
        past memory_rows or MEMORY_RESULT_BYTES alone, written as a stored result's file (and dropped)."""
        table = self.memory_table(result_id)
        size = page_format.table_size(con, table, columns, rows) if rows <= self.memory_rows else 0
        if rows > self.memory_rows or size > MEMORY_RESULT_BYTES:
            try:
                return self.keep(result_id, self._write_table(con, result_id, table, columns), columns, rows,
                                 carried=False)
            finally:
                con.execute(f"DROP TABLE {table}")
        kept = StoredResult(ResultInfo(result_id, columns, rows, 0), "", table=table)
        with self._in_memory_lock:
            self._in_memory[result_id] = (kept, size)
            self._in_memory_bytes += size
            gone = []
            while self._in_memory_bytes > MEMORY_BYTES:  # the oldest go first, never the one just kept
                old = next(iter(self._in_memory))
                if old == result_id:
                    break
                self._in_memory_bytes -= self._in_memory.pop(old)[1]
                gone.append(old)
        for old in gone:
            con.execute(f"DROP TABLE IF EXISTS {self.memory_table(old)}")
        return kept

    def written(self, con, result: StoredResult) -> StoredResult:
        """`result` as a stored file (a part or a download reads the file itself): one kept in memory is written
        now, and let go from memory."""
        if result.table is None:
            return result
        info, result_id = result.info, result.info.result_id
        assert result_id is not None  # a result kept in memory has an id, as a stored one does
        path = self._write_table(con, result_id, result.table, info.columns)
        if path != self.lake_path(result_id):  # a local copy, which the lake gets for every container
            self.lake.storage.put(path, f"{RESULTS_PREFIX}/{result_id}.parquet")
        with self._in_memory_lock:
            self._in_memory_bytes -= self._in_memory.pop(result_id, (None, 0))[1]
        con.execute(f"DROP TABLE IF EXISTS {result.table}")
        return StoredResult(dataclasses.replace(info, result_bytes=os.path.getsize(path)), path)

    def _write_table(self, con, result_id: str, table: str, columns: tuple[Column, ...]) -> str:
        """Write a result kept in memory as its stored file, locally; where it is."""
        os.makedirs(self.local_folder, exist_ok=True)
        path = self._local_path(result_id)
        con.execute(f"COPY (SELECT {page_format.storage_projection(columns)} FROM {table} ORDER BY rowid) "
                    f"TO {quote_literal(path)} ({self.copy_options(columns)})")
        return path

    def open(self, con: duckdb.DuckDBPyConnection, result_id: str) -> StoredResult:
        """Find a result by id: kept in memory here, or stored, from any container that can see the lake."""
        with self._in_memory_lock:
            kept = self._in_memory.get(result_id)
        if kept is not None:
            return kept[0]
        local = self._local_path(result_id)
        path = local if os.path.exists(local) else self.lake_path(result_id)
        try:
            found = con.execute(
                f"SELECT (SELECT value FROM parquet_kv_metadata({quote_literal(path)}) WHERE key = '{COLUMNS_KEY}'), "
                f"num_rows, file_size_bytes FROM parquet_file_metadata({quote_literal(path)})"
            ).fetchone()
        except duckdb.IOException:
            raise ResultNotFound(f"result {result_id} does not exist or has expired; run the query again") from None
        assert found is not None  # parquet_file_metadata of one file gives one row
        declared, total_rows, size_bytes = found
        columns = tuple(Column(c["name"], c["type"]) for c in json.loads(declared))
        return StoredResult(ResultInfo(result_id, columns, total_rows, size_bytes), path)

    def download_url(self, result_id: str) -> str:
        """Where the whole stored file of `result_id` can be read by whoever holds that id, for
        DOWNLOAD_URL_SECONDS (storage.LakeStorage.download_url)."""
        return self.lake.storage.download_url(self.lake_path(result_id), DOWNLOAD_URL_SECONDS)

    def part(self, result: StoredResult, start: int, length: int) -> Part:
        """Bytes [start, start + length) of the stored result file, as they are."""
        data = self.lake.storage.read_range(result.path, start, length) if start < result.info.result_bytes else b""
        return Part(start, len(data), base64.b64encode(data).decode("ascii"))

    def page(self, con: duckdb.DuckDBPyConnection, result: StoredResult, offset: int, limit: int) -> Page:
        """Rows [offset, offset + limit) of a stored result as one page.

        Rows are picked by their row number in the file, which DuckDB resolves
        from row-group statistics: the cost does not grow with the offset. A
        page that would not fit in a Lambda response, or would decode past
        MAX_DECODED_BYTES, holds fewer rows; `row_count` says how many.
        """
        info = result.info
        if result.inline_data is not None:
            return Page(0, info.total_rows, base64.b64encode(result.inline_data).decode("ascii"))
        limit = max(0, min(limit, info.total_rows - offset))
        budget = MAX_PART_BYTES  # the most raw bytes that fit in a response once base64-encoded
        limit = min(limit, _rows_that_fit(info, budget))
        page_path = os.path.join(self.pages_folder, f"{secrets.token_hex(8)}.parquet")
        try:
            while True:
                size = _write_rows(con, result, offset, limit, page_path)
                over = max(size / budget, page_format.decoded_size(page_path, con).bytes / MAX_DECODED_BYTES)
                if over <= 1 or limit <= 1:
                    break
                limit = max(1, math.floor(limit / over * 0.9))
            if size > budget:
                raise RowTooLarge(f"row {offset} alone is larger than the {MAX_RESPONSE_BYTES}-byte response limit")
            if over > 1:
                raise RowTooLarge(f"row {offset} alone decodes to more than the {MAX_DECODED_BYTES:,} bytes a page may")
            return Page(offset, limit, page_format.encode_file(page_path))
        finally:
            if os.path.exists(page_path):
                os.remove(page_path)

    def lake_path(self, result_id: str) -> str:
        """Where the lake keeps a stored result, for every container."""
        return self.lake.path(RESULTS_PREFIX, f"{result_id}.parquet")

    def is_local(self, path: str) -> bool:
        """Whether a new result's `path` is in the working folder, a local file (not one DuckDB writes into S3)."""
        return os.path.dirname(path) == self.local_folder

    def _local_path(self, result_id: str) -> str:
        return os.path.join(self.local_folder, f"{result_id}.parquet")

    def _trim_local_copies(self, keep: str) -> None:
        """Drop the oldest local copies beyond local_copies_bytes, never `keep` (the one about to be paged)."""
        copies = sorted(os.scandir(self.local_folder), key=lambda entry: entry.stat().st_mtime, reverse=True)
        kept = os.path.getsize(keep)
        for entry in copies:
            if entry.path == keep:
                continue
            kept += entry.stat().st_size
            if kept > self.local_copies_bytes:
                os.remove(entry.path)


def _rows_that_fit(info: ResultInfo, budget: int) -> int:
    """A first guess from the stored file's bytes per row, with room for worse compression."""
    if info.total_rows == 0:
        return 1
    if info.result_bytes == 0:  # kept in memory, no file yet: the page itself is measured
        return info.total_rows
    bytes_per_row = info.result_bytes / info.total_rows
    return max(1, math.floor(budget / bytes_per_row * 0.6))


def _write_rows(con, result: StoredResult, offset: int, limit: int, page_path: str) -> int:
    if result.table is not None:
        columns = result.info.columns
        con.execute(
            f"COPY (SELECT {page_format.storage_projection(columns)} FROM {explore.table_source_sql(result.table, columns)} "
            f"WHERE {quote_identifier(explore.row_column(columns))} BETWEEN {offset} AND {offset + limit - 1} "
            f"ORDER BY {quote_identifier(explore.row_column(columns))}) "
            f"TO {quote_literal(page_path)} (FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})")
        return os.path.getsize(page_path)
    stored = [f"c{i}" for i in range(len(result.info.columns))]
    # Columns are read by position, so a user's column named row_number cannot clash.
    select = ", ".join(f"{s} AS {quote_identifier(c.name)}" for s, c in zip(stored, result.info.columns))
    con.execute(
        f"COPY (SELECT {select} FROM read_parquet({quote_literal(result.path)}, file_row_number = true) "
        f"AS r({', '.join(stored)}, row_number) WHERE row_number >= {offset} AND row_number < {offset + limit}) "
        f"TO {quote_literal(page_path)} (FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})"
    )
    return os.path.getsize(page_path)


def source_sql(result: StoredResult) -> str:
    """A subquery of the result's rows, typed as declared, with their row number (explore.source_sql)."""
    if result.table is not None:
        return explore.table_source_sql(result.table, result.info.columns)
    return explore.source_sql(result.path, result.info.columns)


def first_text(con, result: StoredResult, limit: int) -> tuple[tuple[str | None, ...], ...]:
    """The first `limit` rows of a result kept in memory as the table shows them: each value as DuckDB writes
    it (CAST to VARCHAR, in the database's UTC), as the notebook's decoder writes a page's. A table's scan
    keeps the order its rows were made in (DuckDB's preserve_insertion_order)."""
    return tuple(con.execute(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {result.table} LIMIT {int(limit)}").fetchall())


def page(con, store: ResultStore, request: PageRequest) -> PageAnswer:
    result = store.open(con, request.result_id)
    return PageAnswer(result.info, store.page(con, result, request.offset, request.limit))


def part(con, store: ResultStore, request: PartRequest) -> PartAnswer:
    result = store.written(con, store.open(con, request.result_id))
    return PartAnswer(result.info, store.part(result, request.start, request.length))


def download(con, store: ResultStore, request: DownloadRequest) -> DownloadAnswer:
    result = store.written(con, store.open(con, request.result_id))
    return DownloadAnswer(result.info, store.download_url(request.result_id), DOWNLOAD_URL_SECONDS)


def derive(con, store: ResultStore, request: DeriveRequest) -> PageAnswer:
    """The result sorted and filtered, as a new result of the same store, with its first page."""
    result = store.open(con, request.result_id)
    columns = result.info.columns
    select = explore.derived_select(source_sql(result), columns, request.sort, request.filter)
    derived = explore.store_derived(con, store, select, columns)
    return PageAnswer(derived.info, store.page(con, derived, 0, request.page_size))


def profile(con, store: ResultStore, request: ProfileRequest) -> ProfileAnswer:
    result = store.open(con, request.result_id)
    column = explore.column_named(result.info.columns, request.column)
    source = source_sql(result)
    return ProfileAnswer(result.info, explore.profile(con, source, column, result.info.total_rows))


def summarize(con, store: ResultStore, request: SummarizeRequest) -> SummariesAnswer:
    """Every column at a glance, over the whole result or, above explore.SUMMARY_SAMPLE_ROWS, a fixed sample."""
    result = store.open(con, request.result_id)
    info = result.info
    rows, summaries = explore.summaries(con, source_sql(result), info.columns,
                                        info.total_rows)
    return SummariesAnswer(info, rows, rows < info.total_rows, summaries)


# Each request about an existing result, and the operation that answers it.
OPERATIONS: dict[type, Callable[[Any, ResultStore, Any], Answer]] = {
    PageRequest: page, PartRequest: part, DownloadRequest: download, DeriveRequest: derive, ProfileRequest: profile,
    SummarizeRequest: summarize}
