"""Pages and stored results back into DataFrames, typed as the answer declares.

Pages are Parquet files in the page format (lakelambda/page_format.py): a
few types travel as VARCHAR and are cast back here to the declared type,
so a DataFrame built from pages equals `duckdb.sql(...).df()` of the same
query. This is the notebook's one use of DuckDB for data: the user's SQL
never runs here.
"""

from __future__ import annotations

import base64
import functools
import os
import tempfile
from typing import Iterable

import duckdb
import pandas as pd

from lakelambda.protocol import Column
from lakelambda.sql import quote_identifier


def decode_pages(pages: Iterable[str], columns: tuple[Column, ...]) -> pd.DataFrame:
    """A DataFrame of the rows of `pages` (base64 Parquet), in order."""
    with tempfile.TemporaryDirectory(prefix="lakemagic-pages-") as folder:
        paths = []
        for number, data in enumerate(pages):
            path = os.path.join(folder, f"{number:08d}.parquet")
            with open(path, "wb") as page_file:
                page_file.write(base64.b64decode(data))
            paths.append(path)
        return decode_files(paths, columns)


def decode_files(paths: list[str], columns: tuple[Column, ...]) -> pd.DataFrame:
    """A DataFrame of the rows of Parquet files in the page format, in order."""
    with _decoder().cursor() as con:
        if not paths:
            return con.sql(_empty_select(columns)).df()
        relation = con.read_parquet(paths)
        stored = dict(zip(relation.columns, (str(t) for t in relation.types)))
        return relation.select(_restoring_projection(columns, stored)).df()


@functools.lru_cache(maxsize=1)
def _decoder() -> duckdb.DuckDBPyConnection:
    """One in-memory database for decoding; opening one costs more than a small page."""
    return duckdb.connect()


def _restoring_projection(columns: tuple[Column, ...], stored: dict[str, str]) -> str:
    parts = []
    for column in columns:
        name = quote_identifier(column.name)
        parts.append(name if stored.get(column.name) == column.type else f"CAST({name} AS {column.type}) AS {name}")
    return ", ".join(parts)


def _empty_select(columns: tuple[Column, ...]) -> str:
    projection = ", ".join(f"CAST(NULL AS {c.type}) AS {quote_identifier(c.name)}" for c in columns)
    return f"SELECT {projection} LIMIT 0"
