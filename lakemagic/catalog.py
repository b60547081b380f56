"""What the lake holds, as the notebook shows it (`%lakesql --tables`, `--columns NAME`) and completion offers it.

The lake's tables come from the engine (the `tables` operation); the saved
views are the notebook's own. Completion must never keep a keystroke
waiting on the Lambda, so it reads a cache that refreshes in the background.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import Callable

import pandas as pd

from lakelambda.catalog import closest_names, naming_the_lake
from lakelambda.errors import SqlError
from lakelambda.protocol import Column, TableInfo
from lakelambda.sql import quote_identifier, referenced_tables

from . import client
from .display import render
from .engines import Engine
from .errors import EngineError, LakeMagicError, LakeQueryError
from .views import ViewRegistry

# How long completion trusts what it fetched: the function's own catalog of an S3 lake is up to 30 s old too.
CATALOG_TTL_S = 30.0
# The longest a keystroke waits for a first fetch; the fetch goes on in the background, for the next keystroke.
COLD_WAIT_S = 0.3
# More columns than any table has: DESCRIBE comes back in one page.
DESCRIBE_ROWS = 10_000
# What DESCRIBE answers first: each column's name and type.
DESCRIBED = ["column_name", "column_type"]
TABLE_COLUMNS = ["name", "kind", "partition keys", "files", "bytes", "rows", "snapshot", "location"]


# A location or a view's path is shown whole, however long.
WIDEST_LISTING_CHARS = 200


class Listing(pd.DataFrame):
    """A catalog listing: a DataFrame to compute with, shown as the result table shows a page (counts grouped,
    sizes for people, locations whole, blanks where there is nothing), in HTML and in text."""

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        columns = tuple(Column(str(name), "BIGINT" if pd.api.types.is_integer_dtype(self[name]) else "VARCHAR")
                        for name in self.columns)
        rows = tuple(tuple(_shown(name, value) for name, value in zip(self.columns, row))
                     for row in self.itertuples(index=False, name=None))
        table = render.html_table(rows, columns, types=False, widest=WIDEST_LISTING_CHARS)
        return {"text/html": table.html(), "text/plain": render.text_grid(rows, columns, WIDEST_LISTING_CHARS)}


def _shown(column: str, value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return human_size(int(value)) if column == "bytes" else str(value)


def human_size(size: int) -> str:
    """`133 MB`, `1.5 kB`, `812 B`: three figures at most, in powers of 1,000 (as file sizes are sold)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 999.5 or unit == "TB":
            break
        value /= 1000
    return f"{size:,} B" if unit == "B" else f"{value:,.0f} {unit}" if value >= 9.95 else f"{value:.1f} {unit}"


def tables_frame(tables: tuple[TableInfo, ...], views: ViewRegistry) -> Listing:
    """The lake's tables, then the notebook's saved views (which shadow a lake table of their name)."""
    rows = [[table.name, table.kind, ", ".join(table.partition_keys), table.files, table.bytes, table.rows,
             table.snapshot or "", table.location] for table in tables]
    rows += [[view["view"], "saved view", "", None, None, None, "", view["materialized"] or "this notebook"]
             for view in views.listing()]
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return Listing(frame.astype({"files": "Int64", "bytes": "Int64", "rows": "Int64"}))


def describe(engine: Engine, name: str, views: ViewRegistry) -> Listing:
    """A table's or saved view's columns and their DuckDB types, as `DESCRIBE name` gives them."""
    sql = _describe_sql(name)
    with saved_views_named(engine, views):
        result = client.run_query(engine, sql, {}, DESCRIBE_ROWS, views.resolve(sql))
    if [column.type for column in result.columns[:2]] != ["VARCHAR", "VARCHAR"] or \
            [column.name for column in result.columns[:2]] != DESCRIBED:
        raise EngineError(f"the engine answered {sql} with the columns {[c.name for c in result.columns]!r}, "
                          f"not DuckDB's {DESCRIBED!r}")
    return Listing(result.to_dataframe()[DESCRIBED])


@contextlib.contextmanager
def saved_views_named(engine: Engine, views: ViewRegistry):
    """An unknown table's error also names the closest saved views: the function knows only the views
    a query carries, and a misspelt view's name is not among them."""
    try:
        yield
    except LakeQueryError as error:
        missing = _table_at(error.sql, error.position) if error.error_type == "CatalogException" else None
        saved = views.names()
        if missing is None or missing in views or not closest_names(missing, saved):
            raise
        try:
            lake = [table.name for table in client.tables(engine)]
        except LakeMagicError:
            raise error from None
        named = naming_the_lake(SqlError(error.message, error.position, error.error_type, missing), lake + saved)
        raise LakeQueryError(error.error_type, named.message, error.sql, error.position) from None


def _table_at(sql: str | None, position: int | None) -> str | None:
    """The table name (of those DuckDB's parser finds in `sql`) that the error points at; None if it is no table."""
    if sql is None or position is None:
        return None
    return next((name for name in sorted(referenced_tables(sql))
                 if sql.startswith(name, position) or sql.startswith(quote_identifier(name), position)), None)


def _describe_sql(name: str) -> str:
    return f"DESCRIBE {quote_identifier(name)}"


class CatalogCache:
    """Answers from memory at once; what is missing or older than `ttl_s` is fetched in a background thread.

    A first request waits at most `wait_s` for its fetch. A failed fetch
    counts as one (what was known stays), so a broken engine is not asked
    again at every keystroke.
    """

    def __init__(self, ttl_s: float = CATALOG_TTL_S, wait_s: float = COLD_WAIT_S):
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._known: dict[tuple, tuple[float, object]] = {}  # what: (when fetched, value or None)
        self._fetching: dict[tuple, threading.Event] = {}

    def table_names(self, engine: Engine) -> list[str]:
        what = ("tables",)
        self._wait([self._start(engine, what, lambda: [table.name for table in client.tables(engine)])])
        return self._known_value(what) or []

    def column_names(self, engine: Engine, names: list[str], views: ViewRegistry) -> list[str]:
        """The columns of the tables or views `names`, each cached with the definitions of the views it uses."""
        wanted = {name: ("columns", name.lower(), views.resolve(_describe_sql(name))) for name in names}
        self._wait([self._start(engine, what, functools.partial(_column_names, engine, name, views))
                    for name, what in wanted.items()])
        return [column for what in wanted.values() for column in self._known_value(what) or []]

    def _start(self, engine: Engine, what: tuple, fetch: Callable[[], object]) -> threading.Event | None:
        """Fetch `what` in the background unless it is fresh or on its way; the event to wait for if nothing is known."""
        with self._lock:
            if engine is not self._engine:  # another engine, another lake
                self._engine, self._known = engine, {}
            known = self._known.get(what)
            if (known is None or time.monotonic() - known[0] >= self.ttl_s) and what not in self._fetching:
                done = self._fetching[what] = threading.Event()
                threading.Thread(target=self._fetch, args=(engine, what, fetch, done),
                                 name="lakemagic-catalog", daemon=True).start()
            return self._fetching.get(what) if known is None else None

    def _wait(self, events: list[threading.Event | None]) -> None:
        deadline = time.monotonic() + self.wait_s
        for event in events:
            if event is not None:
                event.wait(max(0.0, deadline - time.monotonic()))

    def _known_value(self, what: tuple):
        with self._lock:
            known = self._known.get(what)
        return known[1] if known else None

    def _fetch(self, engine: Engine, what: tuple, fetch: Callable[[], object], done: threading.Event) -> None:
        try:
            value = fetch()
        except Exception:  # completion offers what it knows; the error shows when a query runs
            value = None
        with self._lock:
            if engine is self._engine:
                previous = self._known.get(what)
                self._known[what] = (time.monotonic(), value if value is not None else (previous[1] if previous else None))
            del self._fetching[what]
        done.set()


def _column_names(engine: Engine, name: str, views: ViewRegistry) -> list[str]:
    return describe(engine, name, views)["column_name"].tolist()
