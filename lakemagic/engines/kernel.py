"""The kernel engine: results this notebook holds, served by the handler's own result operations.

A small result travels whole in its query's answer, and a fan-out's parts
come back to be merged. Either is taken in here (adopted, or merged) and
from then on is an ordinary result of this engine: paged, sorted, filtered,
profiled, summarized and fetched whole by `lakelambda.results`' operations, the very
functions the handler runs over the lake's stored results. Nothing else in
the notebook runs SQL over results.

Its database computes in UTC, as every engine does; it loads no extension,
may touch no file outside a temporary folder of its own (removed with the
kernel), and its configuration is locked before anything from an answer
reaches it. What an answer says of a result (columns, types, rows) is kept
here as data when it arrives, never read back from a file an answer wrote.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time

import duckdb

from lakelambda import protocol
from lakelambda.errors import LakeError, ProtocolError, ResultNotFound
from lakelambda.lake import Lake
from lakelambda.page_format import encode_file, storage_projection, written_size
from lakelambda.protocol import MAX_DECODED_BYTES, MAX_PART_BYTES, Column, ErrorAnswer, Page, PageAnswer, ResultInfo
from lakelambda.results import OPERATIONS, ResultStore, StoredResult
from lakelambda.sql import duckdb_error, parameter_names, quote_literal

from ..decode import check_decoded_size, check_row_count, restored
from ..errors import EngineError
from .base import Engine, Reply, check_result_path

# The most bytes of results one kernel holds; the oldest go first beyond it (a query shown again runs again).
KEPT_BYTES = 2 * 1024**3
# The table a merge's rows are made into, and copied from.
_MERGED = "lakemagic_merged"


class KernelEngine(Engine):
    name = "kernel"
    shares_files = True  # its results are files in this kernel's own folder

    def __init__(self, kept_bytes: int = KEPT_BYTES):
        self._folder = tempfile.TemporaryDirectory(prefix="lakemagic-kernel-")
        self.folder = self._folder.name
        self._database = _open_database(self.folder)
        self._results = _KernelResults(self.folder, kept_bytes)

    def call(self, request) -> Reply:
        """A request about a result this engine holds (results.OPERATIONS: page, part, download, derive,
        profile, summarize). It comes from this kernel, so it is checked as the handler's edge checks it,
        but never encoded."""
        started = time.perf_counter()
        try:
            operation = OPERATIONS.get(type(request))
            if operation is None:
                raise ProtocolError(f"the kernel engine only serves results it holds, not {request.op!r} requests")
            with self._database.cursor() as con:
                answer = operation(con, self._results, protocol.parse_request(protocol.encode(request)))
        except LakeError as exc:
            answer = ErrorAnswer.of(exc)
        except duckdb.Error as exc:
            answer = ErrorAnswer.of(duckdb_error(exc))
        return Reply(protocol.encode(_timed(answer, started)))

    def adopt(self, answer: PageAnswer) -> PageAnswer:
        """An inline answer's result, kept here from now on: the same answer, naming it by an id of this engine.

        An inline answer's page is the result's whole file, of the size it declares;
        its column types were checked on arrival to be DuckDB's own printing of one
        type (protocol.parse_answer). Its rows and columns are counted here to be as
        many as it declares, and it is measured to decode within MAX_DECODED_BYTES.
        """
        stored = self._hold(base64.b64decode(answer.page.data), answer.result, self._check_answer)
        return dataclasses.replace(answer, result=stored.info)

    def hold(self, data: bytes, info: ResultInfo) -> StoredResult:
        """A result too small to store, computed by the handler in this process (its whole file, `data`),
        kept here from now on. It comes from no answer, so it is not checked as one."""
        return self._hold(data, info, None)

    def _hold(self, data: bytes, info: ResultInfo, check) -> StoredResult:
        result_id, path = self._results.new_result()
        with open(path, "wb") as kept:
            kept.write(data)
        try:
            if check is not None:
                check(path, info)
        except BaseException:
            os.remove(path)
            raise
        return self._results.keep(result_id, path, info.columns, info.total_rows)

    def _check_answer(self, path: str, info: ResultInfo) -> None:
        decoded = check_decoded_size(path)
        check_row_count(decoded.rows, info.total_rows)
        if decoded.columns != len(info.columns):  # read by position: one more would be the row number
            raise EngineError(f"the engine's answer declares {len(info.columns)} columns, but its "
                              f"rows hold {decoded.columns}")

    def merge(self, files: list[str], columns: tuple[Column, ...], merge_sql: str, parts: str, params: dict,
              page_size: int, rows: int | None = None) -> PageAnswer:
        """A fan-out's parts (Parquet files in the page format, typed as `columns`, `rows` rows in all as
        the tasks' answers say) merged by `merge_sql`, which reads them as the table named `parts`: a
        result of this engine, with its first page.

        Each merge is a cursor of its own, so its `partials` is seen by no other. The merge runs once, into
        a table of that cursor, which describes its columns and is written as the result's file; a result
        that fits in its first page (a merge's usually does) is that page as it is, read no further.
        """
        started = time.perf_counter()
        with contextlib.ExitStack() as held, self._database.cursor() as cursor:
            # A cursor's own temporary view.
            cursor.register(parts, restored(cursor, self._readable(files, held), columns, rows))
            used = {name: value for name, value in params.items() if name in parameter_names(merge_sql)}
            cursor.execute(f"CREATE TEMP TABLE {_MERGED} AS {merge_sql}", used or None)
            merged = tuple(Column(name, str(kind)) for name, kind, *_ in
                           cursor.execute(f"SELECT * FROM {_MERGED} LIMIT 0").description)
            result_id, path = self._results.new_result()
            rows = cursor.execute(f"COPY (SELECT {storage_projection(merged)} FROM {_MERGED}) "
                                  f"TO {quote_literal(path)} ({self._results.copy_options(merged)})").fetchone()[0]
            stored = self._results.keep(result_id, path, merged, rows)
            page = (_whole_page(stored, page_size, (cursor, _MERGED))
                    or self._results.page(cursor, stored, 0, page_size))
            answer = PageAnswer(stored.info, page)
        return _timed(answer, started)

    def may_download(self, url: str, result_id: str) -> bool:
        return check_result_path(url, self.folder, result_id)

    def forget(self, result_id: str) -> None:
        """Let a result go (a fan-out task's part, once merged)."""
        self._results.forget(result_id)

    def _readable(self, files: list[str], held: contextlib.ExitStack) -> list[str]:
        """`files`, each where this engine's database may read it: as it is, or copied into a temporary folder
        (made at the first such copy, removed with `held`)."""
        inbox, paths = None, []
        for number, path in enumerate(files):
            if os.path.commonpath([path, self.folder]) != self.folder:
                if inbox is None:
                    inbox = held.enter_context(tempfile.TemporaryDirectory(prefix="merge-", dir=self.folder))
                path = shutil.copyfile(path, os.path.join(inbox, f"part-{number}.parquet"))
            paths.append(path)
        return paths


def _whole_page(stored: StoredResult, page_size: int, held: tuple) -> Page | None:
    """The first page of a result of this engine as its whole file, where every row fits in it (as many as
    `page_size`, within a response and MAX_DECODED_BYTES, measured on `held`, the table it was written from),
    as an inline answer's page is; else None."""
    info = stored.info
    if info.total_rows > page_size or info.result_bytes > MAX_PART_BYTES:
        return None
    if written_size(stored.path, info.columns, info.total_rows, held) > MAX_DECODED_BYTES:
        return None
    return Page(0, info.total_rows, encode_file(stored.path))


def _open_database(folder: str) -> duckdb.DuckDBPyConnection:
    """The kernel engine's recipe: in memory, UTC, no extensions, only `folder`, configuration locked."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                 "temp_directory": os.path.join(folder, "spill")})
    # GLOBAL, so every cursor has them (a plain SET is the connection's own); in this order:
    # allowed_directories cannot change once external access is off.
    for setting in ("GLOBAL TimeZone = 'UTC'", "GLOBAL errors_as_json = true", "GLOBAL python_enable_replacements = false",
                    f"allowed_directories = [{quote_literal(folder + os.sep)}]",
                    "enable_external_access = false", "lock_configuration = true"):
        con.execute(f"SET {setting}")
    return con


class _KernelResults(ResultStore):
    """The kernel's results, as files in its folder: described from memory, oldest let go beyond `kept_bytes`."""

    def __init__(self, folder: str, kept_bytes: int):
        os.makedirs(os.path.join(folder, "pages"))
        # Never inline: a result here is already where it is read.
        super().__init__(Lake(folder), os.path.join(folder, "results"), os.path.join(folder, "pages"), inline_bytes=-1)
        self.kept_bytes = kept_bytes
        self._kept: dict[str, StoredResult] = {}  # oldest first
        self._kept_total = 0  # their bytes
        self._lock = threading.Lock()

    def keep(self, result_id: str, path: str, columns: tuple[Column, ...], rows: int,
             size: int | None = None, carried: bool = True,
             writer: duckdb.DuckDBPyConnection | None = None) -> StoredResult:
        stored = super().keep(result_id, path, columns, rows, size, carried, writer=writer)
        with self._lock:
            self._kept[result_id] = stored
            self._kept_total += stored.info.result_bytes
            while self._kept_total > self.kept_bytes and len(self._kept) > 1:
                self._forget(next(iter(self._kept)))
        return stored

    def open(self, con, result_id: str) -> StoredResult:
        with self._lock:
            stored = self._kept.get(result_id)
        if stored is None:
            raise ResultNotFound(f"result {result_id} is no longer held by this kernel (it keeps the newest "
                                 f"{self.kept_bytes / 2**30:g} GiB of results); run the query again")
        return stored

    def forget(self, result_id: str) -> None:
        with self._lock:
            self._forget(result_id)

    def _forget(self, result_id: str) -> None:
        stored = self._kept.pop(result_id, None)
        if stored is None:
            return
        self._kept_total -= stored.info.result_bytes
        if os.path.exists(stored.path):
            os.remove(stored.path)


def _timed(answer: protocol.Answer, started: float) -> protocol.Answer:
    """The answer with this engine's own figures: its time, the result's rows, the bytes it carries."""
    content = getattr(answer, "page", None) or getattr(answer, "part", None)
    result = getattr(answer, "result", None)
    stats = protocol.HandlerStats(engine_ms=round((time.perf_counter() - started) * 1000, 3),
                           rows=result.total_rows if result else 0, encoded_bytes=len(content.data) if content else 0,
                           duckdb_version=duckdb.__version__)
    return dataclasses.replace(answer, stats=stats)


_kernel: KernelEngine | None = None
_kernel_lock = threading.Lock()


def kernel_engine() -> KernelEngine:
    """This kernel's one kernel engine, made on first use (again if a temp cleaner removed its folder)."""
    global _kernel
    with _kernel_lock:
        if _kernel is None or not os.path.isdir(_kernel.folder):
            _kernel = KernelEngine()
        return _kernel
