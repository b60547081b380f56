"""The wire protocol between the notebook and the lake handler (version 1).

Everything that crosses the wire is declared once, in both directions:
each request (here) and each answer (answers.py) is a frozen dataclass,
tagged (`op` for a request; `kind` for an answer, the one key of its body),
whose field types (fields.py) carry their bounds. This module is the one
to import: it holds the requests and gives the answers and the fields too.
The codec in wire.py derives the JSON from those declarations (`encode`)
and checks every field on arrival
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

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Union, get_args

from .errors import ProtocolError
from .markers import OMITTED, Items, Range, Text
from .wire import decode_fields, encode_fields
# The answers and the fields' limits and types, given from here too: the protocol is one import.
from .answers import (Column, HandlerStats, Page, Part, ResultInfo, Result, PageAnswer, PartAnswer, DownloadAnswer,
                      MaterializeAnswer, TableKind, TABLE_KINDS, TableFormat, TableFormats, TableInfo, TablesAnswer, Bar, Profile,
                      ProfileAnswer, Summary, SummariesAnswer, PartitionFile, PartitionedTable, PartitionsAnswer,
                      SourceEstimate, EstimateAnswer, ErrorAnswer, Answer, ANSWERS, parse_answer, LOOPBACK_HOSTS)
from .format_answers import FormatFile, FormatTable, PartitionTransform
from .fields import (FilePath, KeyName, VERSION, MAX_RESPONSE_BYTES, ENVELOPE_ALLOWANCE_BYTES, MAX_PAGE_ROWS,
                     MAX_PART_BYTES, MAX_DECODED_BYTES, MAX_PAGE_DATA_CHARS, INLINE_RESULT_BYTES, MAX_SQL_CHARS, MAX_PARAMS, MAX_VIEWS, MAX_NAME_CHARS, MAX_FILTER_CHARS,
                     MAX_SORT_KEYS, MAX_LISTED_TABLES, MAX_TASK_FILES, MAX_FILE_PATH_CHARS, MAX_TASK_FILE_CHARS,
                     MAX_PARTITION_KEYS, MAX_COUNT, MAX_ANSWER_CHARS, MAX_COLUMNS, MAX_TABLES, MAX_LISTED_FILES,
                     MAX_BARS, MAX_URL_CHARS, MAX_DOWNLOAD_SECONDS, MIN_REUSE_SCOPE_CHARS, MAX_REUSE_SCOPE_CHARS,
                     REUSE_SCOPE_PATTERN, PAGE_FORMAT, LAMBDA_ARCHITECTURES, RESULT_ID_PATTERN, PARAM_NAME_PATTERN,
                     TABLE_NAME_PATTERN, CATALOG_NAME_PATTERN, KEY_TYPE_PATTERN, DASHBOARD_FOLDER, DASHBOARD_PATH_PATTERN, RESULTS_FOLDER,
                     Sql, RowCount, Count, ResultId, TableName, Identifier, ColumnName, ParamValue, Params,
                     AnswerText, Base64, DuckDBType, View, Views, ReuseScope, reuse_scope_problem)


# --- requests -----------------------------------------------------------------


def _check_sql_size(sql: str, views: tuple[View, ...]) -> None:
    if len(sql) + sum(len(view.sql) for view in views) > MAX_SQL_CHARS:
        raise ProtocolError(f"the query and its views together are longer than {MAX_SQL_CHARS} characters")


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
    # Tables a fan-out could split the query over: where one is Hive-partitioned, or an Iceberg or Delta table
    # it may split, the answer is their listing (a PartitionsAnswer) and nothing runs; otherwise the query
    # runs, in the same call.
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
class EstimateRequest:
    """What `sql` would read, from the lake's listings and Parquet footers alone: nothing of it runs."""

    op: ClassVar[str] = "estimate"
    sql: Sql
    params: Params
    views: Views = ()

    def check_arrival(self) -> "EstimateRequest":
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
    """Which of `tables` are Hive-partitioned lake tables, or Iceberg or Delta tables, and their files (or why
    a table-format table is not split): what a fan-out plans over."""

    op: ClassVar[str] = "partitions"
    tables: Annotated[tuple[TableName, ...], Items(MAX_LISTED_TABLES, least=1, noun="table names")]


@dataclass(frozen=True)
class TaskRequest:
    """One fan-out task: `sql` over a share of the Hive-partitioned table `table`, or of the data files of
    the Iceberg or Delta table `table`'s snapshot that `pin` pins (a FormatTable's).

    The request names the files (paths relative to the lake), never SQL with
    paths in it: the handler checks each is one of the table's own files and
    reads them itself under the table's name, with a Hive table's keys typed as
    `key_types` says (as the whole table reads them). For a pinned snapshot it
    carries no types or partition values: the handler reads them from the snapshot itself.
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
    pin: Annotated[FilePath | None, OMITTED] = None

    def check_arrival(self) -> "TaskRequest":
        _check_sql_size(self.sql, self.views)
        if self.pin is not None and self.key_types:
            raise ProtocolError("a task over a pinned snapshot carries no 'key_types': the handler reads its types")
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


@dataclass(frozen=True)
class SummarizeRequest:
    """Every column of a stored result at a glance (nulls, and a histogram or top values), in one call."""

    op: ClassVar[str] = "summarize"
    result_id: ResultId


Request = Union[QueryRequest, PageRequest, PartRequest, DownloadRequest, MaterializeRequest, TablesRequest,
                DeriveRequest, ProfileRequest, SummarizeRequest, PartitionsRequest, TaskRequest, EstimateRequest]
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
