"""Pages and stored results back into DataFrames, typed as the answer declares, and into the text people read.

Pages are Parquet files in the page format (lakelambda/page_format.py): a
few types travel as VARCHAR and are cast back here to the declared type,
so a DataFrame built from pages equals `duckdb.sql(...).df()` of the same
query. The table shows each value as DuckDB itself writes it (a cast to
VARCHAR, in UTC), which pandas cannot: a FLOAT's shortest text, a HUGEINT
or DECIMAL exactly, an INTERVAL, a LIST. This is the notebook's one use of
DuckDB for data: type conversion only, the user's SQL never runs here.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import tempfile
from typing import Iterable

import duckdb
import pandas as pd

from lakelambda.page_format import Decoded, decoded_size
from lakelambda.protocol import MAX_DECODED_BYTES, Column
from lakelambda.sql import quote_identifier, quote_literal

from .errors import EngineError


def decode_pages(pages: Iterable[str], columns: tuple[Column, ...], rows: int) -> pd.DataFrame:
    """A DataFrame of the `rows` rows of `pages` (base64 Parquet), in order."""
    with _page_files(pages) as paths:
        return decode_files(paths, columns, rows)


# A row as the table shows it: each value's text as DuckDB writes it, None for NULL.
TextRow = tuple[str | None, ...]


@functools.lru_cache(maxsize=16)
def page_text(page: str, columns: tuple[Column, ...], rows: int) -> tuple[TextRow, ...]:
    """The `rows` rows of one page (base64 Parquet) as DuckDB's text of each value, as its CLI and
    `CAST(value AS VARCHAR)` write them, in UTC. Kept for the last pages, so a page is rendered once."""
    with _page_files([page]) as paths, _text_decoder().cursor() as con:
        relation = restored(con, paths, columns, rows)
        names = [quote_identifier(column.name) for column in columns]
        return tuple(relation.select(", ".join(f"CAST({name} AS VARCHAR) AS {name}" for name in names)).fetchall())


@functools.lru_cache(maxsize=16)
def file_text(path: str, columns: tuple[Column, ...], offset: int, limit: int) -> tuple[TextRow, ...]:
    """Rows [offset, offset + limit) of a result's file on this machine (in the page format), as page_text
    writes them: read where the file is, for a result whose engine runs in this process."""
    # One statement, columns by position, each cast to its declared type (a lossy one is stored as text) and
    # then written as text: the file is read once.
    stored = [f"c{index}" for index in range(len(columns))]
    texts = ", ".join(f"CAST(CAST({name} AS {checked_type(column.type)}) AS VARCHAR)"
                      for name, column in zip(stored, columns))
    with _text_decoder().cursor() as con:
        return tuple(con.execute(f"SELECT {texts} FROM read_parquet({quote_literal(path)}) AS r({', '.join(stored)}) "
                                 f"LIMIT {int(limit)} OFFSET {int(offset)}").fetchall())


def file_rows(path: str, columns: tuple[Column, ...], offset: int, limit: int) -> pd.DataFrame:
    """Rows [offset, offset + limit) of a result's file on this machine, as decode_files gives them."""
    with _decoder().cursor() as con:
        return restored(con, [path], columns).limit(limit, offset).df()


def decode_data(data: bytes, columns: tuple[Column, ...], rows: int, kind: str = "pandas"):
    """A result's whole file, held in memory (an inline result), as decode_files gives it."""
    with _page_files([data]) as paths:
        return decode_files(paths, columns, rows, kind)


@contextlib.contextmanager
def _page_files(pages: Iterable[str | bytes]):
    """`pages` (base64 Parquet, or its bytes) as files, for the `with` block, each measured (check_decoded_size)."""
    paths = []
    try:
        for data in pages:
            handle, path = tempfile.mkstemp(suffix=".parquet", dir=_pages_folder())
            with os.fdopen(handle, "wb") as page_file:
                page_file.write(data if isinstance(data, bytes) else base64.b64decode(data))
            paths.append(path)
            check_decoded_size(path)
        yield paths
    finally:
        for path in paths:
            os.remove(path)


_pages: tempfile.TemporaryDirectory | None = None


def _pages_folder() -> str:
    """Where pages wait to be read: one folder for the kernel's life (removed when it exits, made
    again if something removed it), as a folder per page costs more than decoding a small one."""
    global _pages
    if _pages is None or not os.path.isdir(_pages.name):
        _pages = tempfile.TemporaryDirectory(prefix="lakemagic-pages-")
    return _pages.name


# What a whole result can be given as, and the package each needs (DuckDB makes each natively).
FRAME_KINDS = {"pandas": "pandas", "arrow": "pyarrow", "polars": "polars"}


def decode_files(paths: list[str], columns: tuple[Column, ...], rows: int | None, kind: str = "pandas"):
    """The `rows` rows of Parquet files in the page format, in order: a pandas DataFrame, or (`kind`) a
    pyarrow Table or a polars DataFrame. `rows` None: files whose rows were counted already (restored)."""
    with _decoder().cursor() as con:
        relation = restored(con, paths, columns, rows)
        if kind == "arrow":
            return relation.to_arrow_table()
        return relation.pl() if kind == "polars" else relation.df()


ZONED = "WITH TIME ZONE"  # in a type that DuckDB converts to a DataFrame in its database's time zone
_INSTANT = "TIMESTAMP WITH TIME ZONE"


def takes_as_is(columns: tuple[Column, ...], kind: str) -> bool:
    """Whether rows of `columns` taken as a DataFrame (`kind`) from a database computing in UTC can be given
    as the decoder gives them here (in_this_zone): not where a zone is inside a nested value, or an
    instant in an Arrow or polars frame, unless this machine's zone is UTC too. Those are decoded from a file."""
    zoned = [column.type for column in columns if ZONED in column.type]
    return not zoned or local_zone() == "UTC" or (kind == "pandas" and all(type_name == _INSTANT for type_name in zoned))


def in_this_zone(frame, columns: tuple[Column, ...]):
    """A pandas DataFrame taken from a database computing in UTC, with its instants in this machine's zone,
    as `.df()` here gives them (takes_as_is said it can be done)."""
    if local_zone() != "UTC":
        for index, column in enumerate(columns):
            if column.type == _INSTANT:
                frame.isetitem(index, frame.iloc[:, index].dt.tz_convert(local_zone()))
    return frame


@functools.lru_cache(maxsize=1)
def local_zone() -> str:
    """The time zone the DataFrame decoder converts instants to: DuckDB's reading of this machine's."""
    with _decoder().cursor() as con:
        return con.execute("SELECT current_setting('TimeZone')").fetchone()[0]


def copy_files(paths: list[str], columns: tuple[Column, ...], rows: int, target: str, file_format: str) -> None:
    """The `rows` rows of Parquet files in the page format, written to `target` as Parquet or CSV, as DuckDB writes them."""
    with _decoder().cursor() as con:
        relation = restored(con, paths, columns, rows)
        if file_format == "csv":
            relation.to_csv(target, header=True)
        else:
            relation.to_parquet(target, compression="zstd")


def restored(con, paths: list[str], columns: tuple[Column, ...], rows: int | None = None) -> duckdb.DuckDBPyRelation:
    """The rows of Parquet files in the page format as a relation on `con`, typed as `columns` declare.

    `rows`: how many the answer says they hold (check_rows), None where no answer says.
    """
    if not paths:
        return con.sql(_empty_select(columns))
    relation = con.read_parquet(paths)
    if relation.columns != [column.name for column in columns]:
        raise EngineError(f"the engine's answer names the columns {[c.name for c in columns]!r}, but its rows hold "
                          f"{relation.columns!r}")
    if rows is not None:
        check_rows(relation, rows)
    stored = dict(zip(relation.columns, (str(t) for t in relation.types)))
    if list(stored.items()) == [(column.name, column.type) for column in columns]:
        return relation  # every column arrived as declared: a projection would only bind the file again
    return relation.select(_restoring_projection(columns, stored))


def check_rows(relation: duckdb.DuckDBPyRelation, rows: int) -> None:
    """Refuse Parquet data (`relation`, as read) that does not hold the `rows` rows its answer says.
    Counted from the row groups: a page of a few KB can hold a million copies of one long value."""
    check_row_count(relation.aggregate("count(*)").fetchone()[0], rows)


def check_row_count(held: int, rows: int) -> None:
    """Refuse data that holds `held` rows where its answer says `rows`."""
    if held != rows:
        raise EngineError(f"the engine's answer says its rows are {rows:,}, but its data holds {held:,}")


def check_decoded_size(path: str) -> Decoded:
    """Refuse a page's or an inline result's file at `path` that decodes past MAX_DECODED_BYTES: a page of
    the rows it declares can still hold one value of gigabytes, which a few KB of Parquet can. The rows and
    columns it holds, counted by the same read (check_row_count)."""
    decoded = decoded_size(path)
    if decoded.bytes > MAX_DECODED_BYTES:
        raise EngineError(f"the engine's answer carries data that decodes to more than the {MAX_DECODED_BYTES:,} "
                          f"bytes a page or an inline result may (at least {decoded.bytes:,})")
    return decoded


@functools.lru_cache(maxsize=1)
def _decoder() -> duckdb.DuckDBPyConnection:
    """One in-memory database for decoding; opening one costs more than a small page.
    It installs and loads nothing, whatever a page holds, and its configuration is locked."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET lock_configuration = true")
    return con


@functools.lru_cache(maxsize=1)
def _text_decoder() -> duckdb.DuckDBPyConnection:
    """The decoder that writes values as text: in UTC (a TIMESTAMPTZ reads as the engine computed it, not in
    this machine's zone), locked. The DataFrame decoder keeps the machine's zone: `df <<` gives what `.df()` does."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET GLOBAL TimeZone = 'UTC'")  # GLOBAL: each page is read on a cursor of its own
    con.execute("SET lock_configuration = true")
    return con


def _restoring_projection(columns: tuple[Column, ...], stored: dict[str, str]) -> str:
    parts = []
    for column in columns:
        name = quote_identifier(column.name)
        parts.append(name if stored.get(column.name) == column.type
                     else f"CAST({name} AS {checked_type(column.type)}) AS {name}")
    return ", ".join(parts)


@functools.lru_cache(maxsize=256)
def checked_type(type_name: str) -> str:
    """`type_name` as DuckDB's own type parser reads and prints it.

    Types come from an answer and are spliced into SQL run here, so a type
    like "VARCHAR) AS a, (SELECT ...) AS b, CAST(NULL AS VARCHAR" must never
    reach the decoder: only what parses as one type gets through, and what is
    spliced is DuckDB's printing of it, not the answer's text.
    """
    try:
        return str(duckdb.type(type_name))
    except duckdb.Error:
        raise EngineError(f"the engine's answer declares a column type DuckDB does not read as one type: "
                          f"{type_name!r}") from None


def _empty_select(columns: tuple[Column, ...]) -> str:
    projection = ", ".join(f"CAST(NULL AS {checked_type(c.type)}) AS {quote_identifier(c.name)}" for c in columns)
    return f"SELECT {projection} LIMIT 0"
