"""Tab completion in `%%lakesql` cells and `%lakesql` lines, through IPython's completer (so every front end gets it).

Offered: the lake's tables and the saved views, the columns of the tables
and views the SQL names, then the functions a query may call and DuckDB's
keywords (after `name.` only that one's columns; after FROM or JOIN only
tables, views and the table functions the sandbox allows; after --columns
only tables and views). The names come from catalog.CatalogCache: from
memory, at most CATALOG_TTL_S old, fetched in the background; a cold cache
keeps a keystroke waiting COLD_WAIT_S at most. The functions and keywords
are read once from this DuckDB (duckdb_functions(), duckdb_keywords()),
filtered by the handler's own sandbox rule, in the background when the
extension loads.
"""

from __future__ import annotations

import functools
import threading

import duckdb
from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher

from lakelambda.sandbox import may_call
from lakelambda.sql import parser, tokens

from .catalog import CatalogCache
from .errors import LakeMagicError

CELL_MAGIC = "%%lakesql"
LINE_MAGIC = "%lakesql"
# After these keywords a table's name comes (or a table function's), not a column's; after --columns only a name.
TABLE_KEYWORDS = {"FROM", "JOIN", "DESCRIBE", "SUMMARIZE"}
NAME_OPTIONS = {"--COLUMNS"}
TABLE_FUNCTION_TYPES = {"table", "table_macro"}
CALLABLE_TYPES = {"scalar", "aggregate", "macro"} | TABLE_FUNCTION_TYPES  # not pragma: PRAGMA statements only
MATCHER_ID = "lakemagic.lakesql"
MATCHER_PRIORITY = 1  # before Jedi's Python names, which it suppresses inside SQL


class LakeSqlCompleter:
    """What the matcher answers (IPython's API v2) for the SQL of the lakesql magics."""

    def __init__(self, magic, cache: CatalogCache | None = None):
        self.magic = magic
        self.cache = cache or CatalogCache()

    def __call__(self, context: CompletionContext) -> SimpleMatcherResult:
        found = _magic_text(context)
        if found is None:
            return {"completions": [], "suppress": False}
        text, until_cursor = found
        fragment, qualifier = _word_before(until_cursor)
        before = until_cursor[: len(until_cursor) - len(fragment) - (len(qualifier) + 1 if qualifier is not None else 0)]
        if before.endswith("$"):  # a $parameter: a notebook variable's name, which IPython's own matchers offer
            return {"completions": [], "suppress": False}
        completions = self._candidates(text, before, qualifier)
        prefix = fragment.lower()
        lower_case = fragment.islower()  # `sel` is completed to `select`, `SEL` and `Sel` to `SELECT`
        chosen, seen = [], set()
        for name, kind in completions:
            if kind == "keyword" and lower_case:
                name = name.lower()
            if name.lower().startswith(prefix) and name not in seen:
                seen.add(name)
                chosen.append(SimpleCompletion(name, type=kind))
        return {"completions": chosen, "matched_fragment": fragment, "suppress": True, "ordered": True}

    def _candidates(self, sql: str, before: str, qualifier: str | None) -> list[tuple[str, str]]:
        view_names = self.magic.views.names()
        try:
            engine = self.magic.current_engine()
        except LakeMagicError:  # no lake to ask (yet): the saved views are still known
            engine = None
        tables = self.cache.table_names(engine) if engine is not None else []
        known = {name.lower(): name for name in tables + view_names}
        if qualifier is not None:  # name.col: that table's columns, or, for an alias, every named table's
            named = [known[qualifier.lower()]] if qualifier.lower() in known else _named(sql, known)
            return [(column, "column") for column in self._columns(engine, named)]
        names = [(name, "table") for name in tables] + [(name, "view") for name in view_names]
        last = _last_word(before).upper()
        if last in NAME_OPTIONS:
            return names
        functions, table_functions, keywords = sql_words()
        if last in TABLE_KEYWORDS:
            return names + table_functions
        columns = [(column, "column") for column in self._columns(engine, _named(sql, known))]
        return columns + names + functions + keywords

    def _columns(self, engine, names: list[str]) -> list[str]:
        return self.cache.column_names(engine, names, self.magic.views) if engine is not None and names else []


@functools.lru_cache(maxsize=1)
def sql_words() -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """The functions a query may call, the table functions it may read from, and DuckDB's keywords
    (upper case), as (word, kind) pairs: read from DuckDB itself, filtered by the sandbox's rule.
    Operators (`+`, `~~`) and DuckDB's internal functions (`__internal_...`) are left out."""
    with parser() as con:
        found = con.execute("SELECT DISTINCT function_name, function_type FROM duckdb_functions() "
                            "ORDER BY function_name").fetchall()
        keywords = con.execute("SELECT upper(keyword_name) FROM duckdb_keywords() ORDER BY 1").fetchall()
    functions, table_functions = [], []
    for name, kind in found:
        table = kind in TABLE_FUNCTION_TYPES
        if kind in CALLABLE_TYPES and name.isidentifier() and not name.startswith("_") and may_call(name, table):
            (table_functions if table else functions).append((name, "function"))
    return functions, table_functions, [(word, "keyword") for (word,) in keywords]


def register(shell, magic, cache: CatalogCache | None = None) -> LakeSqlCompleter:
    """Add the matcher to the shell's completer, replacing one an earlier load of the extension added.
    DuckDB's words are read meanwhile, so the first Tab finds them ready."""
    threading.Thread(target=sql_words, name="lakemagic-sql-words", daemon=True).start()
    completer = LakeSqlCompleter(magic, cache)

    @context_matcher(identifier=MATCHER_ID, priority=MATCHER_PRIORITY)
    def lakesql_matcher(context: CompletionContext) -> SimpleMatcherResult:
        return completer(context)

    matchers = shell.Completer.custom_matchers
    matchers[:] = [matcher for matcher in matchers if getattr(matcher, "matcher_identifier", None) != MATCHER_ID]
    matchers.append(lakesql_matcher)
    return completer


def _magic_text(context: CompletionContext) -> tuple[str, str] | None:
    """The magic's whole text (options and SQL) and its text up to the cursor, if the cursor is in
    a lakesql cell or after a lakesql line magic; else None."""
    lines = context.full_text.split("\n")
    if lines[0].lstrip().startswith(CELL_MAGIC):
        start = lines[0].index(CELL_MAGIC) + len(CELL_MAGIC)
        cell = "\n".join(lines)[start:]
        until_cursor = "\n".join(lines[: context.cursor_line] + [context.text_until_cursor])[start:]
        return cell, until_cursor
    line = context.line_with_cursor
    start = line.find(LINE_MAGIC)
    if start < 0 or start >= context.cursor_position or line.startswith(CELL_MAGIC, max(0, start - 1)):
        return None
    start += len(LINE_MAGIC)
    return line[start:], line[start: context.cursor_position]


def _word_before(text: str) -> tuple[str, str | None]:
    """The name being typed at the end of `text`, and the name before its dot, if it follows one."""
    fragment = _trailing_name(text)
    rest = text[: len(text) - len(fragment)]
    if rest.endswith("."):
        qualifier = _trailing_name(rest[:-1])
        if qualifier:
            return fragment, qualifier
    return fragment, None


def _trailing_name(text: str) -> str:
    start = len(text)
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return text[start:]


def _last_word(text: str) -> str:
    """The last word before the cursor's name (an option such as --columns counts as one word)."""
    words = text.split()
    return words[-1] if words else ""


def _named(sql: str, known: dict[str, str]) -> list[str]:
    """The known tables and views the SQL names, from DuckDB's tokens (which half-typed SQL still has)."""
    named = []
    try:
        found = tokens(sql)
    except duckdb.Error:
        return named
    for token in found:
        name = known.get(token.word(sql).lower())
        if name is not None and name not in named:
            named.append(name)
    return named
