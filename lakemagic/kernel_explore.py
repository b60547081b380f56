"""Sort, filter and profile a result the kernel already holds whole, in the kernel's own DuckDB.

A small result travels whole in the query's answer, so exploring it needs no
engine call: the same statements the handler runs over a stored result
(lakelambda/explore.py, the filter checked the same way) run here over the
page the kernel has, in a private in-memory database that can reach no file
but its own folder's and no network.
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
import time

import duckdb

from lakelambda import explore, page_format
from lakelambda.protocol import Column, Page, Profile, ResultInfo, SortKey, Stats
from lakelambda.sql import quote_literal

from .decode import checked_type


class _Workspace:
    """A folder for the kernel's life and the one database allowed to read and write in it."""

    def __init__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="lakemagic-explore-")
        self.con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        self.con.execute("SET TimeZone = 'UTC'")  # as every engine computes
        self.con.execute(f"SET allowed_directories = [{quote_literal(self.folder.name + os.sep)}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def path(self) -> str:
        return os.path.join(self.folder.name, f"{secrets.token_hex(8)}.parquet")


_workspace: _Workspace | None = None


def _current() -> _Workspace:
    global _workspace
    if _workspace is None or not os.path.isdir(_workspace.folder.name):
        _workspace = _Workspace()
    return _workspace


class _Held:
    """The held page as a file for the length of one operation."""

    def __init__(self, data: str):
        self.data = data

    def __enter__(self) -> str:
        self.path = _current().path()
        with open(self.path, "wb") as held:
            held.write(base64.b64decode(self.data))
        return self.path

    def __exit__(self, *exc) -> None:
        os.remove(self.path)


def derive(data: str, columns: tuple[Column, ...], sort: tuple[SortKey, ...], where: str | None
           ) -> tuple[ResultInfo, Page, Stats]:
    """The held rows sorted and filtered, as a new whole result (page format, like an inline answer)."""
    started = time.perf_counter()
    workspace = _current()
    with workspace.con.cursor() as con, _Held(data) as path:
        select = explore.derived_select(explore.source_sql(path, columns, checked_type), columns, sort, where)
        target = workspace.path()
        try:
            rows = select.run(con, "COPY (", f") TO {quote_literal(target)} "
                                             f"(FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})")
            rows = rows.fetchone()[0]
            size = os.path.getsize(target)
            derived = page_format.encode_file(target)
        finally:
            if os.path.exists(target):
                os.remove(target)
    stats = Stats(engine_ms=round((time.perf_counter() - started) * 1000, 3), rows=rows,
                  encoded_bytes=len(derived), duckdb_version=duckdb.__version__)
    return ResultInfo(None, columns, rows, size), Page(0, rows, derived), stats


def profile(data: str, columns: tuple[Column, ...], name: str) -> Profile:
    """One column of the held rows, profiled as the handler profiles a stored result's."""
    column = explore.column_named(columns, name)
    with _current().con.cursor() as con, _Held(data) as path:
        return explore.profile(con, explore.source_sql(path, columns, checked_type), column)
