"""What the protocol's fields hold: its limits, and the bounded types its messages are declared with.

protocol.py (the requests) and answers.py (the answers) declare their fields
with these; the codec (wire.py) reads the bounds. Only the standard library is
imported: this is on the handler's cold-start path. (An answer's column types
are checked by DuckDB's parser, imported when an answer arrives, which only the
notebook does.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final

from .values import decode_value, encode_value
from .markers import OMITTED, Items, Range, Text, Via

VERSION = 1

# AWS Lambda's limit for a synchronous response, in bytes.
MAX_RESPONSE_BYTES = 6_291_556
# Room kept for everything in a response except the page data itself.
ENVELOPE_ALLOWANCE_BYTES = 256 * 1024
# The most rows one page request may ask for; a page that would not fit in a
# response holds fewer rows, and says how many.
MAX_PAGE_ROWS = 1_000_000
# The most bytes of a stored result one part request returns (base64 grows them by 4/3).
MAX_PART_BYTES = (MAX_RESPONSE_BYTES - ENVELOPE_ALLOWANCE_BYTES) * 3 // 4
# The most a page, or a result that travels inline, may decode to (page_format.decoded_size): sixteen
# responses' worth. A response carries 6 MB at most (Lambda's synchronous limit), and ordinary rows
# compress four to six times (zstd, taxi rows), so only data far more repetitive than that comes near it,
# and the handler then sends fewer rows a page; beyond it, a few KB of Parquet could be gigabytes decoded.
MAX_DECODED_BYTES = 16 * MAX_RESPONSE_BYTES
# A page's data: the base64 of at most MAX_PART_BYTES of Parquet, the most a page holds (results.page).
MAX_PAGE_DATA_CHARS = 4 * -(-MAX_PART_BYTES // 3)
# A result whose Parquet file is at most this big comes back whole in the query's
# answer and is never stored: no upload, and no further call for its pages.
INLINE_RESULT_BYTES = 1024 * 1024
# Bounds on what a caller may send, so that checking and planning a request
# (which DuckDB cannot interrupt) always ends well inside the time budget.
MAX_SQL_CHARS = 100_000  # the query's and its views' together
MAX_PARAMS = 1_000
MAX_VIEWS = 200
MAX_NAME_CHARS = 1024  # a view's or a parameter's name
# A derived result's filter (an SQL condition, checked by explore.py) and sort keys.
MAX_FILTER_CHARS = 10_000
MAX_SORT_KEYS = 8
# A fan-out asks for the files of at most this many tables at once, and one task reads at most this many files.
MAX_LISTED_TABLES = 16
MAX_TASK_FILES = 10_000
MAX_FILE_PATH_CHARS = 1024
MAX_TASK_FILE_CHARS = MAX_SQL_CHARS  # a task's file names together: the handler makes them SQL too
MAX_PARTITION_KEYS = 32
# Bounds on what an answer may carry (no text in one is longer than a response).
MAX_COUNT = 2**62  # rows, bytes, offsets
MAX_ANSWER_CHARS = MAX_RESPONSE_BYTES
MAX_COLUMNS = 100_000
MAX_TABLES = 100_000
MAX_LISTED_FILES = 1_000_000
MAX_BARS = 64
MAX_URL_CHARS = 16_384
MAX_DOWNLOAD_SECONDS = 7 * 24 * 3600  # the longest an S3 presigned URL is good for
# A reuse scope is a secret (the notebook makes 64 hex digits): long enough that it cannot be guessed.
MIN_REUSE_SCOPE_CHARS = 32
MAX_REUSE_SCOPE_CHARS = 256
# Printable ASCII, without spaces around it.
REUSE_SCOPE_PATTERN = re.compile(r"[!-~](?:[ -~]*[!-~])?")

PAGE_FORMAT: Final = "parquet+base64"  # Final: the Literal a page's format field declares

# Lambda's names for the architectures it runs, by what platform.machine() says there.
LAMBDA_ARCHITECTURES = {"x86_64": "x86_64", "aarch64": "arm64"}

# Result ids are random tokens from secrets.token_urlsafe: nothing else parses.
RESULT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,64}")
PARAM_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A lake table's name as the catalog resolves it (one path segment), and a partition key's type name.
TABLE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")
# Any name the lake's catalog lists (lake._CATALOG_NAME): completion offers these, so none is SQL.
CATALOG_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
KEY_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_ ]{0,63}")
# The lake folder materialized views are written to, and the only one requests may name.
DASHBOARD_FOLDER = "dashboard"
DASHBOARD_PATH_PATTERN = re.compile(DASHBOARD_FOLDER + r"(/[A-Za-z0-9_][A-Za-z0-9_\-]*)+\.parquet")
# Where the lake keeps stored results (lake.INTERNAL_FOLDER), as a download's path or URL ends.
RESULTS_FOLDER = "_lakemagic/results"

# --- what fields hold ---------------------------------------------------------

Sql = Annotated[str, Text(MAX_SQL_CHARS, least=1, blank=False, says="a non-blank string")]
RowCount = Annotated[int, Range(0, MAX_PAGE_ROWS)]
Count = Annotated[int, Range(0, MAX_COUNT)]
ResultId = Annotated[str, Text(64, pattern=RESULT_ID_PATTERN, says="a result id this handler issued")]
TableName = Annotated[str, Text(128, pattern=TABLE_NAME_PATTERN, says="a lake table's name")]
Identifier = Annotated[str, Text(MAX_NAME_CHARS, pattern=PARAM_NAME_PATTERN, says="an identifier")]
ColumnName = Annotated[str, Text(MAX_FILTER_CHARS, least=1, says="a column name")]
ParamValue = Annotated[Any, Via(decode_value, encode=encode_value)]
Params = Annotated[dict[Annotated[str, Text(MAX_NAME_CHARS, pattern=PARAM_NAME_PATTERN, says="a parameter name")],
                        ParamValue], Items(MAX_PARAMS, noun="parameters")]
AnswerText = Annotated[str, Text(MAX_ANSWER_CHARS)]
Base64 = Annotated[str, Text(MAX_PAGE_DATA_CHARS, pattern=r"[A-Za-z0-9+/]*={0,2}", says="base64 data")]


def _duckdb_type(text: str) -> str:
    """`text` if it is DuckDB's own printing of one type (sql.printed_type). Imported on an answer's
    arrival, which only the notebook parses: the handler's cold start never loads DuckDB for it."""
    from .sql import printed_type
    return printed_type(text)


DuckDBType = Annotated[str, Text(MAX_ANSWER_CHARS), Via(_duckdb_type, says="a DuckDB type")]


@dataclass(frozen=True)
class View:
    """A named query the notebook keeps; it travels with every query that uses it."""

    name: Identifier
    sql: Sql


Views = Annotated[tuple[View, ...], Items(MAX_VIEWS, noun="views"), OMITTED]


ReuseScope = Annotated[str, Text(MAX_REUSE_SCOPE_CHARS, least=MIN_REUSE_SCOPE_CHARS, pattern=REUSE_SCOPE_PATTERN,
                                  says=f"a reuse scope of {MIN_REUSE_SCOPE_CHARS} to {MAX_REUSE_SCOPE_CHARS} "
                                       "characters, printable ASCII without spaces around them")]


def reuse_scope_problem(scope: Any) -> str | None:
    """Why `scope` cannot be a reuse scope (a secret, long enough not to be guessed), or None."""
    if not isinstance(scope, str):
        return "a reuse scope is a string"
    if not MIN_REUSE_SCOPE_CHARS <= len(scope) <= MAX_REUSE_SCOPE_CHARS:
        return f"a reuse scope is {MIN_REUSE_SCOPE_CHARS} to {MAX_REUSE_SCOPE_CHARS} characters, not {len(scope)}"
    if not REUSE_SCOPE_PATTERN.fullmatch(scope):
        return "a reuse scope is printable ASCII, without spaces around it"
    return None


FilePath = Annotated[str, Text(MAX_FILE_PATH_CHARS, least=1, says="a path")]
KeyName = Annotated[str, Text(128, least=1, says="a partition key's name")]


@dataclass(frozen=True)
class Column:
    name: Annotated[str, Text(MAX_ANSWER_CHARS)]
    type: DuckDBType  # DuckDB's type name, as DESCRIBE gives it
