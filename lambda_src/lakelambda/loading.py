"""The handler's database, begun as soon as Lambda's import of the handler has imported DuckDB (in Init).

Its first half (database.load_database: sized, in UTC, httpfs loaded) needs
neither the lake's credentials nor the function's timeout, and DuckDB spends
most of it checking the extension's signature on threads of its own (about
70 ms of CPU for httpfs's 21.5 MB). The handler imports this module right
after DuckDB and before the rest of its package, so that work runs beside
the package's own imports (about 45 ms of Python, on one core) and beside
the first invocation's checks, where a second core is free, instead of
after them; so does the making of the sandbox's parse-only database, which
every first query's check needs. Only the standard library, duckdb and the
few modules the load needs are imported here: whatever this module imports
is imported before the load can begin.
"""

from __future__ import annotations

import os
import threading

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .database import Settings, load_database
from .sql import open_parser
from .storage import open_storage

# What Lambda's _HANDLER names where this package's handler is the function's.
LAMBDA_HANDLER = f"{__package__}.handler.handler"


class DatabaseLoading:
    """database.load_database for the lake at `lake`, on a thread of its own from the moment it is made."""

    def __init__(self, lake: str):
        self._outcome: tuple[Settings, duckdb.DuckDBPyConnection] | BaseException | None = None
        self._lake = lake
        self._thread = threading.Thread(target=self._load, name="lake-database", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            # First the sandbox's parse-only database, which every first query's check needs, whatever it asks:
            # ready before the invocation checks.
            open_parser()
            settings = Settings.from_environment()
            self._outcome = settings, load_database(settings, open_storage(self._lake).extensions)
        except BaseException as exc:  # raised again where the handler is made, as it would have been there
            self._outcome = exc

    def result(self) -> tuple[Settings, duckdb.DuckDBPyConnection]:
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None  # set by the thread, which has ended
        return self._outcome


# Lambda names the function's handler in _HANDLER: only there does importing the handler start the database
# (never where another program imports the package, such as the notebook's embedded engine).
_started = (DatabaseLoading(os.environ["LAKEMAGIC_LAKE"])
            if os.environ.get("_HANDLER") == LAMBDA_HANDLER and os.environ.get("LAKEMAGIC_LAKE") else None)


def take() -> DatabaseLoading | None:
    """The loading this module's import started, once (the handler takes it); None after, or where none started."""
    global _started
    loading, _started = _started, None
    return loading
