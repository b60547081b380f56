"""Every error an answer may carry, as one family of types.

The handler raises these anywhere (the edge, the sandbox, running a query,
the result store) and answers them in one place, handler.LakeHandler;
`type_name` is what the answer's error.type says. DuckDB's own errors
travel as SqlError with DuckDB's exception class name (BinderException,
CatalogException, ...). Only the standard library: the cold-start path.
"""

from __future__ import annotations

import copy
from typing import ClassVar


class LakeError(Exception):
    """An error answered to the caller, never raised to Lambda."""

    type_name: ClassVar[str] = "LakeError"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__dict__.get("type_name", cls.__name__)

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.message = message
        self.position = position  # a character offset into the request's SQL, or None

    @property
    def error_type(self) -> str:
        return self.type_name

    def within(self, view_name: str) -> "LakeError":
        """The same error, said of a notebook view: its position would point into the view, not the query."""
        error = copy.copy(self)
        error.message, error.position = f"in view {view_name}: {self.message}", None
        error.args = (error.message,)
        return error


class ProtocolError(LakeError, ValueError):
    """A request that does not follow the protocol."""


class UnsupportedStatement(LakeError):
    """Anything but exactly one query."""


class UnsupportedType(LakeError):
    """A result column of a type that cannot travel (UNION)."""


class PermissionDenied(LakeError):
    """The query reaches for something outside the lake."""

    type_name = "PermissionException"


class ResultNotFound(LakeError):
    """A page or part of a result that expired or never existed."""


class ColumnNotFound(LakeError):
    """A sort key, filter or profile names a column the result does not have."""


class ResultTooLarge(LakeError):
    """A result larger than the function's cap for one result (LAKEMAGIC_MAX_RESULT_BYTES)."""


class RowTooLarge(LakeError):
    """One row alone is larger than a response may be, or decodes past what a page may (MAX_DECODED_BYTES)."""


class QueryTimeout(LakeError):
    """The call ran out of its time budget (the function's timeout, less time to answer)."""


class LakeUnavailable(LakeError):
    """The lake's storage could not be read or written (S3 unreachable, access refused)."""


class NameTaken(LakeError):
    """A materialized view may not take the name of a dataset: that would change what the name means for everyone."""


class AmbiguousName(LakeError):
    """A name two lake tables answer to (their names differ only in case): nothing is picked."""


class TableMetadataError(LakeError):
    """An Iceberg or Delta table whose metadata is missing, unreadable or inconsistent; the message names the file."""


class UnsupportedTableFeature(LakeError):
    """An Iceberg or Delta table uses a feature lakemagic or DuckDB cannot read yet."""


class InternalError(LakeError):
    """A failure the handler did not foresee (a bug): answered without its details, which could hold
    the request or the machine's paths; the handler's log has them in full, under the same incident."""


class SqlError(LakeError):
    """DuckDB refused or failed the query; `error_type` is DuckDB's exception class."""

    def __init__(self, message: str, position: int | None = None, duckdb_type: str = "Error",
                 missing_table: str | None = None):
        super().__init__(message, position)
        self.duckdb_type = duckdb_type
        self.missing_table = missing_table  # the name, when DuckDB found no table by it

    @property
    def error_type(self) -> str:
        return self.duckdb_type
