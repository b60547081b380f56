"""The wire protocol between the notebook and the lake handler (version 1).

Everything that crosses the wire is declared here, once, in both
directions: each request and each answer is a frozen dataclass, tagged
(`op` for a request; `kind` for an answer, the one key of its body), whose
field types carry their bounds. The codec in wire.py derives the JSON from
those declarations (`encode`) and checks every field on arrival
(`parse_request` at the handler's edge, `parse_answer` in the notebook),
so no field travels unchecked in either direction. The error types an
answer may carry are in errors.py, how parameter values travel in
values.py. PROTOCOL.md beside this package describes the same for humans.

Adding an operation means one request type, one answer type, one handler
method and one client method, and PROTOCOL.md in the same change.

Only the standard library is imported: this module is on the handler's
cold-start path. (An answer's column types are checked by DuckDB's parser,
imported when an answer arrives, which only the notebook does.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from .errors import LakeError, ProtocolError
from .values import decode_value, encode_value
from .wire import OMITTED, Items, Range, Text, Via, at, decode_fields, encode_fields

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

PAGE_FORMAT = "parquet+base64"

# Lambda's names for the architectures it runs, by what platform.machine() says there.
LAMBDA_ARCHITECTURES = {"x86_64": "x86_64", "aarch64": "arm64"}

# Result ids are random tokens from secrets.token_urlsafe: nothing else parses.
RESULT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,64}")
PARAM_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A lake table's name as the catalog resolves it (one path segment), and a partition key's type name.
TABLE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")
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
Base64 = Annotated[str, Text(MAX_ANSWER_CHARS, pattern=r"[A-Za-z0-9+/]*={0,2}", says="base64 data")]


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


def _check_sql_size(sql: str, views: tuple[View, ...]) -> None:
    if len(sql) + sum(len(view.sql) for view in views) > MAX_SQL_CHARS:
        raise ProtocolError(f"the query and its views together are longer than {MAX_SQL_CHARS} characters")


# --- requests -----------------------------------------------------------------


@dataclass(frozen=True)
class QueryRequest:
    """Run `sql` and answer its first page."""

    op: ClassVar[str] = "query"
    sql: Sql
    params: Params
    page_size: RowCount
    views: Views = ()  # the notebook's views the query uses, dependencies first
    # May be answered from the stored result of the same query over the same inputs.
    reuse: Annotated[bool, OMITTED] = True
    # Tables a fan-out could split the query over: where one is Hive-partitioned, the answer is their
    # listing (a PartitionsAnswer) and nothing runs; otherwise the query runs, in the same call.
    fanout_tables: Annotated[tuple[TableName, ...], Items(MAX_LISTED_TABLES, noun="table names"), OMITTED] = ()
    # The caller's secret: results are reused only among requests carrying the same one (the reuse key
    # is keyed with it). None: nothing is reused or kept for reuse, as if the scope were new and private.
    reuse_scope: Annotated[ReuseScope | None, OMITTED] = None

    def check_arrival(self) -> "QueryRequest":
        _check_sql_size(self.sql, self.views)
        return self


@dataclass(frozen=True)
class MaterializeRequest:
    """Write the result of `sql` to `path` in the lake, atomically."""

    op: ClassVar[str] = "materialize"
    sql: Sql
    path: Annotated[str, Text(MAX_FILE_PATH_CHARS, pattern=DASHBOARD_PATH_PATTERN,
                              says="a .parquet file under dashboard/, like dashboard/my_view.parquet")]
    views: Views = ()

    def check_arrival(self) -> "MaterializeRequest":
        _check_sql_size(self.sql, self.views)
        return self


@dataclass(frozen=True)
class PageRequest:
    """Rows [offset, offset + limit) of a stored result."""

    op: ClassVar[str] = "page"
    result_id: ResultId
    offset: Count
    limit: Annotated[int, Range(1, MAX_PAGE_ROWS)]


@dataclass(frozen=True)
class PartRequest:
    """Bytes [start, start + length) of a stored result's Parquet file, as they are (no re-encoding)."""

    op: ClassVar[str] = "part"
    result_id: ResultId
    start: Count
    length: Annotated[int, Range(1, MAX_PART_BYTES)]


@dataclass(frozen=True)
class DownloadRequest:
    """Where the whole stored result can be fetched from, as one file."""

    op: ClassVar[str] = "download"
    result_id: ResultId


@dataclass(frozen=True)
class TablesRequest:
    """What tables the lake holds: its catalog, answered from the files' listing and Parquet footers."""

    op: ClassVar[str] = "tables"


@dataclass(frozen=True)
class PartitionsRequest:
    """Which of `tables` are Hive-partitioned lake tables, and their files: what a fan-out plans over."""

    op: ClassVar[str] = "partitions"
    tables: Annotated[tuple[TableName, ...], Items(MAX_LISTED_TABLES, least=1, noun="table names")]


FilePath = Annotated[str, Text(MAX_FILE_PATH_CHARS, least=1, says="a path")]
KeyName = Annotated[str, Text(128, least=1, says="a partition key's name")]


@dataclass(frozen=True)
class TaskRequest:
    """One fan-out task: `sql` over a share of the Hive-partitioned table `table`.

    The request names the files (paths relative to the lake), never SQL with
    paths in it: the handler checks each is one of the table's own files and
    reads them itself under the table's name, with the keys typed as
    `key_types` says (as the whole table reads them).
    """

    op: ClassVar[str] = "task"
    sql: Sql
    params: Params
    page_size: RowCount
    table: TableName
    files: Annotated[tuple[FilePath, ...], Items(MAX_TASK_FILES, least=1, noun="paths", unique=True,
                                                 chars=MAX_TASK_FILE_CHARS)]
    key_types: Annotated[tuple[tuple[KeyName, Annotated[str, Text(64, pattern=KEY_TYPE_PATTERN, says="a type name")]],
                               ...], Items(MAX_PARTITION_KEYS, noun="partition keys and types")]
    views: Views = ()

    def check_arrival(self) -> "TaskRequest":
        _check_sql_size(self.sql, self.views)
        if any(view.name.lower() == self.table.lower() for view in self.views):
            raise ProtocolError(f"a task's views may not be named {self.table}, the table it splits")
        return self


@dataclass(frozen=True)
class SortKey:
    column: ColumnName
    descending: bool = False


@dataclass(frozen=True)
class DeriveRequest:
    """A stored result sorted and/or filtered, as a new result (its rows the filter's count)."""

    op: ClassVar[str] = "derive"
    result_id: ResultId
    sort: Annotated[tuple[SortKey, ...], Items(MAX_SORT_KEYS, noun="sort keys")]
    filter: Annotated[str, Text(MAX_FILTER_CHARS)] | None  # an SQL condition on the result's columns
    page_size: RowCount


@dataclass(frozen=True)
class ProfileRequest:
    """What one column of a stored result holds."""

    op: ClassVar[str] = "profile"
    result_id: ResultId
    column: ColumnName


Request = Union[QueryRequest, PageRequest, PartRequest, DownloadRequest, MaterializeRequest, TablesRequest,
                DeriveRequest, ProfileRequest, PartitionsRequest, TaskRequest]
REQUESTS = {cls.op: cls for cls in get_args(Request)}


def parse_request(event: Any) -> Request:
    """Validate an incoming event at the edge; raise ProtocolError naming the problem."""
    if not isinstance(event, dict):
        raise ProtocolError(f"the event must be a JSON object, not {type(event).__name__}")
    if type(event.get("version")) is not int or event["version"] != VERSION:
        raise ProtocolError(f"unsupported protocol version {event.get('version')!r}; this handler speaks {VERSION}")
    op = event.get("op")
    if not isinstance(op, str) or op not in REQUESTS:
        raise ProtocolError(f"unknown op {op!r}; expected {', '.join(map(repr, REQUESTS))}")
    return decode_fields(REQUESTS[op], {key: value for key, value in event.items() if key not in ("version", "op")})


def encode(message) -> dict:
    """The JSON object a request or an answer travels as."""
    tag = {"op": message.op} if hasattr(message, "op") else {}
    return {"version": VERSION, **tag, **encode_fields(message)}


# The events the notebook sends, as the handler reads them; the client will build the dataclasses itself.


# --- answers -----------------------------------------------------------------
# The handler builds these and sends `encode(answer)`; the notebook gets them back
# with `parse_answer`. Every field of an answer is as hostile as a request's: names
# are data (consumers quote them), types are DuckDB's printing of what its parser
# reads, numbers are bounded, paths and URLs are checked.


@dataclass(frozen=True)
class Column:
    name: Annotated[str, Text(MAX_ANSWER_CHARS)]
    type: DuckDBType  # DuckDB's type name, as DESCRIBE gives it


@dataclass(frozen=True)
class Stats:
    """On every answer: what the call cost in the engine, and where it ran."""

    engine_ms: Annotated[float, Range(0, 1e9)] = 0.0
    cold: bool = False
    rows: Count = 0  # the result's rows
    encoded_bytes: Annotated[int, Range(0, MAX_RESPONSE_BYTES)] = 0  # of the page or part this answer carries
    duckdb_version: Annotated[str, Text(64, pattern=r"[A-Za-z0-9.+\-]*", says="a version")] = ""
    # Lambda's name for it (x86_64, arm64): the price depends on it.
    architecture: Annotated[str, Text(64, pattern=r"[A-Za-z0-9_]*", says="a machine's name")] = ""


@dataclass(frozen=True)
class Page:
    """Rows [offset, offset + row_count) of a result, as a base64 Parquet file."""

    offset: Count
    row_count: Count
    data: Base64
    format: Literal["parquet+base64"] = PAGE_FORMAT


@dataclass(frozen=True)
class Part:
    """Bytes [start, start + length) of a stored result's Parquet file, base64."""

    start: Count
    length: Annotated[int, Range(0, MAX_PART_BYTES)]
    data: Base64

    def check_arrival(self) -> "Part":
        if len(self.data) != 4 * ((self.length + 2) // 3):
            raise ProtocolError(f"'part.data' does not hold the {self.length} bytes 'part.length' says")
        return self


@dataclass(frozen=True)
class ResultInfo:
    """What every answer about a result says of it."""

    result_id: ResultId | None  # None: a small result, never stored, whole in this answer's page
    columns: Annotated[tuple[Column, ...], Items(MAX_COLUMNS, noun="columns")]
    total_rows: Count
    result_bytes: Count  # the stored file's size: the parts to fetch are known from the first answer

    @property
    def inline(self) -> bool:
        return self.result_id is None


Result = Annotated[ResultInfo, at()]  # its fields travel in the answer's own object


@dataclass(frozen=True)
class PageAnswer:
    """The answer to `query`, `page`, `derive` and `task`."""

    kind: ClassVar[str] = "page"
    result: Result
    page: Page
    stats: Stats = field(default_factory=Stats)
    # A query answered from an earlier run's result: when that ran (Unix time).
    reused_from: Annotated[Annotated[float, Range(0, 2**40)] | None, OMITTED] = None

    def check_arrival(self) -> "PageAnswer":
        rows = self.page.row_count
        if rows and self.page.offset + rows > self.result.total_rows:
            raise ProtocolError(f"the page holds rows past the result's {self.result.total_rows}")
        return self


@dataclass(frozen=True)
class PartAnswer:
    kind: ClassVar[str] = "part"
    result: Result
    part: Part
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class DownloadAnswer:
    """Where the stored result's whole Parquet file can be read: an https URL that the function
    signed with its own role, good for `expires_s` (an S3 lake), or a local file path (a local lake)."""

    kind: ClassVar[str] = "download"
    result: Result
    url: Annotated[str, Text(MAX_URL_CHARS), at("download", "url")]
    expires_s: Annotated[int, Range(0, MAX_DOWNLOAD_SECONDS), at("download", "expires_s")]
    stats: Stats = field(default_factory=Stats)

    def check_arrival(self) -> "DownloadAnswer":
        problem = _download_problem(self.url, self.result.result_id)
        if problem:
            raise ProtocolError(f"'download.url' {problem}")
        return self


@dataclass(frozen=True)
class MaterializeAnswer:
    kind: ClassVar[str] = "materialized"
    path: Annotated[str, Text(MAX_URL_CHARS), at("materialized", "path")]  # where the file is now, in the lake
    rows: Annotated[Count, at("materialized", "rows")]
    bytes: Annotated[Count, at("materialized", "bytes")]
    stats: Stats = field(default_factory=Stats)

    def check_arrival(self) -> "MaterializeAnswer":
        _, folder, name = self.path.rpartition(f"/{DASHBOARD_FOLDER}/")
        if not folder or not DASHBOARD_PATH_PATTERN.fullmatch(DASHBOARD_FOLDER + "/" + name) or _dot_segment(self.path):
            raise ProtocolError(f"'materialized.path' is not a .parquet file under {DASHBOARD_FOLDER}/")
        return self


# What a lake table is, by where its files are (README, "The lake's tables").
TableKind = Literal["file", "partitioned", "materialized view"]
TABLE_KINDS = get_args(TableKind)


@dataclass(frozen=True)
class TableInfo:
    """One table of the lake, as its name resolves; rows and bytes from the files' Parquet footers."""

    name: Annotated[str, Text(MAX_FILE_PATH_CHARS, least=1, says="a table's name")]
    kind: TableKind
    location: Annotated[str, Text(MAX_URL_CHARS)]  # the file, or the partitioned table's folder
    # The key=value folder names of a partitioned table, outermost first.
    partition_keys: Annotated[tuple[KeyName, ...], Items(MAX_PARTITION_KEYS, noun="keys")]
    files: Count
    bytes: Count
    rows: Count


@dataclass(frozen=True)
class TablesAnswer:
    kind: ClassVar[str] = "tables"
    tables: Annotated[tuple[TableInfo, ...], Items(MAX_TABLES, noun="tables")]
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class Bar:
    label: AnswerText  # a histogram bin's range, or a value
    count: Count


@dataclass(frozen=True)
class Profile:
    """One column of a result, over all its rows. Values are DuckDB's text of them."""

    column: AnswerText
    type: DuckDBType
    rows: Count
    nulls: Count
    distinct: Count  # approximate (approx_count_distinct)
    min: AnswerText | None  # min, max and mean: for numbers and times only
    max: AnswerText | None
    mean: AnswerText | None
    bars_kind: Literal["histogram", "top"]  # equal-width bins, or the most frequent values
    bars: Annotated[tuple[Bar, ...], Items(MAX_BARS, noun="bars")]


@dataclass(frozen=True)
class ProfileAnswer:
    kind: ClassVar[str] = "profile"
    result: Result
    profile: Profile
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class PartitionFile:
    """One file of a Hive-partitioned table: its path relative to the lake, its size, and its
    partition values as the path spells them (URL-decoded), key by key."""

    path: FilePath
    bytes: Count
    partition: Annotated[tuple[tuple[KeyName, Annotated[str, Text(MAX_FILE_PATH_CHARS)]], ...],
                         Items(MAX_PARTITION_KEYS, noun="keys")]


@dataclass(frozen=True)
class PartitionedTable:
    name: TableName
    key_types: Annotated[tuple[Column, ...], Items(MAX_PARTITION_KEYS, noun="keys")]  # as the whole table reads them
    files: Annotated[tuple[PartitionFile, ...], Items(MAX_LISTED_FILES, noun="files")]

    def check_arrival(self) -> "PartitionedTable":
        keys = set()
        for file in self.files:
            problem = _partition_file_problem(self.name, file)
            if problem:
                raise ProtocolError(f"the listing of {self.name} names {file.path[:200]!r}, which {problem}")
            keys.update(key.lower() for key, _ in file.partition)
        if not {column.name.lower() for column in self.key_types} <= keys:
            raise ProtocolError(f"the listing of {self.name} types keys its files do not have")
        return self


@dataclass(frozen=True)
class PartitionsAnswer:
    """The asked-for tables that are Hive-partitioned in the lake; the others are left out."""

    kind: ClassVar[str] = "partitioned_tables"
    tables: Annotated[tuple[PartitionedTable, ...], Items(MAX_LISTED_TABLES, noun="tables"), at("partitioned_tables")]
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class ErrorAnswer:
    kind: ClassVar[str] = "error"
    type: Annotated[str, Text(128, pattern=r"[A-Za-z][A-Za-z0-9_]*", says="an error type"),
                    at("error", "type")]
    message: Annotated[str, Text(MAX_ANSWER_CHARS), at("error", "message")]
    position: Annotated[Annotated[int, Range(0, MAX_SQL_CHARS)] | None, at("error", "position")] = None
    stats: Stats = field(default_factory=Stats)

    @classmethod
    def of(cls, error: LakeError) -> "ErrorAnswer":
        return cls(error.error_type, error.message, error.position)


Answer = Union[PageAnswer, PartAnswer, DownloadAnswer, MaterializeAnswer, TablesAnswer, ProfileAnswer,
               PartitionsAnswer, ErrorAnswer]
ANSWERS = {cls.kind: cls for cls in get_args(Answer)}


def parse_answer(wire: Any) -> Answer:
    """An answer from the wire, every field checked; ProtocolError says what does not fit."""
    if not isinstance(wire, dict):
        raise ProtocolError(f"the answer must be a JSON object, not {type(wire).__name__}")
    if type(wire.get("version")) is not int or wire["version"] != VERSION:
        raise ProtocolError(f"the handler answered in protocol version {wire.get('version')!r}; "
                            f"this notebook speaks {VERSION}")
    kinds = [kind for kind in ANSWERS if kind in wire]
    if len(kinds) != 1:
        raise ProtocolError(f"an answer carries exactly one of {', '.join(map(repr, ANSWERS))}, not {len(kinds)}")
    return decode_fields(ANSWERS[kinds[0]], {key: value for key, value in wire.items() if key != "version"})


def _dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def _download_problem(url: str, result_id: str | None) -> str | None:
    """Why `url` cannot be where the stored result `result_id` is read from, or None: an https URL (or
    plain http to this machine, as a local S3 server is) or an absolute local path, ending in the result's file."""
    import urllib.parse  # only the notebook parses answers

    if result_id is None:
        return "names a download of a result that is not stored"
    target = urllib.parse.urlsplit(url)
    local = not target.scheme and url.startswith("/")
    if not local and target.scheme != "https" and not (target.scheme == "http" and target.hostname in LOOPBACK_HOSTS):
        return "is neither https, nor http to this machine, nor a local path"
    if target.username is not None or target.password is not None or not (local or target.hostname):
        return "names no host, or a user"
    if not target.path.endswith(f"/{RESULTS_FOLDER}/{result_id}.parquet") or _dot_segment(target.path):
        return "does not name the result's own file"
    return None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _partition_file_problem(table: str, file: PartitionFile) -> str | None:
    """Why `file` is not one of `table`'s files as its listing keeps them (lake.is_partition_file), or
    None: `<table>/key=value/.../<name>.parquet`, its partition what the path spells, URL-decoded."""
    import urllib.parse  # only the notebook parses answers

    *folders, name = file.path.split("/")
    if len(folders) < 2 or folders[0].lower() != table.lower():
        return f"is not inside {table}/"
    if not name.endswith(".parquet") or name.startswith((".", "_")):
        return "is not a Parquet file"
    unquote = urllib.parse.unquote if "%" in file.path else str
    spelled = tuple((unquote(key), unquote(value))
                    for key, equals, value in (folder.partition("=") for folder in folders[1:]) if key and equals)
    if len(spelled) != len(folders) - 1 or spelled != file.partition:
        return "does not spell the partition the listing gives it"
    return None
