"""How result rows travel: typed, compressed, columnar pages (Parquet, base64).

Parquet keeps almost every DuckDB type as it is. The few it cannot hold
exactly (128-bit integers become DOUBLE, a TIME WITH TIME ZONE loses its
offset, negative INTERVALs cannot be written, BIT has no Parquet form) are
stored as VARCHAR and cast back on arrival, using the column types the
answer declares. ENUMs, ARRAYs
and the TIMESTAMP_S/MS units come back as VARCHAR, LIST and TIMESTAMP, and
the same cast restores them (lakemagic/decode.py), so a DataFrame built from
pages equals `duckdb.sql(...).df()` of the same query.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
from typing import NamedTuple, Sequence

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .protocol import MAX_DECODED_BYTES, Column
from .sql import quote_identifier, quote_literal

# Leaf types whose Parquet form loses information (a negative INTERVAL cannot
# be written at all). They travel as VARCHAR; a LIST or STRUCT holding one
# keeps its shape with VARCHAR in that place, so only the leaf is reparsed.
_LOSSY_LEAF = r"\bU?HUGEINT\b|\bTIME WITH TIME ZONE\b|\bBIT\b|\bBIGNUM\b|\bVARINT\b|\bINTERVAL\b"
# Quoted parts of a type string (ENUM values, field names) are never types.
_QUOTED_OR_LOSSY = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|" + _LOSSY_LEAF)


def storage_type(declared: str) -> str:
    """The type a column is stored and sent as: `declared` with each lossy leaf type made VARCHAR."""
    return _QUOTED_OR_LOSSY.sub(lambda m: m.group() if m.group()[0] in "'\"" else "VARCHAR", declared)


def storage_projection(columns: Sequence[Column]) -> str:
    """The SELECT list that turns a result into its storable form."""
    parts = []
    for column in columns:
        name = quote_identifier(column.name)
        stored = storage_type(column.type)
        parts.append(name if stored == column.type else f"CAST({name} AS {stored}) AS {name}")
    return ", ".join(parts)


# Stored results favour speed (snappy writes and reads several times faster
# than zstd); pages favour size on the wire (zstd: about a quarter of snappy's
# bytes on taxi rows, see benchmarks/).
STORAGE_COMPRESSION = "snappy"
PAGE_COMPRESSION = "zstd"


def encode_file(path: str) -> str:
    with open(path, "rb") as page_file:
        return base64.b64encode(page_file.read()).decode("ascii")


class Decoded(NamedTuple):
    rows: int
    bytes: int
    columns: int  # as many as the file holds, as DuckDB reads it


def decoded_size(path: str, writer: duckdb.DuckDBPyConnection | None = None) -> Decoded:
    """The rows, bytes and columns of the Parquet file at `path`, its bytes as DuckDB holds it decoded: 16
    bytes a value, plus each string's and blob's bytes, in every element of every list, map and struct.
    Summed by DuckDB over its vectors, so a value that many rows share (a Parquet dictionary entry, a run)
    counts once for each row without being copied. A page and an inline result may decode to MAX_DECODED_BYTES at most; a file
    whose reading needs more memory than the measuring database has is said to be one byte more.

    Measured on `writer` where given: a cursor of the database that wrote the file from rows it held
    itself (a handler's result or page), which reading it back costs no more than computing them did,
    and which spares a cold start the measurer's own database; a file from anywhere else (an answer)
    is measured by the measurer, whose small memory bounds what it decompresses.
    """
    with contextlib.nullcontext(writer) if writer is not None else _measurer().cursor() as con:
        relation = con.read_parquet([path])  # bound, not run: the columns' names and types
        sizes = [_value_bytes(quote_identifier(name), kind, 0) for name, kind in zip(relation.columns, relation.types)]
        # Summed by a statement over the file: the relation's own aggregate takes about 0.35 ms more (1.55
        # against 1.2 ms for a small answer), paid by every page and inline answer on both sides of the wire.
        source = f"read_parquet([{quote_literal(path)}])"
        try:
            measured = con.execute(f"SELECT count(*), sum({' + '.join(sizes) or '0'})::HUGEINT FROM {source}").fetchone()
        except duckdb.OutOfMemoryException:  # one Parquet page alone decompresses past the bound
            measured = con.execute(f"SELECT count(*), {MEASURER_MEMORY_BYTES + 1} FROM {source}").fetchone()
    assert measured is not None  # an aggregate gives one row
    return Decoded(measured[0], int(measured[1] or 0), len(relation.columns))


# Declared types that are stored as they are and read back as a type of fixed size: 16 bytes a value in
# decoded_size's measure, whatever the value (strings, blobs, nested and lossy types are not among them).
_FIXED_SIZE = re.compile(r"BOOLEAN|U?(?:TINY|SMALL|BIG)?INT(?:EGER)?|FLOAT|DOUBLE|DECIMAL\(\d+,\d+\)|DATE|TIME|"
                         r"TIMESTAMP(?:_S|_MS|_NS| WITH TIME ZONE)?")


def written_size(path: str, columns: Sequence[Column], rows: int, held: tuple | None = None,
                 writer: duckdb.DuckDBPyConnection | None = None) -> int:
    """The bytes decoded_size gives for a result file of `rows` rows of `columns`, written by a query whose
    columns these are (or, adopted from an answer, measured on arrival already: ResultStore.keep's callers).

    Where every column is of a fixed-size type it is counted, 16 bytes a value, without reading the file:
    decoded_size's own figure for those types, whatever the data (about 1.5 ms of a small answer's time).
    Where the others are strings or blobs and `held` (a cursor, a table's name) names the table the file
    was written from, that table is measured (table_size), in a fraction of a reading of the file: the
    file holds those values as they are. Else the file is measured (on `writer`, the cursor that wrote it, if given).
    """
    fixed = [bool(_FIXED_SIZE.fullmatch(storage_type(column.type))) for column in columns]
    if all(fixed):
        return 16 * len(columns) * rows
    if held is not None and all(is_fixed or column.type in _LENGTH for column, is_fixed in zip(columns, fixed)):
        con, table = held
        return table_size(con, table, columns, rows)
    return decoded_size(path, writer).bytes


# Declared types of variable size that a result file holds, and DuckDB reads back, as they are: decoded_size
# counts 16 bytes a value plus this function's length of it.
_LENGTH = {"VARCHAR": "strlen", "BLOB": "octet_length"}


def table_size(con, table: str, columns: Sequence[Column], rows: int) -> int:
    """decoded_size's bytes for a result held as a table (`table`, SQL) of `rows` rows of `columns`: counted,
    16 bytes a value, where every column is of a fixed-size type, else summed over the table on `con` (the
    lengths of its strings and blobs alone, in one statement, where the other columns are of fixed size)."""
    fixed = [bool(_FIXED_SIZE.fullmatch(column.type)) for column in columns]
    if all(fixed):
        return 16 * len(columns) * rows
    if all(is_fixed or column.type in _LENGTH for column, is_fixed in zip(columns, fixed)):
        lengths = " + ".join(f"coalesce(sum({_LENGTH[column.type]}({quote_identifier(column.name)})), 0)"
                             for column, is_fixed in zip(columns, fixed) if not is_fixed)
        return 16 * len(columns) * rows + int(con.execute(f"SELECT {lengths} FROM {table}").fetchone()[0])
    relation = con.table(table)
    sizes = [_value_bytes(quote_identifier(name), kind, 0) for name, kind in zip(relation.columns, relation.types)]
    measured = relation.aggregate(f"sum({' + '.join(sizes) or '0'})::HUGEINT").fetchone()
    return int(measured[0] or 0)


# What the measuring database may hold: a page's one Parquet page decompressed, and its vectors.
MEASURER_MEMORY_BYTES = 2 * MAX_DECODED_BYTES


@functools.lru_cache(maxsize=1)
def _measurer() -> duckdb.DuckDBPyConnection:
    """The database that measures files from elsewhere (an answer's pages and inline results), and only that:
    in memory, one thread, at most MEASURER_MEMORY_BYTES (DuckDB's Parquet reader decompresses pages within
    its memory limit, so a few KB that would decompress to gigabytes fail here), no extensions, in UTC, locked."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                 "threads": 1, "memory_limit": f"{MEASURER_MEMORY_BYTES}B"})
    con.execute("SET GLOBAL TimeZone = 'UTC'")  # GLOBAL: each page is measured on a cursor of its own
    con.execute("SET lock_configuration = true")
    return con


def _value_bytes(value: str, kind, depth: int) -> str:
    """SQL for the bytes `value` (SQL of a `kind`, a DuckDBPyType read from the file) takes decoded."""
    if kind.id in ("varchar", "blob", "bit"):
        length = {"varchar": "strlen", "blob": "octet_length", "bit": "bit_length"}[kind.id]
        return f"(16 + coalesce({length}({value}), 0))"
    if kind.id in ("list", "array", "map"):
        element = f"e{depth}"
        parts = ([("key", f"map_keys({value})"), ("value", f"map_values({value})")] if kind.id == "map"
                 else [("child", value)])
        children = dict(kind.children)
        return "(16" + "".join(
            f" + coalesce(list_sum(list_transform({items}, lambda {element}: "
            f"{_value_bytes(element, children[part], depth + 1)})), 0)" for part, items in parts) + ")"
    if kind.id in ("struct", "union"):
        pick = "struct_extract" if kind.id == "struct" else "union_extract"
        return "(16" + "".join(f" + {_value_bytes(f'{pick}({value}, {quote_literal(name)})', child, depth)}"
                               for name, child in kind.children if name) + ")"
    return "16"
