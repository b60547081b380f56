"""The merge of a fan-out, in the notebook's own DuckDB: the tasks' pages in, one whole result out.

The partials are read as the decoder reads pages (each column typed as the
tasks declared it), the plan's merge SQL runs over them as the table
`partials`, and the merged rows are written in the page format, so the
result is an ordinary inline result: paged, sorted, charted and turned into
a DataFrame like any other.

The merge SQL carries the user's expressions, so it runs in a database
locked before any of it runs: in memory, no extension installed or loaded,
no file but those under the database's own folder (its merges' pages and
its spill), no setting changed. Opening such a database costs more than
merging ten small pages, so one is kept for the kernel's life (MergeDatabase)
and each merge is a cursor of its own, whose `partials` no other merge sees.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading

import duckdb

from lakelambda import page_format
from lakelambda.protocol import Column, ResultInfo
from lakelambda.sql import parameter_names, quote_literal

from ..decode import restored
from .tree import PARTIALS

_MERGED = "lakemagic_merged"


class MergeDatabase:
    """An in-memory DuckDB that may touch no file outside a temporary folder of its own (removed with it)."""

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="lakemagic-merges-")
        self.folder = self._folder.name
        self._con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                           "autoload_known_extensions": False,
                                           "temp_directory": os.path.join(self.folder, "spill")})
        # In this order: allowed_directories cannot change once external access is off.
        for setting in (f"allowed_directories = [{quote_literal(self.folder + '/')}]",
                        "enable_external_access = false", "lock_configuration = true"):
            self._con.execute(f"SET {setting}")

    def merge(self, partial_pages: list[str], columns: tuple[Column, ...], merge_sql: str,
              params: dict) -> tuple[ResultInfo, str]:
        """The merged result's description and its rows as one page (base64 Parquet)."""
        with tempfile.TemporaryDirectory(prefix="merge-", dir=self.folder) as folder, self._con.cursor() as cursor:
            paths = []
            for number, data in enumerate(partial_pages):
                paths.append(os.path.join(folder, f"partial-{number}.parquet"))
                with open(paths[-1], "wb") as partial:
                    partial.write(base64.b64decode(data))
            # Registered relations are the cursor's own temporary views.
            cursor.register(PARTIALS, restored(cursor, paths, columns))
            used = {name: value for name, value in params.items() if name in parameter_names(merge_sql)}
            merged_rows = cursor.sql(merge_sql, params=used or None)  # run once: by the COPY, or here with parameters
            merged = tuple(Column(name, str(kind)) for name, kind in zip(merged_rows.columns, merged_rows.types))
            cursor.register(_MERGED, merged_rows)
            merged_path = os.path.join(folder, "merged.parquet")
            rows = cursor.execute(f"COPY (SELECT {page_format.storage_projection(merged)} FROM {_MERGED}) "
                                  f"TO {quote_literal(merged_path)} "
                                  f"(FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})").fetchone()[0]
            return ResultInfo(None, merged, rows, os.path.getsize(merged_path)), page_format.encode_file(merged_path)


_kernel_database: MergeDatabase | None = None
_kernel_database_lock = threading.Lock()


def merge(partial_pages: list[str], columns: tuple[Column, ...], merge_sql: str,
          params: dict) -> tuple[ResultInfo, str]:
    """The merged result's description and its rows as one page, in the kernel's merge database."""
    global _kernel_database
    with _kernel_database_lock:
        if _kernel_database is None or not os.path.isdir(_kernel_database.folder):  # removed by a temp cleaner
            _kernel_database = MergeDatabase()
        database = _kernel_database
    return database.merge(partial_pages, columns, merge_sql, params)
