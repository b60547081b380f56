"""The protocol's answers: what the handler (or the kernel engine) sends back, declared once.

The handler builds these and sends `protocol.encode(answer)`; the notebook gets
them back with `parse_answer`. Every field of an answer is as hostile as a
request's: names are data (consumers quote them), types are DuckDB's printing of
what its parser reads, numbers are bounded, paths and URLs are checked.
Standard library only, as fields.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from .errors import LakeError, ProtocolError
from .fields import (CATALOG_NAME_PATTERN, Column, FilePath, KeyName, AnswerText, Base64, Count, DASHBOARD_FOLDER, DASHBOARD_PATH_PATTERN,
                     DuckDBType, MAX_ANSWER_CHARS, MAX_BARS, MAX_COLUMNS, MAX_DOWNLOAD_SECONDS, MAX_FILE_PATH_CHARS,
                     MAX_LISTED_FILES, MAX_LISTED_TABLES, MAX_PARTITION_KEYS, MAX_PART_BYTES, MAX_RESPONSE_BYTES,
                     MAX_SQL_CHARS, MAX_TABLES, MAX_URL_CHARS, PAGE_FORMAT, RESULTS_FOLDER, ResultId, TableName,
                     VERSION)
from .format_answers import FormatTable, TableFormat
from .markers import OMITTED, Items, Range, Text, at
from .wire import decode_fields


@dataclass(frozen=True)
class HandlerStats:
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


# What a table format is, and (name, format, why it is not split) of each asked-for table of one that a
# fan-out does not split (PageAnswer, PartitionsAnswer).
MAX_REASON_CHARS = 1000
TableFormats = Annotated[tuple[tuple[TableName, TableFormat, Annotated[str, Text(MAX_REASON_CHARS, least=1)]], ...],
                         Items(MAX_LISTED_TABLES, noun="tables"), OMITTED]


@dataclass(frozen=True)
class PageAnswer:
    """The answer to `query`, `page`, `derive` and `task`."""

    kind: ClassVar[str] = "page"
    result: Result
    page: Page
    stats: HandlerStats = field(default_factory=HandlerStats)
    # A query answered from an earlier run's result: when that ran (Unix time).
    reused_from: Annotated[Annotated[float, Range(0, 2**40)] | None, OMITTED] = None
    # Of a query's fanout_tables, the Iceberg and Delta tables, which it ran in one invocation.
    table_formats: TableFormats = ()

    def check_arrival(self) -> "PageAnswer":
        rows = self.page.row_count
        if rows and self.page.offset + rows > self.result.total_rows:
            raise ProtocolError(f"the page holds rows past the result's {self.result.total_rows}")
        if self.result.inline and (self.page.offset, rows, len(self.page.data)) != (
                0, self.result.total_rows, 4 * -(-self.result.result_bytes // 3)):
            raise ProtocolError(f"an inline result's page is not its whole file: all {self.result.total_rows} rows "
                                f"in the {self.result.result_bytes} bytes 'result_bytes' says")
        return self


@dataclass(frozen=True)
class PartAnswer:
    kind: ClassVar[str] = "part"
    result: Result
    part: Part
    stats: HandlerStats = field(default_factory=HandlerStats)


@dataclass(frozen=True)
class DownloadAnswer:
    """Where the stored result's whole Parquet file can be read: an https URL that the function
    signed with its own role, good for `expires_s` (an S3 lake), or a local file path (a local lake)."""

    kind: ClassVar[str] = "download"
    result: Result
    url: Annotated[str, Text(MAX_URL_CHARS), at("download", "url")]
    expires_s: Annotated[int, Range(0, MAX_DOWNLOAD_SECONDS), at("download", "expires_s")]
    stats: HandlerStats = field(default_factory=HandlerStats)

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
    stats: HandlerStats = field(default_factory=HandlerStats)

    def check_arrival(self) -> "MaterializeAnswer":
        _, folder, name = self.path.rpartition(f"/{DASHBOARD_FOLDER}/")
        if not folder or not DASHBOARD_PATH_PATTERN.fullmatch(DASHBOARD_FOLDER + "/" + name) or _dot_segment(self.path):
            raise ProtocolError(f"'materialized.path' is not a .parquet file under {DASHBOARD_FOLDER}/")
        return self


# What a lake table is, by where its files are (README, "The lake's tables").
TableKind = Literal["file", "partitioned", "materialized view", "iceberg", "delta"]
TABLE_KINDS = get_args(TableKind)


@dataclass(frozen=True)
class TableInfo:
    """One table of the lake, as its name resolves; rows and bytes from the files' Parquet footers, or from an
    Iceberg or Delta table's own metadata."""

    name: Annotated[str, Text(MAX_FILE_PATH_CHARS, pattern=CATALOG_NAME_PATTERN, says="a lake table's name")]
    kind: TableKind
    location: Annotated[str, Text(MAX_URL_CHARS)]  # the file, the table's folder, or an Iceberg table's metadata file
    # The key=value folder names of a partitioned table, outermost first; an Iceberg or Delta table's
    # partition columns (an Iceberg transform as `month(pickup)`).
    partition_keys: Annotated[tuple[KeyName, ...], Items(MAX_PARTITION_KEYS, noun="keys")]
    files: Count
    bytes: Count
    rows: Count
    # An Iceberg table's current snapshot id, a Delta table's current version; None for the other kinds.
    snapshot: Annotated[Annotated[str, Text(40, pattern=r"-?[0-9]+", says="a snapshot id or version")] | None,
                        OMITTED] = None


@dataclass(frozen=True)
class TablesAnswer:
    kind: ClassVar[str] = "tables"
    tables: Annotated[tuple[TableInfo, ...], Items(MAX_TABLES, noun="tables")]
    stats: HandlerStats = field(default_factory=HandlerStats)


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
    distinct: Count  # exact (count(DISTINCT)) when distinct_exact, else approx_count_distinct's estimate
    min: AnswerText | None  # min, max and mean: for numbers and times only
    max: AnswerText | None
    mean: AnswerText | None
    bars_kind: Literal["histogram", "top"]  # equal-width bins, or the most frequent values
    bars: Annotated[tuple[Bar, ...], Items(MAX_BARS, noun="bars")]
    distinct_exact: bool = False  # said only when counted: an estimate is the safe reading


@dataclass(frozen=True)
class ProfileAnswer:
    kind: ClassVar[str] = "profile"
    result: Result
    profile: Profile
    stats: HandlerStats = field(default_factory=HandlerStats)


@dataclass(frozen=True)
class Summary:
    """One column at a glance: its nulls, and its histogram or top values, among the rows summarized."""

    column: AnswerText
    nulls: Count
    bars_kind: Literal["histogram", "top"]  # as a Profile's
    bars: Annotated[tuple[Bar, ...], Items(MAX_BARS, noun="bars")]


@dataclass(frozen=True)
class SummariesAnswer:
    """Every column of a result summarized in one answer: over all its rows, or over a fixed-seed sample
    of `rows` of them when the result has more (`sampled`)."""

    kind: ClassVar[str] = "summaries"
    result: Result
    rows: Annotated[Count, at("summaries", "rows")]
    sampled: Annotated[bool, at("summaries", "sampled")]
    columns: Annotated[tuple[Summary, ...], Items(MAX_COLUMNS, noun="columns"), at("summaries", "columns")]
    stats: HandlerStats = field(default_factory=HandlerStats)

    def check_arrival(self) -> "SummariesAnswer":
        if self.sampled != (self.rows < self.result.total_rows) or self.rows > self.result.total_rows:
            raise ProtocolError(f"'summaries.rows' ({self.rows}) does not fit the result's {self.result.total_rows} "
                                f"rows, {'sampled' if self.sampled else 'not sampled'}")
        if tuple(s.column for s in self.columns) != tuple(c.name for c in self.result.columns):
            raise ProtocolError("'summaries.columns' are not the result's columns, in order")
        for summary in self.columns:
            if summary.nulls + sum(bar.count for bar in summary.bars) > self.rows:
                raise ProtocolError(f"the summary of {summary.column[:200]!r} counts more than its {self.rows} rows")
        return self


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
        keys: set[str] = set()
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
    """The asked-for tables that are Hive-partitioned in the lake, the Iceberg and Delta tables a fan-out
    may split over their data files, and (`table_formats`) those it may not, with why; the others are left out."""

    kind: ClassVar[str] = "partitioned_tables"
    tables: Annotated[tuple[PartitionedTable, ...], Items(MAX_LISTED_TABLES, noun="tables"), at("partitioned_tables")]
    stats: HandlerStats = field(default_factory=HandlerStats)
    table_formats: TableFormats = ()
    format_tables: Annotated[tuple[FormatTable, ...], Items(MAX_LISTED_TABLES, noun="tables"), OMITTED] = ()


@dataclass(frozen=True)
class SourceEstimate:
    """One lake table or file pattern a query reads: what it holds, and what the query's filters and
    columns leave to read (from its listing and Parquet footers). `bytes_read` counts only the column
    chunks of the columns read, in the row groups left, and the footers; a file that is not Parquet
    counts whole, without row groups."""

    name: Annotated[str, Text(MAX_URL_CHARS, least=1)]  # a table's name, or a path as the query gives it
    partitioned: bool
    files: Count
    files_read: Count
    bytes: Count
    bytes_read: Count
    row_groups: Count
    row_groups_read: Count
    rows: Count
    rows_read: Count

    def check_arrival(self) -> "SourceEstimate":
        for part in ("files", "bytes", "row_groups", "rows"):
            if getattr(self, f"{part}_read") > getattr(self, part):
                raise ProtocolError(f"the estimate of {self.name[:200]!r} reads more {part} than there are")
        return self


@dataclass(frozen=True)
class EstimateAnswer:
    """What a query would read, source by source, and the memory of the function that would run it
    (None where it does not say: not on Lambda)."""

    kind: ClassVar[str] = "estimate"
    sources: Annotated[tuple[SourceEstimate, ...], Items(MAX_TABLES, noun="sources"), at("estimate", "sources")]
    memory_mb: Annotated[Annotated[int, Range(128, 1 << 20)] | None, at("estimate", "memory_mb")]
    stats: HandlerStats = field(default_factory=HandlerStats)


@dataclass(frozen=True)
class ErrorAnswer:
    kind: ClassVar[str] = "error"
    type: Annotated[str, Text(128, pattern=r"[A-Za-z][A-Za-z0-9_]*", says="an error type"),
                    at("error", "type")]
    message: Annotated[str, Text(MAX_ANSWER_CHARS), at("error", "message")]
    position: Annotated[Annotated[int, Range(0, MAX_SQL_CHARS)] | None, at("error", "position")] = None
    stats: HandlerStats = field(default_factory=HandlerStats)

    @classmethod
    def of(cls, error: LakeError) -> "ErrorAnswer":
        return cls(error.error_type, error.message, error.position)


Answer = Union[PageAnswer, PartAnswer, DownloadAnswer, MaterializeAnswer, TablesAnswer, ProfileAnswer,
               SummariesAnswer, PartitionsAnswer, EstimateAnswer, ErrorAnswer]
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
