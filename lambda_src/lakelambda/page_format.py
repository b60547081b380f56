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
import re
from typing import Sequence

from .protocol import Column
from .sql import quote_identifier

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
