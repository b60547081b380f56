"""The lake's catalog inside queries: `SHOW TABLES` lists it, and an unknown table name is met with its closest names.

DuckDB alone would answer `SHOW TABLES` from its own catalog (the handler's
views, which the sandbox keeps out of reach) and suggest its system tables
(`pg_tables`) for a misspelt name; here both speak of the lake instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .errors import SqlError
from .protocol import TableInfo
from .sql import Statement, parse_tree, quote_literal

# The statements that list the lake's tables, as DuckDB's parser reads them (any case, spacing, semicolon).
SHOW_TABLES = ("SHOW TABLES", "SHOW ALL TABLES")
# Columns of the SHOW TABLES answer, as the handler's own SQL types them.
_COLUMNS = (("name", "VARCHAR"), ("kind", "VARCHAR"), ("partition_keys", "VARCHAR[]"), ("files", "BIGINT"),
            ("bytes", "BIGINT"), ("rows", "BIGINT"), ("snapshot", "VARCHAR"), ("location", "VARCHAR"))
SUGGESTIONS = 3


@functools.lru_cache(maxsize=1)
def _show_tables_trees() -> tuple:
    return tuple(parse_tree(text)["statements"] for text in SHOW_TABLES)


def lists_tables(statement: Statement) -> bool:
    """Whether the query is exactly SHOW TABLES or SHOW ALL TABLES: its parse tree is theirs."""
    if statement.keyword != "SHOW":
        return False
    try:
        tree = parse_tree(statement.text)
    except RecursionError:  # nested far deeper than SHOW TABLES is: the sandbox refuses it
        return False
    return not tree.get("error") and tree["statements"] in _show_tables_trees()


def show_tables(tables: tuple[TableInfo, ...]) -> Statement:
    """The query that answers SHOW TABLES: the catalog's rows as literals (made here, so nothing to check),
    in the catalog's order: by name without case, so the tables of an ambiguous name stand together."""
    typed = "(" + ", ".join(f"NULL::{kind}" for _, kind in _COLUMNS) + ")"
    rows = [typed] + [
        "(" + ", ".join((quote_literal(table.name), quote_literal(table.kind),
                         "[" + ", ".join(quote_literal(key) for key in table.partition_keys) + "]::VARCHAR[]",
                         str(table.files), str(table.bytes), str(table.rows),
                         "NULL" if table.snapshot is None else quote_literal(table.snapshot),
                         quote_literal(table.location))) + ")"
        for table in tables
    ]
    names = ", ".join(name for name, _ in _COLUMNS)
    return Statement(f"SELECT * FROM (VALUES {', '.join(rows)}) AS lake_tables({names}) "
                     "WHERE name IS NOT NULL ORDER BY lower(name), name", "SELECT")


def closest_names(name: str, names: Iterable[str]) -> list[str]:
    """Up to SUGGESTIONS of `names` that `name` may be a misspelling of, closest first, in any case:
    what a "did you mean" names, for a table here and for a chart's column in the notebook."""
    import difflib  # only for a name that is not there: not on a cold start's path

    by_lower = {known.lower(): known for known in sorted(names, reverse=True)}
    return [by_lower[close] for close in difflib.get_close_matches(name.lower(), list(by_lower), SUGGESTIONS)]


def naming_the_lake(error: SqlError, names: list[str]) -> SqlError:
    """A missing table's error (`error.missing_table` is set), naming the closest of `names` (the lake's
    tables, the call's views) instead of DuckDB's candidates from its own catalog."""
    missing = error.missing_table
    assert missing is not None, "called only for a missing table's error"
    close = closest_names(missing, names)
    message = f"no table {missing} in the lake"
    if close:
        message += f"; did you mean {' or '.join(close)}?"
    else:
        message += "; SHOW TABLES lists the lake's tables"
    return SqlError(message, error.position, error.error_type)
