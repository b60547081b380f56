"""Parse-only SQL helpers that the handler and the notebook share.

Everything here asks DuckDB's own tokenizer or parser (on a private
in-memory database that reaches no file and no network); nothing runs a
query, and no regular expression reads SQL text. Positions are in
characters (DuckDB counts UTF-8 bytes; `character_offsets` converts).

`walk` is the one way to read a parse tree (json_serialize_sql): the sandbox,
the derive filter check, the table and path finders here and the fan-out's
rules all use it. `changing_value` is the one answer to "may this value differ
from run to run?", which result reuse and fan-out both ask.
"""

from __future__ import annotations

import functools
import json
from typing import Callable, Iterator, NamedTuple

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .errors import SqlError, UnsupportedStatement


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def text_value(text: str) -> str:
    """Any text as an SQL expression, NUL characters included (a literal ends at one), where binding it
    as a parameter would not do: a bound Python value makes DuckDB's client import pandas wherever it
    can (350 ms of a cold start, which Lambda, whose package has no pandas, never pays)."""
    return " || chr(0) || ".join(quote_literal(part) for part in text.split("\0"))


class Token(NamedTuple):
    start: int  # in characters
    kind: object  # duckdb.token_type

    def word(self, sql: str) -> str:
        """The token's leading run of word characters (or its first character): a keyword, a name, `$`."""
        end = self.start
        while end < len(sql) and (sql[end].isalnum() or sql[end] == "_"):
            end += 1
        return sql[self.start : max(end, self.start + 1)]


def character_offsets(sql: str) -> list[int]:
    """For each UTF-8 byte offset of `sql` (and one past the end), the character offset it falls in."""
    offsets = [index for index, char in enumerate(sql) for _ in range(len(char.encode()))]
    offsets.append(len(sql))
    return offsets


def tokens(sql: str) -> list[Token]:
    """DuckDB's tokens of `sql`, with their positions in characters."""
    at = character_offsets(sql)
    return [Token(at[start], kind) for start, kind in duckdb.tokenize(sql)]


class Statement(NamedTuple):
    """The one query a request carries: its text without the closing semicolon, and its first keyword."""

    text: str
    keyword: str  # SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, ...


QUERY_KEYWORDS = ("SELECT", "WITH", "FROM", "VALUES", "DESCRIBE", "SHOW", "SUMMARIZE", "TABLE", "(")


@functools.lru_cache(maxsize=128)  # a repeated query (or view) is split once; a refusal raises and is not kept
def single_query(sql: str) -> Statement:
    """The one query in `sql`; anything else (several statements, DDL, SET, COPY, ...) is refused."""
    try:
        with parser() as con:
            statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise duckdb_error(exc, sql) from None
    if len(statements) != 1:
        raise UnsupportedStatement(f"send exactly one query at a time; this has {len(statements)} statements")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise UnsupportedStatement(
            "only queries can run here (SELECT, WITH, FROM, VALUES, DESCRIBE, SUMMARIZE); "
            f"this is a {kind.name} statement"
        )
    code = tokens(sql)  # comments are not tokens
    text = sql[: code[-1].start] if code and code[-1].word(sql) == ";" else sql
    return Statement(text, code[0].word(sql).upper() if code else "")


def duckdb_error(exc: duckdb.Error, sql: str | None = None, prefix: str = "") -> SqlError:
    """DuckDB's error as an answer: its class, its message, and a character position in `sql`.

    The connection reports errors as JSON (`errors_as_json`), with the
    position in UTF-8 bytes of the text it ran: `prefix` and then `sql`.
    A position outside `sql` (in text the handler wrapped around it, or in
    a statement of the handler's own when `sql` is None) is None.
    """
    text = str(exc)
    try:
        details = json.loads(text[text.index("{"):])
        message, byte_position = details["exception_message"], details.get("position")
    except (ValueError, KeyError, TypeError):
        return SqlError(text.partition(" Error: ")[2] or text, duckdb_type=type(exc).__name__)
    position = None
    if byte_position is not None and sql is not None:
        offset = int(byte_position) - len(prefix.encode())
        at = character_offsets(sql)
        position = at[offset] if 0 <= offset < len(at) else None
    missing = details.get("error_subtype") == "MISSING_ENTRY" and details.get("type") == "Table"
    return SqlError(message, position, type(exc).__name__, details.get("name") if missing else None)


@functools.lru_cache(maxsize=1)
def _parser_database() -> duckdb.DuckDBPyConnection:
    # It evaluates constants too (casts of literals for estimates and summaries): in UTC like every database
    # that computes values, set GLOBAL for the cursors it is used through, then locked.
    con = duckdb.connect(config={
        "errors_as_json": True, "enable_external_access": False, "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    con.execute("SET lock_configuration = true")
    return con


def open_parser() -> None:
    """Make the parse-only database now (about 9 ms of CPU), ahead of the first check that needs it."""
    _parser_database()


def parser() -> duckdb.DuckDBPyConnection:
    """A cursor of a private in-memory database that only parses: nothing it runs touches files or
    the network, and its errors are JSON with positions. A cursor per call: callers use threads."""
    return _parser_database().cursor()


@functools.lru_cache(maxsize=32)
def parse_tree(sql: str) -> dict:
    """DuckDB's parse tree of `sql` (json_serialize_sql), every property written, defaults and nulls too.

    A statement DuckDB cannot serialize gives a tree with "error": true and its message.
    RecursionError: a tree nested deeper than Python's JSON decoder goes. The tree is
    shared by every caller asking about the same text (the sandbox, the table lookup,
    the notebook's views): read it, never change it.
    """
    with parser() as con:
        row = con.execute(f"SELECT json_serialize_sql({text_value(sql)}, skip_empty := false, skip_null := false, "
                          "skip_default := false)").fetchone()
    assert row is not None  # a SELECT without FROM gives one row
    return json.loads(row[0])


@functools.lru_cache(maxsize=128)  # a repeated cell binds the same parameters: its text is parsed once
def parameter_names(sql: str) -> frozenset[str]:
    """The `$name` parameters DuckDB's parser finds (none inside strings or comments)."""
    try:
        return frozenset(name for statement in duckdb.extract_statements(sql) for name in statement.named_parameters)
    except duckdb.Error:
        return frozenset()  # the engine reports the syntax error, with its position


NO_LOCATION = 2**64 - 1  # what the parser writes for a node that has no place in the text


def walk(tree, prune: Callable[[dict], bool] | None = None) -> Iterator[dict]:
    """Every node (dict) of a parse tree, parents first and in the order of the text, under any key.

    Where `prune(node)` is true the node is yielded but its insides are not
    (`prune=is_subquery` stays at one query level). Without recursion, so a
    tree nested as deeply as the JSON decoder allows is walked all the same.
    """
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(reversed(node))
        elif isinstance(node, dict):
            yield node
            if prune is None or not prune(node):
                pending.extend(reversed(list(node.values())))


def is_subquery(node: dict) -> bool:
    """A subquery, as an expression (`x IN (SELECT ...)`) or in FROM."""
    return node.get("class") == "SUBQUERY" or node.get("type") == "SUBQUERY"


def start_of(node) -> int | None:
    """Where `node` starts in the text (its smallest recorded byte offset), or None."""
    return min((part["query_location"] for part in walk(node)
                if isinstance(part.get("query_location"), int) and part["query_location"] != NO_LOCATION),
               default=None)


def without_locations(node):
    """A copy of `node` without its positions in the text: equal for subtrees that differ only there."""
    if isinstance(node, dict):
        return {key: without_locations(value) for key, value in node.items() if key != "query_location"}
    if isinstance(node, list):
        return [without_locations(item) for item in node]
    return node


def _tree_of(statement: str) -> dict | None:
    """The parse tree of `statement`, or None when DuckDB cannot parse or serialize it."""
    try:
        tree = parse_tree(statement)
    except (duckdb.Error, RecursionError):
        return None
    return None if tree.get("error") else tree


@functools.lru_cache(maxsize=128)  # asked of every query twice (the notebook's views, the handler's lookup)
def referenced_tables(statement: str) -> frozenset[str]:
    """The plain table names `statement` reads: the lake tables and views it may mean.

    A CTE's name is one of them too: `WITH trips AS (SELECT ... FROM trips)` reads the lake's
    trips inside it, as does a reference outside the CTE's scope or before it is defined, and
    a name left out here is neither looked up in the lake nor part of the reuse key.
    """
    tree = _tree_of(statement)
    if tree is None:
        return frozenset()  # the query itself reports the error
    return frozenset(node["table_name"] for node in walk(tree)
                     if node.get("type") == "BASE_TABLE" and not node.get("schema_name") and not node.get("catalog_name"))


# Values that are not fixed by a function's arguments although DuckDB calls the function CONSISTENT:
# the clock as bare names (SELECT current_date parses as a column), ICU's local clock, and age(x),
# which counts from today (age(x, y) does not: see `changing_value`).
CLOCK_NAMES = frozenset({"current_date", "current_time", "current_timestamp", "localtime", "localtimestamp"})
CLOCK_FUNCTIONS = frozenset({"current_localtime", "current_localtimestamp", "age"})
# VOLATILE only because it raises: its value never varies, and a failed query is never kept.
_RAISES = frozenset({"error"})


class CatalogFunction(NamedTuple):
    name: str  # lower-cased
    kind: str  # scalar, aggregate, macro, table, ...
    stability: str | None  # CONSISTENT, CONSISTENT_WITHIN_QUERY, VOLATILE; None for macros and table functions
    uses: frozenset[str]  # a macro's: the functions and bare names its body uses


@functools.lru_cache(maxsize=1)
def function_catalog() -> tuple[CatalogFunction, ...]:
    """DuckDB's functions as duckdb_functions() lists them, in one query (a macro's body parsed there too)."""
    with parser() as con:
        rows = con.execute("SELECT DISTINCT lower(function_name), function_type, stability, "
                           "CASE WHEN function_type = 'macro' AND macro_definition IS NOT NULL "
                           "THEN json_serialize_sql('SELECT ' || macro_definition) END FROM duckdb_functions()"
                           ).fetchall()
    return tuple(CatalogFunction(name, kind, stability, _names_used(json.loads(body)) if body else frozenset())
                 for name, kind, stability, body in rows)


def _names_used(tree: dict) -> frozenset[str]:
    used = set()
    for node in walk(tree if not tree.get("error") else {}):
        if node.get("class") in ("FUNCTION", "WINDOW") and isinstance(node.get("function_name"), str):
            used.add(node["function_name"].lower())
        elif node.get("class") == "COLUMN_REF" and len(node.get("column_names", ())) == 1:
            used.add(str(node["column_names"][0]).lower())
    return frozenset(used)


def with_macros_over(names: set[str], also: frozenset[str] = frozenset()) -> frozenset[str]:
    """`names` and the macros whose bodies use any of them (or of `also`), however deep."""
    found = set(names)
    macros = [function for function in function_catalog() if function.kind == "macro"]
    while True:
        grown = {macro.name for macro in macros if macro.uses & (found | also)} - found
        if not grown:
            return frozenset(found)
        found |= grown


@functools.lru_cache(maxsize=1)
def changing_functions() -> frozenset[str]:
    """The functions whose value may differ from run to run over the same data, lower-cased: those
    DuckDB's catalog calls VOLATILE or CONSISTENT_WITHIN_QUERY (random, uuid, now, nextval, ...), the
    clock functions, and the macros whose bodies use any of them, however deep. Result reuse and
    fan-out both ask this one set."""
    volatile = {function.name for function in function_catalog()
                if function.stability in ("VOLATILE", "CONSISTENT_WITHIN_QUERY")}
    return with_macros_over((volatile - _RAISES) | CLOCK_FUNCTIONS, also=CLOCK_NAMES)


def changing_value(node: dict) -> str | None:
    """The name of the function or clock value `node` is, if its value may differ from run to run."""
    name = node.get("function_name")
    if node.get("class") in ("FUNCTION", "WINDOW") and isinstance(name, str) and name.lower() in changing_functions():
        return None if name.lower() == "age" and len(node.get("children", ())) == 2 else name
    columns = node.get("column_names")
    if node.get("class") == "COLUMN_REF" and isinstance(columns, list) and len(columns) == 1 \
            and str(columns[0]).lower() in CLOCK_NAMES:
        return str(columns[0])
    return None


def nondeterministic_parts(statement: str) -> set[str]:
    """What makes `statement` give a different answer each time it runs over the same data: the
    functions and clock values of `changing_value`, and its samples. Empty: a stored answer stays true.

    A statement that does not parse counts as non-deterministic (it will fail anyway).
    """
    tree = _tree_of(statement)
    if tree is None:
        return {"unparsed"}
    found = set()
    for node in walk(tree):
        name = changing_value(node)
        if name is not None:
            found.add(name.lower())
        if node.get("sample") is not None:
            found.add("SAMPLE")
    return found


def literal_paths(statement: str) -> set[str]:
    """The files `statement` names itself: string constants given to table functions (read_parquet('...'),
    also inside a list) and quoted file names in FROM. With the lake tables it uses, these are all
    it reads: the sandbox admits no other way to reach a file."""
    tree = _tree_of(statement)
    paths = set()
    for node in walk(tree or {}):
        if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
            for argument in node["function"].get("children", []):
                items = argument.get("children", []) if argument.get("function_name") == "list_value" else [argument]
                for item in items:
                    value = item.get("value") if isinstance(item, dict) and item.get("class") == "CONSTANT" else None
                    if isinstance(value, dict) and isinstance(value.get("value"), str):
                        paths.add(value["value"])
        elif node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            paths.add(node["table_name"])  # a plain name too: only those inside the lake count
    return paths



@functools.lru_cache(maxsize=1024)
def printed_type(text: str) -> str:
    """`text`, if it is exactly DuckDB's printing of one type (as DESCRIBE gives column types); else ValueError.

    For a type that arrives in an answer and will be spliced into SQL: DuckDB's
    type parser reads it (nothing runs), and its printing of what it read must
    give `text` back. The parser alone is lenient (it reads "INTEGER, b INTEGER"
    or "INTEGER DEFAULT (SELECT 42)" as INTEGER); its printing holds nothing but
    the type, with names quoted and strings escaped by DuckDB itself.
    """
    try:
        with parser() as con:
            printed = str(con.type(text))
    except (duckdb.Error, UnicodeError):
        raise ValueError("DuckDB reads no type in it") from None
    if printed != text:
        raise ValueError(f"DuckDB prints the type it reads as {printed[:80]!r}")
    return printed
