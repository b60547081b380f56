"""Prove, before a query runs, that it reads the lake and nothing else.

DuckDB's own settings (allowed_directories, enable_external_access, the
configuration lock) are an outer layer, not a sandbox: allowed_directories
compares strings before normalizing (`s3://lake/../other/x` passes), an S3
URL's query string sets httpfs options per request (`?s3_endpoint=...`),
table functions such as enable_logging() act despite the lock, and settings
and secrets can be read back with SQL. So each query is parsed by DuckDB's
own parser (json_serialize_sql) and its whole tree is walked:

- table functions come from an allow-list; the lake readers' paths must be
  string literals inside the lake, and their options come from an allow-list;
  the table formats' functions (iceberg_scan, delta_scan, ...) take one such
  path and a whole-number time-travel option at most (formats.py then proves
  the files the table's metadata names inside the lake before one runs);
- files named in FROM (replacement scans) obey the same path rules;
- a lake-relative path ('dataset/x.parquet') is the lake root, '/' and itself,
  under the same rules, and the query that runs names it so (`check_query`
  splices the full path in at the place DuckDB's parser gives the literal);
- base tables are plain names: no schema or catalog, no built-in view;
- scalar functions that read the engine's state or change it are refused;
- any node the walk does not recognize is refused.

Nothing here reads SQL text itself; positions come from DuckDB's parser.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, NoReturn

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .errors import PermissionDenied
from .sql import character_offsets, parse_tree, quote_identifier, quote_literal, start_of, tokens, walk

# Table functions that read files: their one positional argument is the path
# (a string or a list of strings), checked against the lake.
READERS = frozenset({
    "read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata",
    "parquet_kv_metadata", "parquet_full_metadata",
    "read_csv", "read_csv_auto", "sniff_csv",
    "read_json", "read_json_auto", "read_ndjson", "read_ndjson_auto",
    "read_json_objects", "read_json_objects_auto", "read_ndjson_objects",
    "read_text", "read_blob", "glob",
})
# Table functions that read an Iceberg or Delta table (formats.py proves the files its metadata names are
# inside the lake before one runs), by format, with the options each may take: time travel only (no catalog,
# no moved paths, no encryption keys, nothing that names another file or host). Their one path is a string.
FORMAT_FUNCTIONS = {"iceberg_scan": "iceberg", "iceberg_metadata": "iceberg", "iceberg_snapshots": "iceberg",
                    "delta_scan": "delta"}
FORMAT_OPTIONS = {"iceberg_scan": frozenset({"snapshot_from_id"}), "iceberg_metadata": frozenset({"snapshot_from_id"}),
                  "iceberg_snapshots": frozenset(), "delta_scan": frozenset({"version"})}
# Table functions that compute rows from their arguments alone (which are walked like any expression).
# pg_timezone_names and icu_calendar_names list fixed tables of the ICU library.
COMPUTING = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "pg_timezone_names", "icu_calendar_names",
})
# Everything else is refused: query/query_table (SQL from a string the walk cannot see), every duckdb_*,
# pragma_* and which_secret (the engine's state, settings, secrets and logs), enable_/disable_logging,
# *_profiling, checkpoint, truncate_duckdb_logs (side effects), arrow_scan/pandas_scan/python_map_function
# (raw pointers, Python objects), json_execute_serialized_sql, read_duckdb (attaches a database),
# summary, seq_scan, test_* and the histogram/duckdb_* table macros (they expand to query_table or
# duckdb_logs/duckdb_settings), parquet_bloom_probe (three positional arguments; not needed).

# Reader options a notebook needs, none of which names a file, a table or a host. Refused among
# others: store_rejects/rejects_table/rejects_scan/rejects_limit (they create tables),
# encryption_config (keys), buffer_size/explicit_cardinality/debug_* (engine internals).
READER_OPTIONS = frozenset({
    "hive_partitioning", "hive_types", "hive_types_autocast", "union_by_name", "filename",
    "binary_as_string", "file_row_number", "can_have_nan", "schema",
    "header", "delim", "sep", "quote", "escape", "new_line", "comment", "skip", "columns", "column_types",
    "types", "dtypes", "names", "column_names", "auto_detect", "all_varchar", "sample_size", "dateformat",
    "timestampformat", "date_format", "timestamp_format", "decimal_separator", "thousands", "nullstr",
    "null_padding", "allow_quoted_nulls", "force_not_null", "normalize_names", "ignore_errors",
    "strict_mode", "compression", "encoding", "max_line_size", "maximum_line_size", "parallel",
    "auto_type_candidates", "files_to_sniff", "force_match",
    "format", "records", "maximum_depth", "maximum_object_size", "convert_strings_to_integers",
    "field_appearance_threshold", "map_inference_threshold", "maximum_sample_files",
})

# Scalar, aggregate and macro functions: all of duckdb_functions() of DuckDB 1.5.5 (with httpfs) was
# read and classified (tests/test_sandbox.py keeps the reviewed inventory, so an upgrade that adds
# functions fails until they are classified). Nearly all are pure computations on their arguments.
# Refused: what reads settings, variables, secrets, the search path, logs or the running query
# (current_setting, getvariable, current_schemas, in_search_path, current_query, *_id, txid_current);
# what changes state or has side effects (nextval/currval, setseed, write_log, sleep_ms/pg_sleep);
# what binds SQL from a string (json_serialize_plan, json_execute_serialized_sql); and macros whose
# bodies query the catalog (get_block_size, format_type, pg_get_viewdef, pg_get_constraintdef).
DENIED_FUNCTIONS = frozenset({
    "current_setting", "getvariable", "which_secret", "current_schemas", "in_search_path",
    "current_query", "current_query_id", "current_connection_id", "current_transaction_id", "txid_current",
    "nextval", "currval", "setval", "lastval", "setseed", "write_log", "parse_duckdb_log_message",
    "sleep_ms", "pg_sleep", "json_serialize_plan", "json_execute_serialized_sql",
    "get_block_size", "format_type", "pg_get_viewdef", "pg_get_constraintdef", "getenv",
    "query", "query_table", "enable_logging", "disable_logging", "truncate_duckdb_logs",
    "enable_profiling", "disable_profiling", "checkpoint", "force_checkpoint",
    # Decodes raw bytes with no bounds checks: malformed input crashes the process (seen: SIGSEGV, SIGFPE).
    "variant_bytes_to_variant",
})
DENIED_PREFIXES = ("duckdb_", "pragma_")

# The parser's node vocabulary this walk understands; anything else is refused.
EXPRESSION_CLASSES = frozenset({
    "BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON", "CONJUNCTION", "CONSTANT", "DEFAULT",
    "FUNCTION", "LAMBDA", "LAMBDA_REF", "OPERATOR", "PARAMETER", "POSITIONAL_REFERENCE", "STAR", "SUBQUERY",
    "WINDOW",
})
TABLE_REFS = frozenset({"BASE_TABLE", "TABLE_FUNCTION", "SUBQUERY", "JOIN", "EXPRESSION_LIST", "EMPTY", "PIVOT",
                        "SHOW_REF"})
QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})

# DuckDB's own views that a plain name reaches (main's duckdb_*/sqlite_*, pg_catalog's pg_*), lowercase, as
# DuckDB 1.5.5 has them with or without the package's extensions: tests/test_sandbox.py checks this against
# duckdb_views(), so an upgrade that adds one fails until it is here (asked at run time, the list cost every cold
# start about 6 ms of CPU). information_schema's views are left out: not on the search path, so an unqualified name
# (a lake table called `tables` or `views`) never reaches them, and qualified names are refused.
BUILTIN_VIEWS = frozenset({
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_indexes", "duckdb_logs", "duckdb_schemas",
    "duckdb_tables", "duckdb_types", "duckdb_views", "pragma_database_list",
    "sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema",
    "pg_am", "pg_attrdef", "pg_attribute", "pg_class", "pg_collation", "pg_constraint", "pg_database", "pg_depend",
    "pg_description", "pg_enum", "pg_index", "pg_indexes", "pg_namespace", "pg_prepared_statements", "pg_proc",
    "pg_sequence", "pg_sequences", "pg_settings", "pg_tables", "pg_tablespace", "pg_type", "pg_views",
})

GLOB_CHARACTERS = frozenset("*?[]{}")
INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                           "UBIGINT"})
# A query string or fragment (httpfs options per request), escapes, userinfo, Windows separators.
FORBIDDEN_PATH_CHARACTERS = frozenset("?#%@\\")


class Checked(NamedTuple):
    """A query the sandbox approved, as it runs: its lake-relative paths made full."""

    text: str
    splices: tuple[tuple[int, int, int], ...] = ()  # (where in the text as written, length written, length now)

    def position_as_written(self, position: int | None) -> int | None:
        """A character position in `text` as a position in the query as written (a path's own start
        for a position inside a path made full), so an error's caret points where the user wrote it."""
        if position is None:
            return None
        shift = 0
        for at, written, full in self.splices:
            if position < at + shift:
                break
            if position < at + shift + full:
                return at
            shift += full - written
        return position - shift


def check_query(sql: str, lake_root: str | None) -> Checked:
    """Raise PermissionDenied unless `sql` (one query) can only read inside `lake_root` (None: no file
    at all); the query as it runs, its lake-relative paths made full."""
    return _approved(sql, lake_root)


# The check is a function of the text and the lake alone, so a text asked again (a repeated query, a
# saved view used by every query) is not parsed and walked again; a refusal raises and is not kept.
@functools.lru_cache(maxsize=128)
def _approved(sql: str, lake_root: str | None) -> Checked:
    _refuse_unmaterialized_ctes(sql)
    walk = _Walk(sql, lake_root)
    try:
        walk.visit(_parse(sql)["statements"])
    except RecursionError:  # from the JSON decoder: a tree deeper than Python's stack
        raise PermissionDenied("this query is nested too deeply to be checked for what it reads") from None
    checked = walk.with_full_paths()
    if checked.splices and _approved(checked.text, lake_root).splices:  # what runs is checked as it runs, too
        raise PermissionDenied("this query's lake-relative paths cannot be made full, so it cannot run here")
    return checked


def may_call(name: str, table: bool = False) -> bool:
    """Whether a query may call function `name` (a table function if `table`): the walk's rule, which
    completion offers by too."""
    lowered = name.lower()
    if table:
        return lowered in READERS or lowered in COMPUTING or lowered in FORMAT_FUNCTIONS
    return name.isascii() and lowered not in DENIED_FUNCTIONS and not lowered.startswith(DENIED_PREFIXES)


def _parse(sql: str) -> dict:
    tree = parse_tree(sql)  # every property written: the walk recognizes nodes by their keys
    if tree.get("error"):
        hint = "; a PIVOT needs an IN list of its values" if tree.get("error_type") == "not implemented" else ""
        raise PermissionDenied(f"this query cannot be checked for what it reads, so it cannot run here "
                               f"({tree.get('error_message')}){hint}")
    if len(tree["statements"]) != 1:
        raise PermissionDenied("send exactly one query")
    return tree


class _Walk:
    """One check over a parse tree: every node (sql.walk), whatever the key holding it."""

    def __init__(self, sql: str, lake_root: str | None):
        self.sql = sql
        self.root = None if lake_root is None else lake_root.rstrip("/")
        self._offsets: list[int] | None = None
        self._relative: list[tuple[int, str, str]] = []  # (character offset, quoted as written, full path quoted so)

    def visit(self, tree) -> None:
        for node in walk(tree):
            if "class" in node:
                self._expression(node)
            elif _is_table_ref(node):
                self._table_ref(node)
            elif "modifiers" in node and "cte_map" in node and node.get("type") not in QUERY_NODES:
                self._deny(f"a {node.get('type')} cannot be checked here", node)

    def _expression(self, node: dict) -> None:
        if node["class"] not in EXPRESSION_CLASSES:
            self._deny(f"a {node['class']} expression cannot be checked here", node)
        if "function_name" in node:
            self._function(node)

    def _function(self, node: dict) -> None:
        """Refused by bare name, whatever the quoting, case, schema or catalog."""
        name = node["function_name"]
        if not name.isascii():
            self._deny(f"{name}() is not a DuckDB function (function names are ASCII)", node)
        if not may_call(name):
            self._deny(f"{name}() is not available to queries: it reads or changes the engine's state, "
                       "or is unsafe on untrusted input", node)

    def _table_ref(self, node: dict) -> None:
        kind = node["type"]
        if kind not in TABLE_REFS:
            self._deny(f"a {kind} table reference cannot be checked here", node)
        if kind == "BASE_TABLE":
            self._base_table(node)
        elif kind == "TABLE_FUNCTION":
            self._table_function(node["function"])
        elif kind == "SHOW_REF" and node.get("query") is None:
            # SHOW TABLES / SHOW ALL TABLES / SHOW DATABASES / SHOW SCHEMAS / SHOW VARIABLES show the
            # engine's catalog and state, never the lake (a query that is only SHOW TABLES is answered
            # from the lake's catalog before it gets here); DESCRIBE and SUMMARIZE carry a query, walked.
            self._deny("SHOW lists the engine's own catalog, not the lake; SHOW TABLES on its own lists the "
                       "lake's tables, and DESCRIBE <table> a table's columns", node)

    def _base_table(self, node: dict) -> None:
        name = node["table_name"]
        if node.get("schema_name") or node.get("catalog_name"):
            qualified = ".".join(part for part in (node.get("catalog_name"), node.get("schema_name"), name) if part)
            self._deny(f"{qualified}: only plain table names (lake tables, views, CTEs) can be used", node)
        if name.lower() in BUILTIN_VIEWS:
            self._deny(f"{name} is one of DuckDB's own views, not a lake table", node)
        if not all(char.isalnum() or char in "_- " for char in name):
            self._path(name, node)  # a name DuckDB may read as a file (a replacement scan)

    def _table_function(self, function: dict) -> None:
        name = function.get("function_name", "")
        lowered = name.lower()
        if lowered in COMPUTING:
            return
        if lowered in FORMAT_FUNCTIONS:
            return self._format_function(function)
        if lowered not in READERS:
            self._deny(f"{name}() is not available to queries; the table functions here are the lake "
                       "readers (read_parquet, read_csv, read_json, read_text, read_blob, parquet_metadata, "
                       "glob, iceberg_scan, delta_scan, ...) and range, generate_series, unnest", function)
        positional = []
        for argument in function.get("children", []):
            option = option_name(argument)
            if option is None:
                positional.append(argument)
            elif option.lower() not in READER_OPTIONS:
                self._deny(f"{name}() option {option} is not allowed here", argument, function)
        if len(positional) != 1:
            self._deny(f"{name}() takes exactly one path (a string, or a list of strings)", function)
        self._paths(function, positional[0])

    def _format_function(self, function: dict) -> None:
        """One path, a string literal naming a table's folder or metadata file; integer time-travel options only."""
        name = function["function_name"]
        allowed = FORMAT_OPTIONS[name.lower()]
        positional, given = [], set()
        for argument in function.get("children", []):
            option = option_name(argument)
            if option is None:
                positional.append(argument)
                continue
            if option.lower() in given:  # which one the extension takes would be its choice, not the check's
                self._deny(f"{name}() option {option} is given twice", argument, function)
            given.add(option.lower())
            value = (argument.get("right") if argument.get("type") == "COMPARE_EQUAL" else argument) or {}
            constant = value.get("value") or {}
            if option.lower() not in allowed:
                self._deny(f"{name}() option {option} is not allowed here; "
                           + (f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none"), argument, function)
            if value.get("class") != "CONSTANT" or (constant.get("type") or {}).get("id") not in INTEGER_TYPES:
                self._deny(f"{name}() option {option} must be a whole number", argument, function)
        literal = (positional[0].get("value") or {}) if len(positional) == 1 else {}
        if (positional[0].get("class") if len(positional) == 1 else None) != "CONSTANT" or \
                (literal.get("type") or {}).get("id") != "VARCHAR" or literal.get("is_null"):
            self._deny(f"{name}() takes exactly one path, a string literal: the table's folder or metadata file",
                       function)
        self._path(literal["value"], positional[0])
        if any(char in GLOB_CHARACTERS for char in literal["value"]):
            self._deny(f"{name}() reads one table: its path has no wildcards", positional[0], function)

    def _paths(self, function: dict, argument: dict) -> None:
        """A path argument is a string literal or a list of them: never a column, parameter or expression."""
        items = [argument]
        if argument.get("class") == "FUNCTION" and argument.get("function_name") == "list_value":
            items = argument.get("children", [])
        for item in items:
            value = item.get("value") or {}
            if (item.get("class") != "CONSTANT" or value.get("is_null")
                    or (value.get("type") or {}).get("id") != "VARCHAR"):
                self._deny(f"the path of {function['function_name']}() must be a string literal (or a list of "
                           "them) inside the lake, not an expression, column or parameter", item, function)
            self._path(value["value"], item)

    def _path(self, path: str, node: dict) -> None:
        if self.root is None:
            self._deny("this query may read no file", node)
        full = full_path(path, self.root)
        problem = lake_path_problem(full, self.root, written=path)
        if problem is not None:
            self._deny(problem, node)
        if full != path:
            self._relative.append(self._written(path, full, node))

    def _written(self, path: str, full: str, node: dict) -> tuple[int, str, str]:
        """Where the parser places `path`'s literal, and how to write `full` there: the text at that
        place must be `path` quoted whole, as a string or a name, else the query is refused."""
        at = self._character(start_of(node))
        for quote in (quote_literal, quote_identifier):
            if at is not None and self.sql.startswith(quote(path), at):
                return at, quote(path), quote(full)
        self._deny(f"write the lake-relative path {path!r} as one quoted string, or give its full path", node)

    def with_full_paths(self) -> Checked:
        """The query with each lake-relative path replaced by its full path, at the parser's places."""
        splices = sorted(set(self._relative))
        text = self.sql
        for at, written, full in reversed(splices):
            text = text[:at] + full + text[at + len(written):]
        return Checked(text, tuple((at, len(written), len(full)) for at, written, full in splices))

    def _character(self, location: int | None) -> int | None:
        """A parser location (UTF-8 bytes) in characters of the text."""
        if location is None:
            return None
        if self._offsets is None:
            self._offsets = character_offsets(self.sql)
        return self._offsets[location] if location < len(self._offsets) else None

    def _deny(self, message: str, node: dict, enclosing: dict | None = None) -> NoReturn:
        """Refuse, pointing at where `node` starts in the SQL (else at `enclosing`), in characters."""
        location = start_of(node)
        if location is None and enclosing is not None:
            location = start_of(enclosing)
        raise PermissionDenied(message, self._character(location))


def full_path(path: str, lake_root: str) -> str:
    """`path` as the lake reads it: a full path (a URL, from the file system's root or a home
    folder) as it is, any other relative to the lake's root."""
    if path.startswith(("/", "~")) or "://" in path:
        return path
    return lake_root.rstrip("/") + "/" + path


def lake_path_problem(path: str, lake_root: str, written: str | None = None) -> str | None:
    """Why `path` may not be read, or None where it is inside the lake once normalized and outside
    its `_lakemagic/` area, by construction. The reasons name the path as `written` (as the query gives it)."""
    shown = repr(path if written is None else written)
    prefix = lake_root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return f"{shown} is outside the lake: paths must start with {prefix!r}"
    rest = path[len(prefix):]
    if any(char in FORBIDDEN_PATH_CHARACTERS or not char.isprintable() for char in rest):
        return f"{shown}: lake paths cannot contain ?, #, %, @, backslashes or control characters"
    segments = rest.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return f"{shown}: lake paths cannot have empty, '.' or '..' segments"
    first = segments[0]
    if any(char in GLOB_CHARACTERS for char in first):
        return f"{shown}: the first folder under the lake must be named, without wildcards"
    if first[0] in "_.":
        return f"{shown}: folders starting with '_' or '.' belong to the lake's bookkeeping"
    return None


def _refuse_unmaterialized_ctes(sql: str) -> None:
    """`WITH c AS NOT MATERIALIZED (...)` inlines c wherever it is used, so a chain of such CTEs each
    joining the last with itself doubles the binder's work per link, which DuckDB cannot interrupt
    (1.4 KB of SQL ran for hours). The parse tree does not keep the marker, so DuckDB's tokens are read."""
    found = tokens(sql)
    for first, second in zip(found, found[1:]):
        if (first.kind == second.kind == duckdb.token_type.keyword and first.word(sql).upper() == "NOT"
                and second.word(sql).upper() == "MATERIALIZED"):
            raise PermissionDenied("NOT MATERIALIZED common table expressions cannot run here; "
                                   "leave the CTE as it is (DuckDB materializes it)", first.start)


def _is_table_ref(node: dict) -> bool:
    """Every table reference has `sample` and `alias` keys and no other node has both; its type is a second net."""
    kind = node.get("type")
    return ("sample" in node and "alias" in node) or (isinstance(kind, str) and kind in TABLE_REFS)


def option_name(argument: dict) -> str | None:
    """A table function argument's option name, as DuckDB's binder finds it: `name = value`
    (an unqualified column on the left of =) or `name => value` / `name := value` (an alias)."""
    if argument.get("type") == "COMPARE_EQUAL":
        left = argument.get("left") or {}
        if left.get("class") == "COLUMN_REF" and len(left.get("column_names", [])) == 1:
            return left["column_names"][0]
        return None  # `a.b = x` is a positional argument, whatever its alias
    return argument.get("alias") or None
