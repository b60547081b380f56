"""The merge of a fan-out, in the notebook's own DuckDB: the tasks' pages in, one whole result out.

The partials are read as the decoder reads pages (each column typed as the
tasks declared it), the plan's merge SQL runs over them as the table
`partials`, and the merged rows are written in the page format, so the
result is an ordinary inline result: paged, sorted, charted and turned into
a DataFrame like any other. The connection is in memory and may touch no
file but the merge's own folder (removed with it).
"""

from __future__ import annotations

import base64
import os
import tempfile

import duckdb

from lakelambda import page_format
from lakelambda.protocol import Column, ResultInfo
from lakelambda.sql import parameter_names, quote_literal

from ..decode import restored
from .tree import PARTIALS

_MERGED = "lakemagic_merged"


def merge(partial_pages: list[str], columns: tuple[Column, ...], merge_sql: str,
          params: dict) -> tuple[ResultInfo, str]:
    """The merged result's description and its rows as one page (base64 Parquet)."""
    with tempfile.TemporaryDirectory(prefix="lakemagic-merge-") as folder:
        paths = []
        for number, data in enumerate(partial_pages):
            paths.append(os.path.join(folder, f"partial-{number}.parquet"))
            with open(paths[-1], "wb") as partial:
                partial.write(base64.b64decode(data))
        merged_path = os.path.join(folder, "merged.parquet")
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        try:
            restored(con, paths, columns).create(PARTIALS)
            for setting in (f"allowed_directories = [{quote_literal(folder)}]", "enable_external_access = false",
                            "lock_configuration = true"):
                con.execute(f"SET {setting}")
            used = {name: value for name, value in params.items() if name in parameter_names(merge_sql)}
            con.execute(f"CREATE TABLE {_MERGED} AS {merge_sql}", used or None)
            merged = tuple(Column(row[0], row[1]) for row in con.execute(f"DESCRIBE {_MERGED}").fetchall())
            rows = con.execute(f"COPY (SELECT {page_format.storage_projection(merged)} FROM {_MERGED}) "
                               f"TO {quote_literal(merged_path)} "
                               f"(FORMAT parquet, COMPRESSION {page_format.PAGE_COMPRESSION})").fetchone()[0]
        finally:
            con.close()
        size = os.path.getsize(merged_path)
        return ResultInfo(None, merged, rows, size), page_format.encode_file(merged_path)
