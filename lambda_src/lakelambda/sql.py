"""Parse-only SQL helpers that the handler and the notebook share.

Everything here asks DuckDB's own tokenizer or parser (on a private
in-memory database that reaches no file and no network); nothing runs a
query, and no regular expression reads SQL text. Positions are in
characters (DuckDB counts UTF-8 bytes; `character_offsets` converts).
"""

from __future__ import annotations

import functools
import json
from typing import NamedTuple

import duckdb

from .errors import SqlError, UnsupportedStatement


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
    return duckdb.connect(config={
        "errors_as_json": True, "enable_external_access": False, "autoinstall_known_extensions": False,
        "autoload_known_extensions": False, "lock_configuration": True,
    })


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
        text = con.execute("SELECT json_serialize_sql(?, skip_empty := false, skip_null := false, "
                           "skip_default := false)", [sql]).fetchone()[0]
    return json.loads(text)


def parameter_names(sql: str) -> set[str]:
    """The `$name` parameters DuckDB's parser finds (none inside strings or comments)."""
    try:
        return {name for statement in duckdb.extract_statements(sql) for name in statement.named_parameters}
    except duckdb.Error:
        return set()  # the engine reports the syntax error, with its position


def referenced_tables(statement: str) -> set[str]:
    """The plain table names `statement` reads (not its CTEs): the lake tables and views it may mean.

    Taken from the parse tree in one pass, so its cost grows with the statement's length only.
    """
    try:
        tree = parse_tree(statement)
    except (duckdb.Error, RecursionError):
        return set()  # the query itself reports the error
    names, ctes, pending = set(), set(), [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and not node.get("schema_name") and not node.get("catalog_name"):
                names.add(node["table_name"])
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                ctes.update(entry["key"] for entry in cte_map.get("map", []))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return names - ctes


# Spelled without parentheses, these parse as column names; they are the clock all the same.
_CLOCK_NAMES = frozenset({"current_date", "current_time", "current_timestamp", "localtime", "localtimestamp"})
# Functions whose value is not fixed by their arguments: every one DuckDB 1.5.5 classifies as VOLATILE
# or CONSISTENT_WITHIN_QUERY (tests/test_reuse.py checks the installed DuckDB adds none), and those it
# calls CONSISTENT that read the clock all the same (age(x) counts from today; ICU's current_local*).
VOLATILE_FUNCTIONS = frozenset({
    "random", "setseed", "uuid", "uuidv4", "uuidv7", "gen_random_uuid", "nextval", "currval", "error",
    "stats", "sleep_ms", "write_log", "current_query", "current_query_id", "current_connection_id",
    "current_transaction_id", "txid_current", "current_database", "current_schema", "current_schemas",
    "in_search_path", "now", "today", "get_current_time", "get_current_timestamp", "transaction_timestamp",
    "current_date", "age", "current_localtime", "current_localtimestamp", "ago", "pg_conf_load_time", "pg_postmaster_start_time",
})


def nondeterministic_parts(statement: str) -> set[str]:
    """What makes `statement` give a different answer each time it runs over the same data: the
    volatile functions it calls, the clock it reads, its samples. Empty: a stored answer stays true.

    A statement that does not parse counts as non-deterministic (it will fail anyway).
    """
    try:
        tree = parse_tree(statement)
    except (duckdb.Error, RecursionError):
        return {"unparsed"}
    if tree.get("error"):
        return {"unparsed"}
    found, pending = set(), [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            name = node.get("function_name")
            if node.get("class") == "FUNCTION" and isinstance(name, str) and name.lower() in VOLATILE_FUNCTIONS:
                found.add(name.lower())
            columns = node.get("column_names")
            if node.get("class") == "COLUMN_REF" and isinstance(columns, list) and len(columns) == 1 \
                    and str(columns[0]).lower() in _CLOCK_NAMES:
                found.add(str(columns[0]).lower())
            if node.get("sample") is not None:
                found.add("SAMPLE")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def literal_paths(statement: str) -> set[str]:
    """The files `statement` names itself: string constants given to table functions (read_parquet('...'),
    also inside a list) and quoted file names in FROM. With the lake tables it uses, these are all
    it reads: the sandbox admits no other way to reach a file."""
    try:
        tree = parse_tree(statement)
    except (duckdb.Error, RecursionError):
        return set()
    paths, pending = set(), [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
                for argument in node["function"].get("children", []):
                    items = argument.get("children", []) if argument.get("function_name") == "list_value" else [argument]
                    for item in items:
                        value = item.get("value") if isinstance(item, dict) and item.get("class") == "CONSTANT" else None
                        if isinstance(value, dict) and isinstance(value.get("value"), str):
                            paths.add(value["value"])
            elif node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
                paths.add(node["table_name"])  # a plain name too: only those inside the lake count
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
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
