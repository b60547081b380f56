"""What a query would read, without running it: from the lake's listings and Parquet footers alone.

The sandbox decides which files a query touches (run.prepare checks the query
and its views, finds the lake tables they mean and makes their paths full);
the listing gives the files' sizes, and their footers (parquet_metadata) what
each row group of each column holds. What the query leaves to read is pruned
as DuckDB's scan prunes, but only where the parse tree makes it certain:

- the files of a Hive-partitioned table whose key values fail a simple comparison;
- the row groups whose min/max statistics fail one;
- the column chunks of the columns the query never names (none for a `*`).

A simple comparison is a top-level AND term of the WHERE clause of the query's
own SELECT over one source (no join, no CTE of that name): a column compared
(=, <, <=, >, >=, BETWEEN) with a constant, a cast of one, or a bound
$parameter. Anything else prunes nothing, so the estimate is what a full scan
of what is left reads, unless a LIMIT with nothing past it (no filter, order,
grouping, aggregate, window or DISTINCT) stops the scan at the row groups that
hold its rows; DESCRIBE reads footers alone. Nothing of the user's SQL runs:
constants are evaluated on the parse-only database, and what the lake's
footers say is compared in SQL where every value is quoted.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import json
import re
from typing import NamedTuple

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from . import run
from .lake import Lake, is_pattern
from .protocol import EstimateAnswer, EstimateRequest, SourceEstimate
from .sandbox import lake_path_problem
from .sql import function_catalog, parse_tree, parser, quote_identifier, quote_literal, walk
from .tasks import partition_values

# Table functions that read a file's rows from its Parquet column chunks; other readers read files whole.
PARQUET_READERS = frozenset({"read_parquet", "parquet_scan"})
# The comparisons a min/max range decides, as the column's side sees them (the constant on the right).
COMPARISONS = {"COMPARE_EQUAL": "=", "COMPARE_LESSTHAN": "<", "COMPARE_LESSTHANOREQUALTO": "<=",
               "COMPARE_GREATERTHAN": ">", "COMPARE_GREATERTHANOREQUALTO": ">="}
FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# Column types whose values order as their statistics do (DuckDB's own printing of them, from DESCRIBE).
ORDERED_TYPE = re.compile(r"(BOOLEAN|U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DATE|TIME|"
                          r"TIMESTAMP(_S|_MS|_NS| WITH TIME ZONE)?|VARCHAR|DECIMAL\(\d+,\d+\))")
# What DuckDB's reader fetches of a file's tail at the least, to find its footer (and the footer's length
# and magic number): seen as 16,384 bytes for a 5 KB footer on S3 (tests/test_dryrun.py).
FOOTER_READ_BYTES = 16 * 1024
# A parameter's value stands for a constant when it is one of these (a list or a struct is not).
SCALAR_VALUES = (bool, int, float, str, decimal.Decimal, datetime.date, datetime.datetime, datetime.time)


class Term(NamedTuple):
    """`column op value`, or `column BETWEEN value AND upper` (op "between"); values are DuckDB's text of them."""

    column: str  # lower-cased
    op: str
    value: str
    upper: str | None = None


class Source(NamedTuple):
    name: str  # the lake table's name (lower-cased), or the path
    location: str  # what the listing reads: a file or a pattern
    parquet: bool
    partitioned: bool
    table: bool  # a lake table (else a path the query names)


class Scan(NamedTuple):
    """What the query's own SELECT says of the one source it reads: its name, the simple comparisons of its
    WHERE clause, and the rows its LIMIT (and OFFSET) stops the scan after, where nothing else needs more."""

    source: str | None = None
    terms: tuple[Term, ...] = ()
    rows: int | None = None


def reads(con, lake: Lake, request: EstimateRequest, memory_mb: int | None) -> EstimateAnswer:
    """The estimate of what `request.sql` would read, source by source."""
    prepared = run.prepare(con, lake, request.sql, request.views)
    run.describe(con, lake, prepared, request.params)  # what would fail to run fails here, as it would
    trees = [parse_tree(text) for text in prepared.texts]
    # DESCRIBE reads its sources' footers alone.
    columns = set() if prepared.statement.keyword == "DESCRIBE" else _columns_named(trees)
    scan = _scan(lake, prepared, trees[0], request.params)
    found = []
    for source in _sources(lake, prepared, trees):
        ours = source.name == scan.source
        types = _types(con, lake, source) if ours and scan.terms else {}
        terms = [term for term in scan.terms if ours and ORDERED_TYPE.fullmatch(types.get(term.column, ""))]
        found.append(_estimate(con, lake, source, columns, terms, types, scan.rows if ours else None))
    return EstimateAnswer(tuple(found), memory_mb)


def _sources(lake: Lake, prepared: run.Prepared, trees: list[dict]) -> list[Source]:
    """The lake tables and the lake's files the query and its views read, each once."""
    sources = {name: Source(name, location, True, is_pattern(location), True)
               for name, location in sorted(prepared.tables.items()) if location is not None}
    for tree in trees:
        for node in walk(tree):
            for path, parquet in _paths_read(node):
                if lake_path_problem(path, lake.root) is None:
                    sources.setdefault(path, Source(path, path, parquet, False, False))
    return list(sources.values())


def _paths_read(node: dict) -> list[tuple[str, bool]]:
    """The lake paths a table reference names itself, and whether each is read as Parquet."""
    if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
        return [(node["table_name"], node["table_name"].endswith(".parquet"))]  # DuckDB's replacement scan
    function = node.get("function") if node.get("type") == "TABLE_FUNCTION" else None
    if not isinstance(function, dict):
        return []
    parquet = str(function.get("function_name", "")).lower() in PARQUET_READERS
    found = []
    for argument in function.get("children", []):
        items = argument.get("children", []) if argument.get("function_name") == "list_value" else [argument]
        for item in items:
            value = item.get("value") if item.get("class") == "CONSTANT" and not item.get("alias") else None
            if isinstance(value, dict) and isinstance(value.get("value"), str):
                found.append((value["value"], parquet))
    return found


def _columns_named(trees: list[dict]) -> set[str] | None:
    """Every name a column reference uses anywhere, lower-cased; None where a `*` reads every column."""
    names: set[str] = set()
    for tree in trees:
        for node in walk(tree):
            if node.get("class") == "STAR":
                return None
            if node.get("class") == "COLUMN_REF":
                names.update(str(part).lower() for part in node.get("column_names", []))
    return names


def _scan(lake: Lake, prepared: run.Prepared, tree: dict, params: dict) -> Scan:
    """The one source the query's own SELECT reads (no join, no CTE of its name), as a Scan."""
    statements = tree.get("statements") or [{}]
    node = statements[0].get("node") or {}
    table = node.get("from_table") or {}
    if node.get("type") != "SELECT_NODE" or table.get("type") not in ("BASE_TABLE", "TABLE_FUNCTION"):
        return Scan()
    ctes = {str(entry.get("key", "")).lower() for entry in node.get("cte_map", {}).get("map", [])}
    names = {str(table.get("alias") or "").lower()}
    source: str | None
    if table["type"] == "BASE_TABLE" and not table.get("schema_name"):
        name = str(table.get("table_name", ""))
        names.add(name.lower())
        source = name.lower() if prepared.tables.get(name.lower()) else name
    else:
        paths = _paths_read(table)
        source = paths[0][0] if len(paths) == 1 and paths[0][1] else None
    if source is None or source.lower() in ctes or (source not in prepared.tables
                                                    and lake_path_problem(source, lake.root) is not None):
        return Scan()
    terms = tuple(term for where in _and_terms(node.get("where_clause"))
                  for term in [_term(where, names - {""}, params)] if term is not None)
    return Scan(source, terms, _rows_needed(node))


def _rows_needed(node: dict) -> int | None:
    """The rows a scan stops after: LIMIT plus OFFSET, given as numbers, where the SELECT has nothing that
    reads on past them (a filter, grouping, an aggregate, a window, an order, DISTINCT)."""
    modifiers = node.get("modifiers", [])
    if (node.get("where_clause") or node.get("group_expressions") or node.get("having") or node.get("qualify")
            or [modifier.get("type") for modifier in modifiers] != ["LIMIT_MODIFIER"]):
        return None
    aggregates = {function.name for function in function_catalog() if function.kind == "aggregate"}
    for part in walk(node.get("select_list", [])):
        if part.get("class") == "WINDOW" or str(part.get("function_name", "")).lower() in aggregates | {"count_star"}:
            return None
    counts = [_count(modifiers[0].get(key)) for key in ("limit", "offset")]
    return None if counts[0] is None else counts[0] + (counts[1] or 0)


def _count(node) -> int | None:
    value = node.get("value") if isinstance(node, dict) and node.get("class") == "CONSTANT" else None
    number = value.get("value") if isinstance(value, dict) and not value.get("is_null") else None
    return number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else None


def _and_terms(node: dict | None) -> list[dict]:
    if not node:
        return []
    if node.get("class") == "CONJUNCTION" and node.get("type") == "CONJUNCTION_AND":
        return [term for child in node.get("children", []) for term in _and_terms(child)]
    return [node]


def _term(node: dict, names: set[str], params: dict) -> Term | None:
    """`node` as a simple comparison of one of the source's columns, or None."""
    if node.get("class") == "BETWEEN":
        column = _column(node.get("input"), names)
        lower, upper = _constant(node.get("lower"), params), _constant(node.get("upper"), params)
        if column is None or lower is None or upper is None:
            return None
        return Term(column, "between", lower, upper)
    op = COMPARISONS.get(str(node.get("type"))) if node.get("class") == "COMPARISON" else None
    if op is None:
        return None
    left, right = node.get("left"), node.get("right")
    if _column(right, names) is not None:
        left, right, op = right, left, FLIPPED[op]
    column, value = _column(left, names), _constant(right, params)
    return None if column is None or value is None else Term(column, op, value)


def _column(node, names: set[str]) -> str | None:
    """The column `node` names, unqualified or qualified by the source's name or alias."""
    if not isinstance(node, dict) or node.get("class") != "COLUMN_REF":
        return None
    parts = [str(part).lower() for part in node.get("column_names", [])]
    if len(parts) == 1 or (len(parts) == 2 and parts[0] in names):
        return parts[-1]
    return None


def _constant(node, params: dict) -> str | None:
    """DuckDB's text of a constant, a cast of one, or a bound scalar $parameter; None for anything else."""
    if not isinstance(node, dict):
        return None
    if node.get("class") == "PARAMETER":
        value = params.get(str(node.get("identifier")))
        return str(value) if isinstance(value, SCALAR_VALUES) else None
    if not all(part.get("class") in ("CONSTANT", "CAST") for part in walk(node) if "class" in part):
        return None
    select = copy.deepcopy(parse_tree("SELECT NULL"))  # parse trees are shared: never changed
    select["statements"][0]["node"]["select_list"] = [node]
    try:
        with parser() as con:  # DuckDB's own text of the tree's constant, cast where nothing is reachable
            text = con.execute("SELECT json_deserialize_sql(?)", [json.dumps(select)]).fetchall()[0][0]
            return con.execute(f"SELECT CAST(({text}) AS VARCHAR)").fetchall()[0][0]
    except duckdb.Error:  # a cast that fails, or to a type this database lacks: the query reports it
        return None


def _types(con, lake: Lake, source: Source) -> dict[str, str]:
    """The source's columns' types as the query reads them (a partitioned table's keys too), lower-cased names."""
    if source.table:
        lake.register_tables(con, {source.name: source.location})
        rows = con.execute(f"DESCRIBE main.{quote_identifier(source.name)}").fetchall()
    else:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(source.location)})").fetchall()
    return {str(row[0]).lower(): str(row[1]) for row in rows}


def _estimate(con, lake: Lake, source: Source, columns: set[str] | None, terms: list[Term],
              types: dict[str, str], rows_needed: int | None) -> SourceEstimate:
    files = _sizes(con, lake, source)
    total = sum(files.values())
    if not source.parquet:  # read whole
        return SourceEstimate(source.name, False, len(files), len(files), total, total, 0, 0, 0, 0)
    kept = _partitions_kept(lake, source, list(files), terms, types) if source.partitioned else set(files)
    groups, footers = _footers(con, files, columns, terms, types) if files else ([], {})
    order = {path: index for index, path in enumerate(files)}  # as DuckDB's scan takes them
    read = sorted((group for group in groups if group[0] in kept and not group[4]),
                  key=lambda group: (order.get(group[0], len(order)), group[1]))
    if rows_needed is not None:  # the scan stops once it has them
        taken, covered = [], 0
        for group in read:
            if covered >= rows_needed:
                break
            taken.append(group)
            covered += group[2]
        read, kept = taken, {group[0] for group in taken}
    chunks = dict.fromkeys(kept, 0)
    for group in read:
        chunks[group[0]] += group[3]
    # A small file's tail, read for its footer, holds column chunks too: no file is read past its size.
    read_bytes = sum(min(files[path], chunks[path] + footers.get(path, 0)) for path in kept)
    return SourceEstimate(source.name, source.partitioned, len(files), len(kept), total, read_bytes,
                          len(groups), len(read), sum(group[2] for group in groups), sum(group[2] for group in read))


def _sizes(con, lake: Lake, source: Source) -> dict[str, int]:
    """The source's files and their sizes: a partitioned table's from the catalog's listing (kept a while on
    S3, one LIST), others' as DuckDB finds them (a HEAD a file on S3)."""
    if source.table and source.partitioned:
        folder = source.location[len(lake.root) + 1:].split("/", 1)[0]
        return {lake.path(relative): size for relative, size in lake.partition_files(con, folder) or []}
    return dict(con.execute(f"SELECT filename, size FROM read_blob({quote_literal(source.location)}) "
                            "ORDER BY filename").fetchall())


def _partitions_kept(lake: Lake, source: Source, paths: list[str], terms: list[Term],
                     types: dict[str, str]) -> set[str]:
    """The files whose partition values may pass every term on a partition key (its value is the
    file's min and max); all of them where no term is on a key."""
    values = [{key.lower(): value for key, value in partition_values(path[len(lake.root) + 1:])} for path in paths]
    names = sorted({key for value in values for key in value})
    on_keys = [term for term in terms if term.column in names]
    if not on_keys or not paths:
        return set(paths)
    rows = ", ".join("(" + ", ".join([str(index), *(_literal_or_null(value.get(key)) for key in names)]) + ")"
                     for index, value in enumerate(values))
    columns = ", ".join(f"k{number}" for number in range(len(names)))
    skips = []
    for term in on_keys:
        value = f"TRY_CAST(k{names.index(term.column)} AS {types[term.column]})"
        skips.append(_cannot_match(term, value, value, types[term.column]))
    skipped = " OR ".join(skips)
    with parser() as con:
        passing = con.execute(f"SELECT i FROM (VALUES {rows}) AS t(i, {columns}) "
                              f"WHERE NOT coalesce({skipped}, false)").fetchall()
    return {paths[index] for (index,) in passing}


def _literal_or_null(value: str | None) -> str:
    return "NULL" if value is None or value == "" or value.upper() == "NULL" else quote_literal(value)


def _footers(con, files: dict[str, int], columns: set[str] | None, terms: list[Term], types: dict[str, str]):
    """Each row group of the files as (file, id, rows, bytes of the columns read, ruled out by a term), and
    the bytes of each file DuckDB reads to find its footer."""
    listed = "[" + ", ".join(quote_literal(path) for path in files) + "]"
    column = "lower(split_part(path_in_schema, ', ', 1))"
    named = ("true" if columns is None else
             f"{column} IN ({', '.join(quote_literal(name) for name in sorted(columns)) or 'NULL'})")
    skips = []
    for term in terms:
        kind = types[term.column]
        # A max cut short (of long texts) is no upper bound; a min cut short still is a lower one.
        highest = f"CASE WHEN max_is_exact IS DISTINCT FROM false THEN TRY_CAST(stats_max_value AS {kind}) END"
        cannot = _cannot_match(term, f"TRY_CAST(stats_min_value AS {kind})", highest, kind)
        skips.append(f"({column} = {quote_literal(term.column)} AND coalesce({cannot}, false))")
    groups = con.execute(
        f"SELECT file_name, row_group_id, any_value(row_group_num_rows), "
        f"coalesce(sum(total_compressed_size) FILTER (WHERE {named}), 0), bool_or({' OR '.join(skips) or 'false'}) "
        f"FROM parquet_metadata({listed}) GROUP BY file_name, row_group_id").fetchall()
    footers = {path: min(files[path], max(FOOTER_READ_BYTES, int(size or 0) + 8)) for path, size in con.execute(
        f"SELECT file_name, footer_size FROM parquet_file_metadata({listed})").fetchall()}
    return groups, footers


def _cannot_match(term: Term, lowest: str, highest: str, kind: str) -> str:
    """SQL that is true where no value in [lowest, highest] can pass `term` (NULL where unknown)."""
    value = f"TRY_CAST({quote_literal(term.value)} AS {kind})"
    if term.op == "between":
        upper = f"TRY_CAST({quote_literal(term.upper or '')} AS {kind})"
        return f"({highest} < {value} OR {lowest} > {upper})"
    return {"=": f"({highest} < {value} OR {lowest} > {value})", "<": f"({lowest} >= {value})",
            "<=": f"({lowest} > {value})", ">": f"({highest} <= {value})", ">=": f"({highest} < {value})"}[term.op]
