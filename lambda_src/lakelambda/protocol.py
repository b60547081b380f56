"""The wire protocol between the notebook and the lake handler (version 1).

Everything that crosses the wire is defined here, in both directions:
requests (built by the notebook, validated at the handler's edge) and
answers (built by the handler, checked on arrival by the notebook); the
error types an answer may carry are in errors.py, how parameter values
travel in values.py. Both ends import these modules, so they agree by
construction. PROTOCOL.md beside this package describes the same for humans.

Adding an operation means one request type, one answer type, one handler
function and one client method.

Only the standard library is imported: this module is on the handler's
cold-start path.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .errors import LakeError, ProtocolError
from .values import decode_value, encode_value

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
# A derived result's filter (an SQL condition, checked by explore.py) and sort keys.
MAX_FILTER_CHARS = 10_000
MAX_SORT_KEYS = 8
# A fan-out asks for the files of at most this many tables at once, and one task reads at most this many files.
MAX_LISTED_TABLES = 16
MAX_TASK_FILES = 10_000
MAX_FILE_PATH_CHARS = 1024
MAX_TASK_FILE_CHARS = MAX_SQL_CHARS  # a task's file names together: the handler makes them SQL too
MAX_PARTITION_KEYS = 32
# A reuse scope is a secret (the notebook makes 64 hex digits): long enough that it cannot be guessed.
MIN_REUSE_SCOPE_CHARS = 32
MAX_REUSE_SCOPE_CHARS = 256

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


@dataclass(frozen=True)
class View:
    """A named query the notebook keeps; it travels with every query that uses it."""

    name: str
    sql: str


@dataclass(frozen=True)
class QueryRequest:
    sql: str
    params: dict[str, Any]
    page_size: int
    views: tuple[View, ...] = ()
    reuse: bool = True  # may be answered from the stored result of the same query over the same inputs
    # The caller's secret: results are reused only among requests carrying the same one (the reuse key
    # is keyed with it). None: nothing is reused or kept for reuse, as if the scope were new and private.
    reuse_scope: str | None = None
    # Tables a fan-out could split the query over: where one is Hive-partitioned, the answer is their
    # listing (a PartitionsAnswer) and nothing runs; otherwise the query runs, in the same call.
    fanout_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class MaterializeRequest:
    sql: str
    path: str  # under dashboard/, relative to the lake
    views: tuple[View, ...] = ()


@dataclass(frozen=True)
class PageRequest:
    result_id: str
    offset: int
    limit: int


@dataclass(frozen=True)
class PartRequest:
    result_id: str
    start: int
    length: int


@dataclass(frozen=True)
class DownloadRequest:
    result_id: str


@dataclass(frozen=True)
class TablesRequest:
    """What tables the lake holds: its catalog, answered from the files' listing and Parquet footers."""


@dataclass(frozen=True)
class PartitionsRequest:
    """Which of `tables` are Hive-partitioned lake tables, and their files: what a fan-out plans over."""

    tables: tuple[str, ...]


@dataclass(frozen=True)
class TaskRequest:
    """One fan-out task: `sql` over a share of the Hive-partitioned table `table`.

    The request names the files (paths relative to the lake), never SQL with
    paths in it: the handler checks each is one of the table's own files and
    reads them itself under the table's name, with the keys typed as
    `key_types` says (as the whole table reads them).
    """

    sql: str
    params: dict[str, Any]
    page_size: int
    table: str
    files: tuple[str, ...]
    key_types: tuple[tuple[str, str], ...]
    views: tuple[View, ...] = ()


@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool = False


@dataclass(frozen=True)
class DeriveRequest:
    """A stored result sorted and/or filtered, as a new result (its rows the filter's count)."""

    result_id: str
    sort: tuple[SortKey, ...]
    filter: str | None  # an SQL condition on the result's columns
    page_size: int


@dataclass(frozen=True)
class ProfileRequest:
    result_id: str
    column: str


Request = Union[QueryRequest, PageRequest, PartRequest, DownloadRequest, MaterializeRequest, TablesRequest,
                DeriveRequest, ProfileRequest, PartitionsRequest, TaskRequest]


def query_request(sql: str, params: dict[str, Any], page_size: int, views: tuple[View, ...] = (),
                  reuse: bool = True, fanout_tables: tuple[str, ...] = (), reuse_scope: str | None = None) -> dict:
    """The event that asks the handler to run `sql` and return its first page.

    `views` are the notebook's views the query uses, in dependency order.
    `reuse=False` makes the query run even if its result over the same inputs is stored;
    with `reuse`, only results of requests with the same `reuse_scope` answer it (none without one).
    `fanout_tables`: answer instead with the listing of those of them that are Hive-partitioned, if any.
    """
    request = {
        "version": VERSION,
        "op": "query",
        "sql": sql,
        "params": {name: encode_value(value) for name, value in params.items()},
        "page_size": page_size,
        "reuse": reuse,
    }
    if views:
        request["views"] = [{"name": view.name, "sql": view.sql} for view in views]
    if fanout_tables:
        request["fanout_tables"] = list(fanout_tables)
    if reuse_scope is not None:
        request["reuse_scope"] = reuse_scope
    return request


def materialize_request(sql: str, path: str, views: tuple[View, ...] = ()) -> dict:
    """The event that asks the handler to write the result of `sql` to `path` in the lake, atomically."""
    request = {"version": VERSION, "op": "materialize", "sql": sql, "path": path}
    if views:
        request["views"] = [{"name": view.name, "sql": view.sql} for view in views]
    return request


def page_request(result_id: str, offset: int, limit: int) -> dict:
    """The event that asks for rows [offset, offset + limit) of a stored result."""
    return {"version": VERSION, "op": "page", "result_id": result_id, "offset": offset, "limit": limit}


def part_request(result_id: str, start: int, length: int = MAX_PART_BYTES) -> dict:
    """The event that asks for bytes [start, start + length) of a stored result's Parquet file.

    Fetching a whole result this way moves the stored file as it is, with
    no re-encoding on either side.
    """
    return {"version": VERSION, "op": "part", "result_id": result_id, "start": start, "length": length}


def download_request(result_id: str) -> dict:
    """The event that asks where the whole stored result can be fetched from, as one file."""
    return {"version": VERSION, "op": "download", "result_id": result_id}


def tables_request() -> dict:
    """The event that asks for the lake's catalog."""
    return {"version": VERSION, "op": "tables"}


def derive_request(result_id: str, sort: tuple[SortKey, ...], filter: str | None, page_size: int) -> dict:
    """The event that asks for a stored result sorted by `sort` and cut to the rows where `filter` holds."""
    return {"version": VERSION, "op": "derive", "result_id": result_id, "page_size": page_size, "filter": filter,
            "sort": [{"column": key.column, "descending": key.descending} for key in sort]}


def profile_request(result_id: str, column: str) -> dict:
    """The event that asks what one column of a stored result holds."""
    return {"version": VERSION, "op": "profile", "result_id": result_id, "column": column}


def partitions_request(tables: list[str]) -> dict:
    """The event that asks which of `tables` are Hive-partitioned, with their files and key types."""
    return {"version": VERSION, "op": "partitions", "tables": list(tables)}


def task_request(sql: str, params: dict[str, Any], page_size: int, table: str, files: list[str],
                 key_types: dict[str, str], views: tuple[View, ...] = ()) -> dict:
    """The event that runs one fan-out task: `sql`, reading `table` as just `files`."""
    request = {"version": VERSION, "op": "task", "sql": sql,
               "params": {name: encode_value(value) for name, value in params.items()},
               "page_size": page_size, "table": table, "files": list(files), "key_types": dict(key_types)}
    if views:
        request["views"] = [{"name": view.name, "sql": view.sql} for view in views]
    return request


def parse_request(event: Any) -> Request:
    """Validate an incoming event at the edge; raise ProtocolError naming the problem."""
    if not isinstance(event, dict):
        raise ProtocolError(f"the event must be a JSON object, not {type(event).__name__}")
    if type(event.get("version")) is not int or event["version"] != VERSION:
        raise ProtocolError(f"unsupported protocol version {event.get('version')!r}; this handler speaks {VERSION}")
    op = event.get("op")
    if op == "query":
        return _parse_query(event)
    if op == "page":
        return _parse_page(event)
    if op == "part":
        return _parse_part(event)
    if op == "download":
        _reject_unknown_fields(event, {"version", "op", "result_id"})
        return DownloadRequest(result_id=_result_id(event))
    if op == "materialize":
        return _parse_materialize(event)
    if op == "tables":
        _reject_unknown_fields(event, {"version", "op"})
        return TablesRequest()
    if op == "derive":
        return _parse_derive(event)
    if op == "profile":
        _reject_unknown_fields(event, {"version", "op", "result_id", "column"})
        return ProfileRequest(_result_id(event), _column_name(event.get("column"), "'column'"))
    if op == "partitions":
        return _parse_partitions(event)
    if op == "task":
        return _parse_task(event)
    raise ProtocolError(f"unknown op {op!r}; expected 'query', 'page', 'part', 'download', 'materialize', "
                        "'tables', 'derive', 'profile', 'partitions' or 'task'")


def _parse_query(event: dict) -> QueryRequest:
    _reject_unknown_fields(event, {"version", "op", "sql", "params", "page_size", "views", "reuse", "fanout_tables",
                                   "reuse_scope"})
    sql = _sql(event.get("sql"), "'sql'")
    decoded = _params(event)
    page_size = _bounded_int(event, "page_size", 0, MAX_PAGE_ROWS)
    reuse = event.get("reuse", True)
    if not isinstance(reuse, bool):
        raise ProtocolError("'reuse' must be true or false")
    scope = event.get("reuse_scope")
    if scope is not None and reuse_scope_problem(scope) is not None:
        raise ProtocolError(f"'reuse_scope': {reuse_scope_problem(scope)}")
    return QueryRequest(sql=sql, params=decoded, page_size=page_size, views=_views(event, len(sql)), reuse=reuse,
                        fanout_tables=_table_names(event.get("fanout_tables", []), "'fanout_tables'", 0),
                        reuse_scope=scope)


def reuse_scope_problem(scope: Any) -> str | None:
    """Why `scope` cannot be a reuse scope, or None: it is a secret, long enough not to be guessed."""
    if not isinstance(scope, str):
        return "a reuse scope is a string"
    if not MIN_REUSE_SCOPE_CHARS <= len(scope) <= MAX_REUSE_SCOPE_CHARS:
        return f"a reuse scope is {MIN_REUSE_SCOPE_CHARS} to {MAX_REUSE_SCOPE_CHARS} characters, not {len(scope)}"
    if not (scope.isascii() and scope.isprintable()) or scope != scope.strip():
        return "a reuse scope is printable ASCII, without spaces around it"
    return None


def _params(event: dict) -> dict[str, Any]:
    params = event.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError("'params' must be an object mapping names to values")
    if len(params) > MAX_PARAMS:
        raise ProtocolError(f"a query may carry at most {MAX_PARAMS} parameters, not {len(params)}")
    for name in params:
        if not PARAM_NAME_PATTERN.fullmatch(name):
            raise ProtocolError(f"parameter name {name!r} is not a valid identifier")
    return {name: decode_value(value) for name, value in params.items()}


def _parse_partitions(event: dict) -> PartitionsRequest:
    _reject_unknown_fields(event, {"version", "op", "tables"})
    return PartitionsRequest(_table_names(event.get("tables"), "'tables'", 1))


def _table_names(tables, what: str, at_least: int) -> tuple[str, ...]:
    if not isinstance(tables, list) or not at_least <= len(tables) <= MAX_LISTED_TABLES:
        raise ProtocolError(f"{what} must be a list of {at_least} to {MAX_LISTED_TABLES} table names")
    return tuple(_table_name(name) for name in tables)


def _parse_task(event: dict) -> TaskRequest:
    _reject_unknown_fields(event, {"version", "op", "sql", "params", "page_size", "table", "files", "key_types",
                                   "views"})
    sql = _sql(event.get("sql"), "'sql'")
    table = _table_name(event.get("table"))
    files = event.get("files")
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_TASK_FILES:
        raise ProtocolError(f"'files' must be a list of 1 to {MAX_TASK_FILES} paths")
    for path in files:
        if not isinstance(path, str) or not 0 < len(path) <= MAX_FILE_PATH_CHARS:
            raise ProtocolError(f"each of 'files' must be a path of at most {MAX_FILE_PATH_CHARS} characters")
    if sum(map(len, files)) > MAX_TASK_FILE_CHARS:
        raise ProtocolError(f"'files' together are longer than {MAX_TASK_FILE_CHARS} characters")
    if len(set(files)) != len(files):
        raise ProtocolError("'files' names a file twice")
    key_types = event.get("key_types")
    if not isinstance(key_types, dict) or len(key_types) > MAX_PARTITION_KEYS:
        raise ProtocolError(f"'key_types' must be an object of at most {MAX_PARTITION_KEYS} partition keys and types")
    for key, kind in key_types.items():
        if not isinstance(kind, str) or not KEY_TYPE_PATTERN.fullmatch(kind) or not 0 < len(key) <= 128:
            raise ProtocolError(f"'key_types' gives partition key {key!r} the type {kind!r}, which is not a type name")
    views = _views(event, len(sql))
    if any(view.name.lower() == table.lower() for view in views):
        raise ProtocolError(f"a task's views may not be named {table}, the table it splits")
    return TaskRequest(sql=sql, params=_params(event), page_size=_bounded_int(event, "page_size", 0, MAX_PAGE_ROWS),
                       table=table, files=tuple(files), key_types=tuple(key_types.items()), views=views)


def _table_name(name: Any) -> str:
    if not isinstance(name, str) or not TABLE_NAME_PATTERN.fullmatch(name):
        raise ProtocolError(f"{name!r} is not a lake table's name")
    return name


def _parse_materialize(event: dict) -> MaterializeRequest:
    _reject_unknown_fields(event, {"version", "op", "sql", "path", "views"})
    path = event.get("path")
    if not isinstance(path, str) or not DASHBOARD_PATH_PATTERN.fullmatch(path):
        raise ProtocolError(f"'path' must name a .parquet file under dashboard/, like dashboard/my_view.parquet; got {path!r}")
    sql = _sql(event.get("sql"), "'sql'")
    return MaterializeRequest(sql=sql, path=path, views=_views(event, len(sql)))


def _sql(sql: Any, what: str) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise ProtocolError(f"{what} must be a non-empty string")
    if len(sql) > MAX_SQL_CHARS:
        raise ProtocolError(f"{what} is longer than {MAX_SQL_CHARS} characters")
    return sql


def _views(event: dict, sql_chars: int) -> tuple[View, ...]:
    """The request's views; their SQL and the query's together are at most MAX_SQL_CHARS."""
    views = event.get("views", [])
    if not isinstance(views, list):
        raise ProtocolError("'views' must be a list of {name, sql} objects")
    if len(views) > MAX_VIEWS:
        raise ProtocolError(f"a request may carry at most {MAX_VIEWS} views, not {len(views)}")
    parsed = []
    for view in views:
        if not isinstance(view, dict) or set(view) != {"name", "sql"}:
            raise ProtocolError("each view must be an object with exactly 'name' and 'sql'")
        if not isinstance(view["name"], str) or not PARAM_NAME_PATTERN.fullmatch(view["name"]):
            raise ProtocolError(f"view name {view['name']!r} is not a valid identifier")
        parsed.append(View(view["name"], _sql(view["sql"], f"the SQL of view {view['name']}")))
        sql_chars += len(view["sql"])
        if sql_chars > MAX_SQL_CHARS:
            raise ProtocolError(f"the query and its views together are longer than {MAX_SQL_CHARS} characters")
    return tuple(parsed)


def _parse_page(event: dict) -> PageRequest:
    _reject_unknown_fields(event, {"version", "op", "result_id", "offset", "limit"})
    offset = _bounded_int(event, "offset", 0, 2**62)
    limit = _bounded_int(event, "limit", 1, MAX_PAGE_ROWS)
    return PageRequest(result_id=_result_id(event), offset=offset, limit=limit)


def _parse_part(event: dict) -> PartRequest:
    _reject_unknown_fields(event, {"version", "op", "result_id", "start", "length"})
    start = _bounded_int(event, "start", 0, 2**62)
    length = _bounded_int(event, "length", 1, MAX_PART_BYTES)
    return PartRequest(result_id=_result_id(event), start=start, length=length)


def _parse_derive(event: dict) -> DeriveRequest:
    _reject_unknown_fields(event, {"version", "op", "result_id", "sort", "filter", "page_size"})
    where = event.get("filter")
    if where is not None and (not isinstance(where, str) or len(where) > MAX_FILTER_CHARS):
        raise ProtocolError(f"'filter' must be null or a string of at most {MAX_FILTER_CHARS} characters")
    sort = event.get("sort")
    if not isinstance(sort, list) or len(sort) > MAX_SORT_KEYS:
        raise ProtocolError(f"'sort' must be a list of at most {MAX_SORT_KEYS} {{column, descending}} objects")
    keys = []
    for key in sort:
        if not isinstance(key, dict) or set(key) != {"column", "descending"} or type(key["descending"]) is not bool:
            raise ProtocolError("each sort key must be an object with exactly 'column' and 'descending' (a boolean)")
        keys.append(SortKey(_column_name(key["column"], "a sort key's 'column'"), key["descending"]))
    return DeriveRequest(_result_id(event), tuple(keys), where, _bounded_int(event, "page_size", 0, MAX_PAGE_ROWS))


def _column_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_FILTER_CHARS:
        raise ProtocolError(f"{what} must be a column name")
    return name


def _result_id(event: dict) -> str:
    result_id = event.get("result_id")
    if not isinstance(result_id, str) or not RESULT_ID_PATTERN.fullmatch(result_id):
        raise ProtocolError("'result_id' is not a result id this handler issued")
    return result_id


def _reject_unknown_fields(event: dict, known: set[str]) -> None:
    unknown = sorted(set(event) - known)
    if unknown:
        raise ProtocolError(f"unknown field(s) {', '.join(unknown)}")


def _bounded_int(event: dict, field: str, low: int, high: int) -> int:
    value = event.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"'{field}' must be an integer")
    if not low <= value <= high:
        raise ProtocolError(f"'{field}' must be between {low} and {high}, got {value}")
    return value


# --- answers -----------------------------------------------------------------
# The handler builds these and sends `to_wire()`; the notebook gets them back
# with `parse_answer`, which checks the version, the shape and the page format.


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB's type name, exactly as DESCRIBE gives it


@dataclass(frozen=True)
class Stats:
    """On every answer: what the call cost in the engine, and where it ran."""

    engine_ms: float = 0.0
    cold: bool = False
    rows: int = 0  # the result's rows
    encoded_bytes: int = 0  # of the page or part this answer carries
    duckdb_version: str = ""
    architecture: str = ""  # Lambda's name for it (x86_64, arm64): the price depends on it


@dataclass(frozen=True)
class Page:
    """Rows [offset, offset + row_count) of a result, as a base64 Parquet file."""

    offset: int
    row_count: int
    data: str
    format: str = PAGE_FORMAT


@dataclass(frozen=True)
class Part:
    """Bytes [start, start + length) of a stored result's Parquet file, base64."""

    start: int
    length: int
    data: str


@dataclass(frozen=True)
class ResultInfo:
    """What every answer about a result says of it."""

    result_id: str | None  # None: a small result, never stored, whole in this answer's page
    columns: tuple[Column, ...]
    total_rows: int
    result_bytes: int  # the stored file's size: the parts to fetch are known from the first answer

    @property
    def inline(self) -> bool:
        return self.result_id is None


@dataclass(frozen=True)
class PageAnswer:
    """The answer to `query` and `page`."""

    result: ResultInfo
    page: Page
    stats: Stats = field(default_factory=Stats)
    reused_from: float | None = None  # a query answered from an earlier run's result: when that ran (Unix time)


@dataclass(frozen=True)
class PartAnswer:
    result: ResultInfo
    part: Part
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class DownloadAnswer:
    """Where the stored result's whole Parquet file can be read: an https URL that the function
    signed with its own role, good for `expires_s` (an S3 lake), or a local file path (a local lake)."""

    result: ResultInfo
    url: str
    expires_s: int
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class MaterializeAnswer:
    path: str  # where the file is now, in the lake
    rows: int
    bytes: int
    stats: Stats = field(default_factory=Stats)


# What a lake table is, by where its files are (README, "The lake's tables").
TABLE_KINDS = ("file", "partitioned", "materialized view")


@dataclass(frozen=True)
class TableInfo:
    """One table of the lake, as its name resolves; rows and bytes from the files' Parquet footers."""

    name: str
    kind: str  # one of TABLE_KINDS
    location: str  # the file, or the partitioned table's folder
    partition_keys: tuple[str, ...]  # the key=value folder names of a partitioned table, outermost first
    files: int
    bytes: int
    rows: int


@dataclass(frozen=True)
class TablesAnswer:
    tables: tuple[TableInfo, ...]
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class Bar:
    label: str  # a histogram bin's range, or a value
    count: int


@dataclass(frozen=True)
class Profile:
    """One column of a result, over all its rows. Values are DuckDB's text of them."""

    column: str
    type: str
    rows: int
    nulls: int
    distinct: int  # approximate (approx_count_distinct)
    min: str | None  # min, max and mean: for numbers and times only
    max: str | None
    mean: str | None
    bars_kind: str  # "histogram" (equal-width bins) or "top" (the most frequent values)
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class ProfileAnswer:
    result: ResultInfo
    profile: Profile
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class PartitionFile:
    """One file of a Hive-partitioned table: its path relative to the lake, its size, and its
    partition values as the path spells them (URL-decoded), key by key."""

    path: str
    bytes: int
    partition: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    key_types: tuple[Column, ...]  # the partition keys, typed as a query of the whole table reads them
    files: tuple[PartitionFile, ...]


@dataclass(frozen=True)
class PartitionsAnswer:
    """The asked-for tables that are Hive-partitioned in the lake; the others are left out."""

    tables: tuple[PartitionedTable, ...]
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class ErrorAnswer:
    type: str
    message: str
    position: int | None = None
    stats: Stats = field(default_factory=Stats)

    @classmethod
    def of(cls, error: LakeError) -> "ErrorAnswer":
        return cls(error.error_type, error.message, error.position)


Answer = Union[PageAnswer, PartAnswer, DownloadAnswer, MaterializeAnswer, TablesAnswer, ProfileAnswer,
              PartitionsAnswer, ErrorAnswer]


def to_wire(answer: Answer) -> dict:
    """The JSON object an answer travels as."""
    wire: dict[str, Any] = {"version": VERSION}
    if isinstance(answer, (PageAnswer, PartAnswer, DownloadAnswer, ProfileAnswer)):
        info = answer.result
        wire.update(result_id=info.result_id, columns=[asdict(c) for c in info.columns],
                    total_rows=info.total_rows, result_bytes=info.result_bytes)
        if isinstance(answer, PageAnswer):
            wire["page"] = asdict(answer.page)
            if answer.reused_from is not None:
                wire["reused_from"] = answer.reused_from
        elif isinstance(answer, PartAnswer):
            wire["part"] = asdict(answer.part)
        elif isinstance(answer, ProfileAnswer):
            wire["profile"] = asdict(answer.profile)
        else:
            wire["download"] = {"url": answer.url, "expires_s": answer.expires_s}
    elif isinstance(answer, MaterializeAnswer):
        wire["materialized"] = {"path": answer.path, "rows": answer.rows, "bytes": answer.bytes}
    elif isinstance(answer, TablesAnswer):
        wire["tables"] = [asdict(table) for table in answer.tables]
    elif isinstance(answer, PartitionsAnswer):
        wire["partitioned_tables"] = [
            {"name": table.name, "key_types": [asdict(c) for c in table.key_types],
             "files": [{"path": f.path, "bytes": f.bytes, "partition": dict(f.partition)} for f in table.files]}
            for table in answer.tables]
    else:
        wire["error"] = {"type": answer.type, "message": answer.message, "position": answer.position}
    wire["stats"] = asdict(answer.stats)
    return wire


def parse_answer(wire: Any) -> Answer:
    """An answer from the wire, checked; ProtocolError says what does not fit."""
    if not isinstance(wire, dict):
        raise ProtocolError(f"the answer must be a JSON object, not {type(wire).__name__}")
    if wire.get("version") != VERSION:
        raise ProtocolError(f"the handler answered in protocol version {wire.get('version')!r}; this notebook speaks {VERSION}")
    try:
        stats = Stats(**wire.get("stats", {}))
        if "error" in wire:
            error = wire["error"]
            return ErrorAnswer(str(error["type"]), str(error["message"]), error.get("position"), stats)
        if "materialized" in wire:
            done = wire["materialized"]
            return MaterializeAnswer(done["path"], int(done["rows"]), int(done["bytes"]), stats)
        if "tables" in wire:
            return TablesAnswer(tuple(_table_info(table) for table in wire["tables"]), stats)
        if "partitioned_tables" in wire:
            return PartitionsAnswer(tuple(_partitioned_table(table) for table in wire["partitioned_tables"]), stats)
        info = ResultInfo(wire["result_id"], tuple(Column(c["name"], c["type"]) for c in wire["columns"]),
                          int(wire["total_rows"]), int(wire["result_bytes"]))
        if "part" in wire:
            return PartAnswer(info, Part(**wire["part"]), stats)
        if "profile" in wire:
            profile = dict(wire["profile"])
            bars = tuple(Bar(str(bar["label"]), int(bar["count"])) for bar in profile.pop("bars"))
            return ProfileAnswer(info, Profile(**profile, bars=bars), stats)
        if "download" in wire:
            return DownloadAnswer(info, str(wire["download"]["url"]), int(wire["download"]["expires_s"]), stats)
        page = Page(**wire["page"])
        reused_from = wire.get("reused_from")
        if reused_from is not None:
            reused_from = float(reused_from)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"the answer does not have the protocol's shape: {exc!r}") from None
    if page.format != PAGE_FORMAT:
        raise ProtocolError(f"the page is in format {page.format!r}; this notebook reads {PAGE_FORMAT!r}")
    return PageAnswer(info, page, stats, reused_from)


def _table_info(table: dict) -> TableInfo:
    info = TableInfo(str(table["name"]), str(table["kind"]), str(table["location"]),
                     tuple(str(key) for key in table["partition_keys"]),
                     int(table["files"]), int(table["bytes"]), int(table["rows"]))
    if info.kind not in TABLE_KINDS:
        raise ValueError(f"table kind {info.kind!r}")
    return info


def _partitioned_table(wire: dict) -> PartitionedTable:
    files = tuple(PartitionFile(str(f["path"]), int(f["bytes"]),
                                tuple((str(key), str(value)) for key, value in f["partition"].items()))
                  for f in wire["files"])
    return PartitionedTable(str(wire["name"]), tuple(Column(str(c["name"]), str(c["type"])) for c in wire["key_types"]),
                            files)
