"""The sandbox: a query reaches the lake and nothing else (lakelambda.sandbox, lakelambda.database).

Unit tests call check_query on an S3 lake and on a local folder; end-to-end
tests send events to the real LakeHandler over a moto S3 server on
127.0.0.1. Every request any test makes goes to 127.0.0.1 only: to show a
host is NOT reached, a listener of our own on 127.0.0.1 counts connections.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import socket
import threading

import duckdb
import pytest

from lakelambda import protocol, sandbox
from lakelambda.database import Settings, extension_path, open_database
from lakelambda.handler import LakeHandler
from lakelambda.lake import Lake
from lakelambda.errors import PermissionDenied
from lakelambda.sandbox import check_query
from servers import BUCKET, OTHER_BUCKET

S3_ROOT = f"s3://{BUCKET}"
TABLE = "taxi_2019_04"  # the taxi lake's dataset/taxi_2019_04.parquet
MARKERS = {
    "AWS_ACCESS_KEY_ID": "AKIAMARKERKEYID0042",
    "AWS_SECRET_ACCESS_KEY": "marker-secret-7f3c9e1d",
    "AWS_SESSION_TOKEN": "marker-session-token-b55a",
}


@pytest.fixture(params=["s3", "local"])
def root(request, tmp_path) -> str:
    return S3_ROOT if request.param == "s3" else str(tmp_path / "lake")


def refused(sql: str, root: str) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as caught:
        check_query(sql, root)
    return caught.value


def assert_points_at(sql: str, error: PermissionDenied, offender: str | None) -> None:
    """The position is a character offset at the first occurrence of `offender` (None: no position)."""
    if offender is None:
        assert error.position is None, error.message
    else:
        assert error.position == sql.index(offender), (error.position, error.message)


# --- what is allowed --------------------------------------------------------------

ALLOWED = [
    "SELECT 1",
    f"SELECT * FROM {TABLE} WHERE fare > $min ORDER BY fare DESC LIMIT 10",
    f"WITH big AS (SELECT * FROM {TABLE} WHERE fare > 10) SELECT b.*, z.name FROM big b JOIN zones z USING (zone)",
    f"SELECT vendor, count(*) FROM {TABLE} GROUP BY ALL HAVING count(*) > $n QUALIFY rank() OVER (ORDER BY vendor) < 3",
    "FROM read_parquet('{root}/partitioned/*/*.parquet', hive_partitioning = true, union_by_name = true)",
    "FROM read_parquet('{root}/partitioned/**/*.parquet', filename = true)",
    "FROM '{root}/dataset/taxi_2019_04.parquet'",
    'FROM "{root}/dataset/taxi_2019_04.parquet" LIMIT 5',
    "FROM read_parquet(['{root}/dataset/a.parquet', '{root}/dashboard/b.parquet'])",
    "FROM glob('{root}/dataset/*')",
    "FROM read_csv('{root}/raw/x.csv', header = true, delim = ';', columns = {{'a': 'INT'}}, ignore_errors = true)",
    "FROM read_json('{root}/raw/x.json', format => 'array')",
    "FROM parquet_metadata('{root}/dataset/taxi_2019_04.parquet')",
    "FROM parquet_schema('{root}/dataset/taxi_2019_04.parquet')",
    "SELECT * FROM read_text('{root}/notes/readme.txt')",
    f"DESCRIBE {TABLE}",
    f"SUMMARIZE {TABLE}",
    f"SUMMARIZE SELECT fare FROM {TABLE}",
    "DESCRIBE '{root}/dataset/taxi_2019_04.parquet'",
    "FROM range(10) t(i) JOIN generate_series(1, 3) g(j) ON i = j",
    "SELECT * FROM unnest([1, 2, 3])",
    "SELECT list_transform([1, 2], x -> x + 1), [x FOR x IN [1, 2] IF x > 1]",
    f"PIVOT {TABLE} ON vendor IN ('a', 'b') USING sum(fare)",
    f"FROM {TABLE} PIVOT (sum(fare) FOR vendor IN ('a', 'b'))",
    "SELECT current_date, now(), version(), current_database(), typeof(1)",
    "SELECT $a::INT + $b, 'current_setting(''x'')' AS just_text",
    f"SELECT * FROM {TABLE} USING SAMPLE 10%",
    'SELECT * FROM tables JOIN "my-table" USING (id)',  # lake tables that happen to have such names
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT list_aggr([1, 2], 'sum')",
    "FROM 'dataset/taxi_2019_04.parquet'",  # lake-relative paths
    'FROM "dataset/taxi_2019_04.parquet" LIMIT 5',
    "FROM read_parquet('partitioned/*/*.parquet', hive_partitioning = true)",
    "FROM read_parquet(['dataset/a.parquet', '{root}/dashboard/b.parquet'])",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_queries_over_the_lake_pass(sql, root):
    check_query(sql.format(root=root), root)


# --- what is refused ---------------------------------------------------------------
# (sql, offender): `offender` is the text the error's position must point at.

HOSTILE_PATHS = [
    ("FROM read_parquet('{root}/../other/x.parquet')", "'{root}/../"),
    ("FROM read_parquet('{root}/dataset/../../other/x.parquet')", "'{root}/dataset/../"),
    ("FROM read_text('{root}/x?s3_endpoint=127.0.0.1:9')", "'{root}/x?"),
    ("FROM read_text('{root}/dataset/x.csv#frag')", "'{root}/dataset"),
    ("FROM read_text('{root}/dataset/%2e%2e/_lakemagic/x')", "'{root}/dataset"),
    ("FROM read_text('{root}/dataset\\..\\x')", "'{root}/dataset"),
    ("FROM read_text('{root}/dataset//x')", "'{root}/dataset"),
    ("FROM read_text('{root}/./_lakemagic/x')", "'{root}/./"),
    ("FROM read_text('{root}/')", "'{root}/'"),
    ("FROM read_text('{root}')", "'{root}'"),
    ("FROM read_parquet('{root}/_lakemagic/results/*.parquet')", "'{root}/_lakemagic"),
    ("FROM read_parquet('{root}/*/results/*')", "'{root}/*"),
    ("FROM read_parquet('{root}/**/*.parquet')", "'{root}/**"),
    ("FROM read_parquet('{root}/[_]lakemagic/results/*')", "'{root}/[_]"),
    ("FROM read_parquet('{root}/.hidden/x.parquet')", "'{root}/.hidden"),
    ("FROM glob('{root}/_lakemagic/**')", "'{root}/_lakemagic"),
    ("FROM read_csv('{root}2/x.csv')", "'{root}2"),  # the prefix trick: s3://lake2, /tmp/.../lake2
    ("FROM read_csv('S3://lake/x.csv')", "'S3://"),
    ("FROM read_csv('s3://user@lake/x.csv')", "'s3://user@"),
    ("FROM read_text('http://127.0.0.1:9/x')", "'http://"),
    ("FROM read_text('https://127.0.0.1:9/x')", "'https://"),
    ("FROM read_text('hf://datasets/x/y')", "'hf://"),
    ("FROM read_text('file:///etc/passwd')", "'file://"),
    ("FROM read_text('/etc/passwd')", "'/etc/passwd'"),
    ("FROM '/etc/passwd'", "'/etc/passwd'"),
    ('FROM "/proc/self/environ"', '"/proc'),
    (f"SELECT * FROM 's3://{OTHER_BUCKET}/secret.csv'", "'s3://"),
    (f"SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv')", "'s3://"),
    ("FROM read_text('~/x')", "'~/x'"),
    ("FROM read_text('./x')", "'./x'"),
    ("DESCRIBE '/etc/passwd'", "'/etc/passwd'"),
    (f"SELECT * FROM {TABLE} WHERE EXISTS (FROM read_text('/etc/passwd'))", "'/etc/passwd'"),
    (f"SELECT * FROM {TABLE} UNION ALL FROM '/etc/passwd'", "'/etc/passwd'"),
    (f"SELECT * FROM {TABLE} t JOIN read_text('/etc/passwd') p ON true", "'/etc/passwd'"),
    ("FROM read_text(['{root}/dataset/a.txt', '/etc/passwd'])", "'/etc/passwd'"),
    ("FROM read_text(/* a comment */ '/etc/passwd')", "'/etc/passwd'"),
]

HOSTILE_ARGUMENTS = [  # paths must be literals; reader options come from an allow-list
    ("FROM read_csv('{root}/dataset/' || 'x.csv')", "'{root}/dataset/' ||"),
    ("FROM read_csv(concat('{root}/', '_lakemagic/x.csv'))", "concat("),
    ("FROM read_csv($path)", "read_csv("),
    ("FROM read_csv(['{root}/dataset/x.csv', $path])", "read_csv("),
    ("FROM read_csv('{root}/dataset/x.csv'::VARCHAR)", "'{root}/dataset/x.csv'::"),
    (f"SELECT * FROM {TABLE} t, read_text(t.path)", "t.path"),
    ("FROM read_text(NULL)", "NULL"),
    ("FROM read_text((SELECT '/etc/passwd'))", "(SELECT '/etc"),
    ("FROM read_csv('{root}/dataset/x.csv', '/etc/passwd')", "read_csv("),
    ("FROM read_csv('{root}/dataset/x.csv', store_rejects = true)", "store_rejects"),
    ("FROM read_csv('{root}/dataset/x.csv', rejects_table = 'mine', header = true)", "rejects_table"),
    ("FROM read_csv('{root}/dataset/x.csv', store_rejects => true)", "true)"),
    ("FROM read_csv('{root}/dataset/x.csv', store_rejects := true)", "true)"),
    ("FROM read_parquet('{root}/dataset/x.parquet', encryption_config = {{footer_key: 'k'}})", "encryption_config"),
    ("FROM read_csv('{root}/dataset/x.csv', buffer_size = 1e12::UBIGINT)", "buffer_size"),
]

HOSTILE_FUNCTIONS = [
    ("SELECT current_setting('s3_secret_access_key')", "current_setting"),
    (f"SELECT fare FROM {TABLE} WHERE current_setting('s3_secret_access_key') <> ''", "current_setting"),
    (f"SELECT fare FROM {TABLE} ORDER BY current_setting('s3_secret_access_key')", "current_setting"),
    ("WITH c AS (SELECT current_setting('s3_secret_access_key') AS s) SELECT * FROM c", "current_setting"),
    (f"SELECT (SELECT current_setting('s3_access_key_id')) FROM {TABLE}", "current_setting"),
    ("SELECT list_transform(['a'], x -> current_setting(x))", "current_setting"),
    (f"SELECT fare FROM {TABLE} QUALIFY row_number() OVER (ORDER BY current_setting('x')) = 1", "current_setting"),
    (f"SELECT sum(fare) OVER (PARTITION BY current_setting('x')) FROM {TABLE}", "current_setting"),
    (f"SELECT vendor FROM {TABLE} GROUP BY vendor HAVING max(current_setting('x')) > ''", "current_setting"),
    (f"SELECT count(*) FILTER (WHERE current_setting('x') = '') FROM {TABLE}", "current_setting"),
    (f"SELECT * FROM {TABLE} LIMIT length(current_setting('x'))", "current_setting"),
    ("VALUES (current_setting('x'))", "current_setting"),
    ("SELECT CASE WHEN true THEN current_setting('x') END", "current_setting"),
    ("FROM range(length(current_setting('x')))", "current_setting"),
    ("FROM read_csv('{root}/dataset/x.csv', header = (current_setting('x') = ''))", "current_setting"),
    ("DESCRIBE SELECT current_setting('x')", "current_setting"),
    (f"FROM {TABLE} PIVOT (max(current_setting('x')) FOR vendor IN ('a'))", "current_setting"),
    (f"SELECT * FROM {TABLE} a JOIN {TABLE} b ON current_setting('x') = ''", "current_setting"),
    ("SELECT 1 UNION ALL SELECT current_setting('x')", "current_setting"),
    ("SELECT * REPLACE (current_setting('x') AS a) FROM (SELECT 1 AS a)", "current_setting"),
    ("SELECT current_setting/* a comment */('s3_secret_access_key')", "current_setting"),
    ("SELECT current_setting -- a comment\n('s3_secret_access_key')", "current_setting"),
    ("SELECT CURRENT_SETTING('x')", "CURRENT_SETTING"),
    ('SELECT "Current_Setting"(\'x\')', '"Current_Setting"'),
    ("SELECT main.current_setting('x')", "main."),
    ("SELECT system.main.current_setting('x')", "system.main."),
    ('SELECT "main"."current_setting"(\'x\')', '"main"'),
    ("SELECT getvariable('x')", "getvariable"),
    ("SELECT which_secret('s3://lake/x', 's3')", "which_secret"),
    ("SELECT current_query()", "current_query"),
    ("SELECT nextval('s')", "nextval"),
    ("SELECT currval('s')", "currval"),
    ("SELECT setseed(0.5)", "setseed"),
    ("SELECT write_log('x')", "write_log"),
    ("SELECT sleep_ms(100000)", "sleep_ms"),
    ("SELECT pg_sleep(100)", "pg_sleep"),
    ("SELECT json_serialize_plan('SELECT * FROM read_text(''/etc/passwd'')')", "json_serialize_plan"),
    ("SELECT pg_get_viewdef(1)", "pg_get_viewdef"),
    ("SELECT get_block_size('memory')", "get_block_size"),
    ('SELECT "duckdb_secrets"()', '"duckdb_secrets"'),
    ("SELECT ｃurrent_setting('x')", "ｃurrent_setting"),  # fullwidth c: not ASCII, so not a DuckDB function
    ('SELECT "current_\u212aetting"(\'x\')', '"current_'),  # KELVIN SIGN
]

HOSTILE_TABLE_FUNCTIONS = [
    ('SELECT * FROM "duckdb_secrets"()', '"duckdb_secrets"'),
    ("FROM DuckDB_Secrets()", "DuckDB_Secrets"),
    ("FROM duckdb_secrets(redact := false)", "duckdb_secrets"),
    ("FROM duckdb_settings()", "duckdb_settings"),
    ("FROM duckdb_logs()", "duckdb_logs"),
    ("FROM duckdb_logs_parsed('QueryLog')", "duckdb_logs_parsed"),
    ("FROM duckdb_variables()", "duckdb_variables"),
    ("FROM duckdb_extensions()", "duckdb_extensions"),
    ("FROM main.duckdb_settings()", "main."),
    ("FROM query('SELECT 42')", "query("),
    ("FROM query('SELECT * FROM duck' || 'db_secrets()')", "query("),
    ("FROM query_table('pg_settings')", "query_table"),
    ("FROM enable_logging()", "enable_logging"),
    ("FROM enable_logging(storage_path = '/tmp/x')", "enable_logging"),
    ("FROM enable_logging(storage_normalize = false)", "enable_logging"),
    ("FROM disable_logging()", "disable_logging"),
    ("FROM truncate_duckdb_logs()", "truncate_duckdb_logs"),
    ("FROM which_secret('s3://lake/x', 's3')", "which_secret"),
    ("FROM pragma_show('x')", "pragma_show"),
    ("FROM pragma_database_size()", "pragma_database_size"),
    ("FROM checkpoint()", "checkpoint"),
    ("FROM json_execute_serialized_sql('x')", "json_execute_serialized_sql"),
    (f"FROM histogram({TABLE}, fare)", "histogram"),
    ("FROM read_duckdb('{root}/dataset/x.duckdb')", "read_duckdb"),
    ("FROM arrow_scan(1, 2, 3)", "arrow_scan"),
    ("FROM test_all_types()", "test_all_types"),
    ("SELECT * FROM ｒead_text('/etc/passwd')", "ｒead_text"),  # fullwidth r: not an allowed name
    (f"SELECT * FROM {TABLE} t, LATERAL (FROM duckdb_settings()) s", "duckdb_settings"),
    ("SELECT (FROM duckdb_secrets())", "duckdb_secrets"),
]

HOSTILE_TABLES = [
    ("FROM pg_settings", "pg_settings"),
    ('FROM "PG_SETTINGS"', '"PG_SETTINGS"'),
    ("FROM sqlite_master", "sqlite_master"),
    ("FROM duckdb_tables", "duckdb_tables"),
    ("FROM information_schema.tables", "information_schema"),
    ("FROM pg_catalog.pg_settings", "pg_catalog"),
    ("FROM system.main.duckdb_views", "system"),
    (f"FROM temp.main.{TABLE}", "temp"),
    (f"FROM memory.{TABLE}", "memory"),
    ("DESCRIBE pg_settings", "pg_settings"),
    ("SUMMARIZE pg_settings", "pg_settings"),
    (f"SELECT * FROM {TABLE} WHERE fare IN (SELECT 1 FROM pg_settings)", "pg_settings"),
]

HOSTILE_STATEMENTS = [  # SHOW forms without a query show the engine's catalog, never the lake
    ("SHOW TABLES", None),
    ("SHOW ALL TABLES", None),
    ("SHOW DATABASES", None),
    ("SHOW SCHEMAS", None),
    ("SHOW VARIABLES", None),
    ("SHOW TABLES FROM information_schema", None),
    (f"PIVOT {TABLE} ON vendor USING sum(fare)", None),  # no IN list: DuckDB cannot serialize it, so unchecked
]

HOSTILE = (HOSTILE_PATHS + HOSTILE_ARGUMENTS + HOSTILE_FUNCTIONS + HOSTILE_TABLE_FUNCTIONS + HOSTILE_TABLES
           + HOSTILE_STATEMENTS)


@pytest.mark.parametrize("sql, offender", HOSTILE)
def test_hostile_queries_are_refused_at_the_offender(sql, offender, root):
    sql = sql.format(root=root)
    error = refused(sql, root)
    assert error.type_name == "PermissionException"
    assert error.message
    assert_points_at(sql, error, offender.format(root=root) if offender else None)


# Each hostile full path of HOSTILE_PATHS written relative to the lake: refused as the full form is.
RELATIVE_HOSTILE_PATHS = [
    "../other/x.parquet", "dataset/../../etc/passwd", "dataset/x?s3_endpoint=127.0.0.1:9", "dataset/x.csv#frag",
    "dataset/%2e%2e/_lakemagic/x", "dataset\\..\\x", "dataset//x", "./_lakemagic/x", "dataset/", "_lakemagic/results/*.parquet",
    "*/results/*", "**/*.parquet", "[_]lakemagic/results/*", ".hidden/x.parquet",
]


@pytest.mark.parametrize("path", RELATIVE_HOSTILE_PATHS)
def test_hostile_lake_relative_paths_are_refused_as_their_full_forms(path, root):
    for sql in (f"FROM read_text('{path}')", f"FROM '{path}'"):
        full = refused(sql.replace(path, f"{root}/{path}"), root)
        relative = refused(sql, root)
        assert relative.message == full.message.replace(repr(f"{root}/{path}"), repr(path))
        assert relative.position == sql.index("'")


def test_a_lake_relative_path_runs_as_its_full_path(root):
    """What runs names the lake's files in full, at the places the parser gives, and nothing else changes."""
    sql = ("SELECT 'dataset/x.parquet' AS label, * FROM read_parquet(['dataset/é.parquet', 'dataset/it''s.parquet']) "
           "JOIN \"dataset/b.parquet\" USING (id) JOIN 'dataset/b.parquet' c USING (id)")
    assert check_query(sql, root).text == sql.replace("['dataset/é", f"['{root}/dataset/é").replace(
        "'dataset/it", f"'{root}/dataset/it").replace('"dataset/b', f'"{root}/dataset/b').replace(
        "JOIN 'dataset/b", f"JOIN '{root}/dataset/b")
    full = f"FROM '{root}/dataset/taxi_2019_04.parquet'"
    assert check_query(full, root) == (full, ())


def test_positions_in_the_query_as_it_runs_map_to_the_query_as_written(root):
    sql = "SELECT x FROM 'dataset/a.parquet' JOIN 'dataset/b.parquet' USING (y) WHERE z"
    checked = check_query(sql, root)
    for word in ("SELECT", "JOIN", "USING", "z"):
        assert checked.position_as_written(checked.text.rindex(word)) == sql.rindex(word)
    assert checked.position_as_written(checked.text.index("/dataset/b")) == sql.index("'dataset/b")
    assert checked.position_as_written(None) is None


def test_a_lake_relative_path_must_be_one_plain_string(root):
    error = refused("FROM read_text(E'dataset/x')", root)
    assert "one quoted string" in error.message


def test_a_query_that_may_read_no_file_refuses_relative_paths_too():
    assert "no file" in refused("FROM read_text('dataset/x')", None).message


def test_positions_count_characters_not_bytes(root):
    sql = "SELECT 'ééé' AS a, current_setting('x')"
    assert refused(sql, root).position == sql.index("current_setting")
    sql = "SELECT '日本' AS a FROM read_text('/etc/passwd')"
    assert refused(sql, root).position == sql.index("'/etc")


def test_refusals_name_the_offender(root):
    assert "current_setting" in refused("SELECT current_setting('x')", root).message
    assert "query" in refused("FROM query('SELECT 1')", root).message
    assert "/etc/passwd" in refused("FROM read_text('/etc/passwd')", root).message
    assert "store_rejects" in refused(f"FROM read_csv('{root}/d/x.csv', store_rejects = true)", root).message
    assert "pg_settings" in refused("FROM pg_settings", root).message


def test_the_lake_kinds_do_not_mix(tmp_path):
    local = str(tmp_path / "lake")
    refused(f"FROM read_text('{S3_ROOT}/dataset/x')", local)
    refused(f"FROM read_text('{local}/dataset/x')", S3_ROOT)
    check_query("FROM read_text('s3://lake/prefix/dataset/x')", "s3://lake/prefix")
    refused("FROM read_text('s3://lake/dataset/x')", "s3://lake/prefix")
    refused("FROM read_text('s3://lake/prefix/_lakemagic/results/x')", "s3://lake/prefix")
    refused("FROM read_text('s3://lake/prefixed/x')", "s3://lake/prefix")


def test_unicode_look_alike_names_are_harmless_where_they_pass(root):
    """A look-alike of a built-in view's name passes the check, and DuckDB (which folds ASCII case
    only) finds no such view; look-alike function names are refused outright."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ('"pg_sett\u0456ngs"', '"PG_SETT\u0130NGS"', '"sqlite_m\u0430ster"', '"ｐｇ_settings"'):
        check_query(f"SELECT * FROM {name}", root)
        with pytest.raises(duckdb.CatalogException):
            con.execute(f"SELECT * FROM {name}")
    con.execute("SELECT * FROM pg_settings")  # while the real name does reach the view
    refused('SELECT * FROM "duckdb_tables\u200b"', root)  # not a plain name: read as a path, outside the lake
    refused("SELECT current_settin\u0261('x')", root)
    refused("FROM read_tex\u0074\u0301('/etc/passwd')", root)


def test_a_cte_named_like_a_builtin_view_is_refused_too(root):
    sql = "WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings"
    assert refused(sql, root).position == sql.rindex("pg_settings")


def test_information_schema_names_unqualified_reach_no_view():
    """information_schema is not on the search path, so its view names are free for lake tables."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("tables", "columns", "views", "schemata"):
        assert name not in sandbox.BUILTIN_VIEWS
        with pytest.raises(duckdb.CatalogException):
            con.execute(f"SELECT * FROM {name}")


@pytest.mark.parametrize("extensions", [(), ("httpfs", "avro", "iceberg", "delta")], ids=["none", "all"])
def test_the_builtin_views_are_duckdbs_own(extensions):
    """The list the walk refuses is every internal view of this DuckDB outside information_schema, with or
    without the package's extensions: an upgrade that adds one fails here until the list has it."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in extensions:
        con.execute(f"LOAD '{extension_path(name)}'")
    views = con.execute("SELECT DISTINCT lower(view_name) FROM duckdb_views() "
                        "WHERE internal AND schema_name <> 'information_schema'").fetchall()
    assert sandbox.BUILTIN_VIEWS == {name for (name,) in views}
    assert {"pg_settings", "duckdb_logs", "sqlite_master", "pragma_database_list"} <= sandbox.BUILTIN_VIEWS


def test_nodes_the_walk_does_not_know_are_refused():
    walk = sandbox._Walk("SELECT 1", S3_ROOT)
    with pytest.raises(PermissionDenied):
        walk.visit({"class": "SOMETHING_NEW", "type": "X", "alias": "", "query_location": 0})
    with pytest.raises(PermissionDenied):
        walk.visit({"type": "COLUMN_DATA", "alias": "", "sample": None, "query_location": 0})
    with pytest.raises(PermissionDenied):
        walk.visit({"type": "NEW_NODE", "modifiers": [], "cte_map": {"map": []}})


def test_check_query_is_safe_from_several_threads(root):
    good = f"SELECT * FROM read_parquet('{root}/dataset/x.parquet')"
    bad = "SELECT current_setting('x')"

    def check(index: int) -> bool:
        try:
            check_query(good if index % 2 else bad, root)
            return True
        except PermissionDenied:
            return False

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(check, range(200)))
    assert outcomes == [index % 2 == 1 for index in range(200)]


# --- the function inventory -----------------------------------------------------------
# Every function of the running DuckDB (with httpfs) is classified. A DuckDB upgrade that adds
# functions fails here until each new one is read and put in REVIEWED_CALLABLE (pure: computes
# from its arguments) or in sandbox.DENIED_FUNCTIONS.

REVIEWED_CALLABLE = frozenset("""
!__postfix !~~ !~~* % & && * ** + - ->> / // <-> << <=> <@ >> @ @> ^ ^@ abs acos acosh add age aggregate ago
alias any_value apply approx_count_distinct approx_quantile approx_top_k arbitrary arg_max arg_max_null
arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg array_aggr array_aggregate
array_append array_apply array_cat array_concat array_contains array_cosine_distance array_cosine_similarity
array_cross_product array_distance array_distinct array_dot_product array_extract array_filter array_grade_up
array_has array_has_all array_has_any array_indexof array_inner_product array_intersect array_length
array_negative_dot_product array_negative_inner_product array_pop_back array_pop_front array_position
array_prepend array_push_back array_push_front array_reduce array_resize array_reverse array_reverse_sort
array_select array_slice array_sort array_to_json array_to_string array_to_string_comma_default
array_transform array_unique array_value array_where array_zip ascii asin asinh atan atan2 atanh avg bar
base64 bin bit_and bit_count bit_length bit_or bit_position bit_xor bitstring bitstring_agg bool_and bool_or
can_cast_implicitly cardinality cast_to_type cbrt ceil ceiling century char_length character_length chr
col_description combine concat concat_ws constant_or_null contains corr cos cosh cot count count_if count_star
countif covar_pop covar_samp create_sort_key cume_dist current_catalog current_database current_date
current_localtime current_localtimestamp current_role current_schema current_user damerau_levenshtein date_add
date_diff date_part date_sub date_trunc datediff datepart datesub datetrunc day dayname dayofmonth dayofweek
dayofyear days_in_month decade decode degrees dense_rank divide editdist3 element_at encode ends_with entropy
enum_code enum_first enum_last enum_range enum_range_boundary epoch epoch_ms epoch_ns epoch_us equi_width_bins
era error even exp factorial favg fdiv fill filter finalize first first_value flatten floor fmod format
formatReadableDecimalSize formatReadableSize format_bytes format_pg_type from_base64 from_binary from_hex
from_json from_json_strict fsum gamma gcd gen_random_uuid generate_series generate_subscripts geomean
geometric_mean get_bit get_current_time get_current_timestamp get_type grade_up greatest
greatest_common_divisor group_concat hamming has_any_column_privilege has_column_privilege
has_database_privilege has_foreign_data_wrapper_privilege has_function_privilege has_language_privilege
has_schema_privilege has_sequence_privilege has_server_privilege has_table_privilege has_tablespace_privilege
hash hex histogram histogram_exact hour icu_sort_key ilike_escape inet_client_addr inet_client_port
inet_server_addr inet_server_port instr is_histogram_other_bin isfinite isinf isnan isodow isoyear jaccard
jaro_similarity jaro_winkler_similarity json json_array json_array_length json_contains json_deserialize_sql
json_exists json_extract json_extract_path json_extract_path_text json_extract_string json_group_array
json_group_object json_group_structure json_keys json_merge_patch json_object json_pretty json_quote
json_serialize_sql json_structure json_transform json_transform_strict json_type json_valid json_value julian
kahan_sum kurtosis kurtosis_pop lag last last_day last_value lcase lcm lead least least_common_multiple left
left_grapheme len length length_grapheme levenshtein lgamma like_escape list list_aggr list_aggregate
list_any_value list_append list_apply list_approx_count_distinct list_avg list_bit_and list_bit_or
list_bit_xor list_bool_and list_bool_or list_cat list_concat list_contains list_cosine_distance
list_cosine_similarity list_count list_distance list_distinct list_dot_product list_element list_entropy
list_extract list_filter list_first list_grade_up list_has list_has_all list_has_any list_histogram
list_indexof list_inner_product list_intersect list_kurtosis list_kurtosis_pop list_last list_mad list_max
list_median list_min list_mode list_negative_dot_product list_negative_inner_product list_pack list_position
list_prepend list_product list_reduce list_resize list_reverse list_reverse_sort list_select list_sem
list_skewness list_slice list_sort list_stddev_pop list_stddev_samp list_string_agg list_sum list_transform
list_unique list_value list_var_pop list_var_samp list_where list_zip listagg ln log log10 log2 lower lpad
ltrim mad make_date make_time make_timestamp make_timestamp_ms make_timestamp_ns make_timestamptz make_type
map map_concat map_contains map_contains_entry map_contains_value map_entries map_extract map_extract_value
map_from_entries map_keys map_to_pg_oid map_values max max_by md5 md5_number md5_number_lower md5_number_upper
mean median microsecond millennium millisecond min min_by minute mismatches mod mode month monthname multiply
nanosecond nextafter nfc_normalize normalized_interval not_ilike_escape not_like_escape now nth_value ntile
nullif obj_description octet_length ord parse_dirname parse_dirpath parse_filename parse_formatted_bytes
parse_path percent_rank pg_collation_is_visible pg_conf_load_time pg_conversion_is_visible
pg_function_is_visible pg_get_expr pg_has_role pg_is_other_temp_schema pg_my_temp_schema pg_opclass_is_visible
pg_operator_is_visible pg_opfamily_is_visible pg_postmaster_start_time pg_size_pretty pg_table_is_visible
pg_ts_config_is_visible pg_ts_dict_is_visible pg_ts_parser_is_visible pg_ts_template_is_visible
pg_type_is_visible pg_typeof pi position pow power prefix printf product quantile quantile_cont quantile_disc
quarter radians random range rank rank_dense reduce regexp_escape regexp_extract regexp_extract_all
regexp_full_match regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regr_avgx
regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy remap_struct repeat replace
replace_type reservoir_quantile reverse right right_grapheme round round_even roundbankers row row_number
row_to_json rpad rtrim second sem session_user set_bit sha1 sha256 shobj_description sign signbit sin sinh
skewness split split_part sqrt st_asbinary st_astext st_aswkb st_aswkt st_crs st_geomfromwkb
st_intersects_extent st_setcrs starts_with stats stddev stddev_pop stddev_samp str_split str_split_regex
strftime string_agg string_split string_split_regex string_to_array strip_accents strlen strpos strptime
struct_concat struct_contains struct_extract struct_extract_at struct_has struct_indexof struct_insert
struct_keys struct_pack struct_position struct_update struct_values substr substring substring_grapheme
subtract suffix sum sum_no_overflow sumkahan switch tan tanh time_bucket timetz_byte_comparable timezone
timezone_hour timezone_minute to_base to_base64 to_binary to_centuries to_days to_decades to_hex to_hours
to_json to_microseconds to_millennia to_milliseconds to_minutes to_months to_quarters to_seconds to_timestamp
to_weeks to_years today transaction_timestamp translate trim trunc try_strptime typeof ucase unbin unhex
unicode union_extract union_tag union_value unpivot_list upper url_decode url_encode user uuid
uuid_extract_timestamp uuid_extract_version uuidv4 uuidv7 var_pop var_samp variance variant_bytes_to_variant
variant_extract variant_normalize variant_to_parquet_variant variant_typeof vector_type version wavg week
weekday weekofyear weighted_avg xor year yearweek | || ~ ~~ ~~* ~~~
""".split())
# Whole families of pure functions: collations and the optimizer's internal compression casts.
REVIEWED_PREFIXES = ("icu_collate_", "__internal_")
# Table functions and table macros refused, each for a reason given in sandbox.py.
REFUSED_TABLE_FUNCTIONS = frozenset("""
arrow_scan arrow_scan_dumb checkpoint disable_logging disable_profiling duckdb_approx_database_count duckdb_columns
duckdb_connection_count duckdb_constraints duckdb_coordinate_systems duckdb_databases duckdb_dependencies
duckdb_extensions duckdb_external_file_cache duckdb_functions duckdb_indexes duckdb_keywords duckdb_log_contexts
duckdb_logs duckdb_logs_parsed duckdb_memory duckdb_optimizers duckdb_prepared_statements duckdb_profiling_settings
duckdb_schemas duckdb_secret_types duckdb_secrets duckdb_sequences duckdb_settings duckdb_table_sample duckdb_tables
duckdb_temporary_files duckdb_types duckdb_variables duckdb_views enable_logging enable_profiling force_checkpoint
histogram histogram_values json_execute_serialized_sql pandas_scan parquet_bloom_probe pragma_collations
pragma_database_size pragma_metadata_info pragma_platform pragma_show pragma_storage_info pragma_table_info
pragma_user_agent pragma_version python_map_function query query_table read_duckdb seq_scan summary test_all_types
test_vector_types truncate_duckdb_logs which_secret
""".split())


@pytest.fixture(scope="module")
def functions() -> dict[str, set[str]]:
    """Every function name of DuckDB with httpfs loaded, and its kinds (scalar, aggregate, macro, table, ...)."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{extension_path('httpfs')}'")
    rows = con.execute("SELECT function_name, list(DISTINCT function_type) FROM duckdb_functions() GROUP BY 1").fetchall()
    return {name: set(kinds) for name, kinds in rows}


def _denied(name: str) -> bool:
    return name.lower() in sandbox.DENIED_FUNCTIONS or name.lower().startswith(sandbox.DENIED_PREFIXES)


def test_every_callable_function_is_reviewed_or_denied(functions):
    unreviewed = sorted(name for name, kinds in functions.items()
                        if kinds & {"scalar", "aggregate", "macro"} and not _denied(name)
                        and name not in REVIEWED_CALLABLE and not name.startswith(REVIEWED_PREFIXES))
    assert not unreviewed, f"classify these functions (pure, or add to sandbox.DENIED_FUNCTIONS): {unreviewed}"


def test_every_table_function_is_allowed_or_refused_on_purpose(functions):
    tables = {name for name, kinds in functions.items() if kinds & {"table", "table_macro"}}
    allowed = sandbox.READERS | sandbox.COMPUTING
    assert allowed <= tables, f"allowed names that are not table functions: {sorted(allowed - tables)}"
    unclassified = sorted(tables - allowed - REFUSED_TABLE_FUNCTIONS)
    assert not unclassified, f"classify these table functions: {unclassified}"
    assert not allowed & REFUSED_TABLE_FUNCTIONS


def test_every_denied_function_that_exists_is_refused_by_name(functions, root):
    present = sorted(name for name in functions if _denied(name) and functions[name] & {"scalar", "macro"})
    assert "current_setting" in present and "getvariable" in present
    for name in present:
        sql = f"SELECT 1 AS a ORDER BY {name}()"
        assert refused(sql, root).position == sql.index(name)


def test_every_refused_table_function_is_refused(root):
    for name in sorted(REFUSED_TABLE_FUNCTIONS):
        sql = f"SELECT * FROM {name}()"
        assert refused(sql, root).position == sql.index(name), name


# --- the database's own defences (lakelambda.database) ----------------------------------


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it is offered, then closes them."""

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.close()


def test_the_listener_counts_connections(listener):
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5):
        pass
    for _ in range(100):
        if listener.connections:
            break
        threading.Event().wait(0.02)
    assert listener.connections == 1


@pytest.fixture(scope="module")
def marker_environment(s3_lake, moto_endpoint) -> dict:
    """The execution role's credentials, as distinctive markers, and the S3 server on 127.0.0.1."""
    return dict(MARKERS, AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=moto_endpoint)


@contextlib.contextmanager
def process_environment(environment: dict):
    """`environment` in os.environ for a while: httpfs copies AWS_* from there when it loads."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def marker_database(marker_environment, tmp_path_factory):
    scratch = str(tmp_path_factory.mktemp("marker-db"))
    with process_environment(marker_environment):
        con = open_database(Lake(S3_ROOT), Settings(scratch=scratch, environment=marker_environment))
    yield con
    con.close()


@pytest.fixture(scope="module")
def handler(marker_environment, tmp_path_factory):
    """The real handler over the S3 lake, its secret made from the marker credentials; every result stored."""
    scratch = str(tmp_path_factory.mktemp("marker-handler"))
    with process_environment(marker_environment):
        return LakeHandler(S3_ROOT, Settings(scratch=scratch, environment=marker_environment, inline_result_bytes=0))


def test_httpfs_copied_the_environment_credentials_and_they_are_blanked(marker_environment, marker_database):
    # The threat is real: loading httpfs with AWS_* set copies them into the s3_* settings.
    with process_environment(marker_environment):
        plain = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        plain.execute(f"LOAD '{extension_path('httpfs')}'")
    assert plain.execute("SELECT current_setting('s3_secret_access_key')").fetchone()[0] == MARKERS["AWS_SECRET_ACCESS_KEY"]
    plain.close()
    with marker_database.cursor() as cursor:  # what every call's cursor sees
        for name in ("s3_access_key_id", "s3_secret_access_key", "s3_session_token"):
            assert cursor.execute(f"SELECT current_setting('{name}')").fetchone()[0] == "", name
        everything = json.dumps(cursor.execute("SELECT * FROM duckdb_settings()").fetchall(), default=str)
    for marker in MARKERS.values():
        assert marker not in everything


def test_s3_reads_still_work_through_the_secret(marker_database):
    with marker_database.cursor() as cursor:
        rows = cursor.execute(f"SELECT count(*) FROM read_parquet('{S3_ROOT}/dataset/{TABLE}.parquet')").fetchone()[0]
    assert rows == 20_000


def test_the_database_settings_before_the_lock(marker_database):
    with marker_database.cursor() as cursor:
        def setting(name):
            return str(cursor.execute(f"SELECT current_setting('{name}')").fetchone()[0]).lower()

        assert setting("errors_as_json") == "true"
        assert setting("enable_logging") in ("false", "0")
        assert setting("python_enable_replacements") == "false"
        assert setting("http_timeout") == "30"
        assert setting("http_retries") == "2"
        assert setting("lock_configuration") == "true"
        with pytest.raises(duckdb.Error):
            cursor.execute("SET s3_secret_access_key = 'x'")
        with pytest.raises(duckdb.Error):
            cursor.execute("SET GLOBAL enable_logging = true")


def test_a_local_lake_database_has_json_errors_and_no_logging(tmp_path):
    os.makedirs(tmp_path / "lake")
    con = open_database(Lake(str(tmp_path / "lake")), Settings(scratch=str(tmp_path / "scratch")))
    with con.cursor() as cursor:
        assert str(cursor.execute("SELECT current_setting('errors_as_json')").fetchone()[0]).lower() == "true"
        assert str(cursor.execute("SELECT current_setting('enable_logging')").fetchone()[0]).lower() in ("false", "0")
    con.close()


def test_plain_urls_are_switched_off_in_the_database_itself(marker_database, listener):
    """Even a query that bypassed the sandbox could not fetch an http:// URL."""
    with marker_database.cursor() as cursor:
        for url in (f"http://127.0.0.1:{listener.port}/x", f"https://127.0.0.1:{listener.port}/x"):
            with pytest.raises(duckdb.Error):
                cursor.execute(f"SELECT * FROM read_text('{url}')").fetchall()
    assert listener.connections == 0


def test_without_the_sandbox_a_query_string_does_reach_another_host(marker_database, listener):
    """Why check_query exists: DuckDB's settings alone let `?s3_endpoint=` send a signed request
    elsewhere (here to our own listener on 127.0.0.1). The handler's answers below must never do this."""
    with marker_database.cursor() as cursor:
        with pytest.raises(duckdb.Error):
            cursor.execute(f"SELECT * FROM read_text('{S3_ROOT}/x?s3_endpoint=127.0.0.1:{listener.port}"
                           "&s3_use_ssl=false&s3_url_style=path')").fetchall()
    assert listener.connections >= 1


# --- end to end: the real handler on the S3 lake -------------------------------------


def ask(handler: LakeHandler, sql: str, params: dict | None = None, views: list | None = None) -> dict:
    event = {"version": 1, "op": "query", "sql": sql, "params": params or {}, "page_size": 50}
    if views:
        event["views"] = views
    answer = json.loads(json.dumps(handler(json.loads(json.dumps(event)), None)))
    text = json.dumps(answer)
    for marker in MARKERS.values():
        assert marker not in text, f"the answer to {sql!r} holds a credential"
    assert "hunter2" not in text, f"the answer to {sql!r} holds the other bucket's secret"
    return answer


def assert_refused(answer: dict, sql: str | None = None, offender: str | None = None) -> None:
    assert "error" in answer, f"expected a refusal, got columns {answer.get('columns')}"
    assert answer["error"]["type"] == "PermissionException", answer["error"]
    if sql is not None and offender is not None:
        assert answer["error"]["position"] == sql.index(offender), answer["error"]


def test_the_handler_answers_lake_queries(handler):
    for sql in (f"SELECT count(*) AS n FROM {TABLE}",
                f"SELECT count(*) AS n FROM read_parquet('{S3_ROOT}/dataset/{TABLE}.parquet')",
                f"SELECT count(*) AS n FROM '{S3_ROOT}/partitioned/*/*.parquet'",
                f"DESCRIBE {TABLE}",
                f"SELECT count(*) AS n FROM glob('{S3_ROOT}/dataset/*')"):
        answer = ask(handler, sql)
        assert "error" not in answer, (sql, answer.get("error"))
        assert answer["total_rows"] >= 1
    answer = ask(handler, f"SELECT count(*) AS n FROM {TABLE} WHERE fare_amount > $low", {"low": 1_000_000})
    assert "error" not in answer, answer.get("error")


E2E_HOSTILE = [
    (f"SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv')", f"'s3://{OTHER_BUCKET}"),
    (f"SELECT * FROM read_csv('{S3_ROOT}/../{OTHER_BUCKET}/secret.csv')", f"'{S3_ROOT}/.."),
    (f"SELECT * FROM 's3://{OTHER_BUCKET}/secret.csv'", "'s3://"),
    (f"SELECT * FROM read_parquet('{S3_ROOT}/_lakemagic/results/*.parquet')", "'s3://"),
    (f"SELECT * FROM read_parquet('{S3_ROOT}/*/results/*.parquet')", "'s3://"),
    (f"SELECT * FROM read_parquet('{S3_ROOT}/**/*.parquet')", "'s3://"),
    (f"SELECT * FROM glob('{S3_ROOT}/_lakemagic/**')", "'s3://"),
    ("SELECT * FROM read_csv('s3://lake2/x.csv')", "'s3://"),
    ("SELECT * FROM read_text('file:///etc/passwd')", "'file"),
    ("SELECT * FROM read_text('/proc/self/environ')", "'/proc"),
    ("SELECT current_setting('s3_secret_access_key')", "current_setting"),
    ("SELECT current_setting('s3_access_key_id') AS k", "current_setting"),
    ("SELECT main.current_setting('s3_session_token')", "main"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM pg_settings", "pg_settings"),
    ("SUMMARIZE pg_settings", "pg_settings"),
    ("SELECT * FROM duckdb_secrets()", "duckdb_secrets"),
    ('SELECT * FROM "duckdb_secrets"(redact := false)', '"duckdb_secrets"'),
    ("SELECT * FROM query('SELECT * FROM duck' || 'db_secrets()')", "query"),
    ("SELECT * FROM which_secret('s3://lake/x', 's3')", "which_secret"),
    ("SELECT * FROM enable_logging()", "enable_logging"),
    ("SELECT * FROM duckdb_logs()", "duckdb_logs"),
    (f"SELECT * FROM read_csv('{S3_ROOT}/dataset/x.csv', store_rejects = true)", "store_rejects"),
    (f"SELECT * FROM read_csv('{S3_ROOT}/' || '_lakemagic/results/x.parquet')", "'s3://"),
    ("SELECT * FROM read_parquet($path)", "read_parquet"),
]


@pytest.mark.parametrize("sql, offender", E2E_HOSTILE)
def test_the_handler_refuses_hostile_queries(handler, sql, offender):
    params = {"path": f"{S3_ROOT}/_lakemagic/results/x.parquet"} if "$path" in sql else {}
    assert_refused(ask(handler, sql, params), sql, offender)


def test_settings_the_query_cannot_read_show_no_credential(handler):
    answer = ask(handler, "SHOW s3_secret_access_key")  # DESCRIBE of a lake table of that name: there is none
    assert "error" in answer


def test_hostile_views_are_refused(handler):
    for view_sql in ("SELECT current_setting('s3_secret_access_key') AS s",
                     f"SELECT * FROM read_csv('s3://{OTHER_BUCKET}/secret.csv')",
                     "SELECT * FROM duckdb_secrets()"):
        answer = ask(handler, "SELECT * FROM v", views=[{"name": "v", "sql": view_sql}])
        assert_refused(answer)


def test_another_callers_result_cannot_be_read(handler):
    first = ask(handler, "SELECT 42 AS answer")
    assert "error" not in first, first.get("error")
    stored = f"{S3_ROOT}/_lakemagic/results/{first['result_id']}.parquet"
    for sql in (f"SELECT * FROM read_parquet('{stored}')", f"SELECT * FROM '{stored}'",
                f"SELECT * FROM parquet_metadata('{stored}')", f"SELECT * FROM read_blob('{stored}')"):
        assert_refused(ask(handler, sql), sql, "'s3://")


def test_no_query_reaches_another_host(handler, listener):
    """SSRF: every way of naming our listener is refused before DuckDB runs anything."""
    here = f"127.0.0.1:{listener.port}"
    attempts = [
        f"SELECT * FROM read_text('{S3_ROOT}/x?s3_endpoint={here}')",
        f"SELECT * FROM read_text('{S3_ROOT}/x?s3_endpoint={here}&s3_use_ssl=false&s3_url_style=path')",
        f"SELECT * FROM read_parquet('{S3_ROOT}/dataset/{TABLE}.parquet?s3_endpoint={here}&s3_use_ssl=false')",
        f"SELECT * FROM '{S3_ROOT}/dataset/{TABLE}.parquet?s3_endpoint={here}&s3_use_ssl=false'",
        f"SELECT * FROM glob('{S3_ROOT}/dataset/*?s3_endpoint={here}&s3_use_ssl=false')",
        f"SELECT * FROM read_text(['{S3_ROOT}/dataset/a', '{S3_ROOT}/b?s3_endpoint={here}&s3_use_ssl=false'])",
        f"SELECT * FROM read_text('http://{here}/x')",
        f"SELECT * FROM read_csv('http://{here}/x.csv')",
        f"SELECT * FROM 'http://{here}/x.parquet'",
        f"SELECT * FROM read_text('s3://{here}/x')",
        f"SELECT * FROM read_text('{S3_ROOT}/x#@{here}')",
        f"SELECT * FROM read_text('{S3_ROOT}/x%3Fs3_endpoint%3D{here}')",
        f"SELECT * FROM parquet_metadata('{S3_ROOT}/d/x.parquet?s3_endpoint={here}')",
        f"SELECT * FROM read_text('{S3_ROOT}/x?' || 's3_endpoint={here}')",
        f"SELECT * FROM read_text('x?s3_endpoint={here}&s3_use_ssl=false')",  # lake-relative
        f"SELECT * FROM 'dataset/{TABLE}.parquet?s3_endpoint={here}&s3_use_ssl=false'",
        f"SELECT * FROM read_text(['dataset/a', 'b?s3_endpoint={here}&s3_use_ssl=false'])",
    ]
    for sql in attempts:
        answer = ask(handler, sql)
        assert_refused(answer)
        assert sql[answer["error"]["position"]] == "'", (sql, answer["error"])  # at the path literal
    view = {"name": "v", "sql": f"SELECT * FROM read_text('{S3_ROOT}/x?s3_endpoint={here}&s3_use_ssl=false')"}
    assert_refused(ask(handler, "SELECT * FROM v", views=[view]))
    assert listener.connections == 0


def test_refused_logging_stays_off_and_the_handler_keeps_serving(handler):
    for sql in ("SELECT * FROM enable_logging()", "SELECT * FROM enable_logging(storage_path = '/tmp/x')",
                "SELECT * FROM enable_logging(storage_normalize = false)"):
        assert_refused(ask(handler, sql))
    with handler._database.cursor() as cursor:
        assert str(cursor.execute("SELECT current_setting('enable_logging')").fetchone()[0]).lower() in ("false", "0")
    answer = ask(handler, f"SELECT count(*) AS n FROM {TABLE}")
    assert "error" not in answer and answer["total_rows"] == 1


def test_a_refusal_answer_has_the_protocol_shape(handler):
    sql = "SELECT 1 AS a, current_setting('s3_secret_access_key') AS b"
    answer = ask(handler, sql)
    parsed = protocol.parse_answer(answer)
    assert isinstance(parsed, protocol.ErrorAnswer)
    assert parsed.type == "PermissionException" and "current_setting" in parsed.message
    assert parsed.position == sql.index("current_setting")


# --- the embedded engine: the same handler over a local lake folder ---------------------------------


def test_the_embedded_engine_refuses_what_the_function_refuses(tmp_path):
    from lakemagic import client
    from lakemagic.engines.embedded import EmbeddedEngine
    from lakemagic.errors import LakeQueryError

    lake = tmp_path / "lake"
    (lake / "dataset").mkdir(parents=True)
    (tmp_path / "outside.csv").write_text("secret\nhunter2\n")
    engine = EmbeddedEngine(str(lake))
    stored = client.run_query(engine, "SELECT range AS i, md5(range::VARCHAR) AS h FROM range(200000)")
    assert not stored.info.inline
    hostile = [
        f"SELECT * FROM read_csv('{tmp_path}/outside.csv')",
        f"SELECT * FROM read_csv('{lake}/../outside.csv')",
        "SELECT * FROM read_text('/etc/passwd')",
        f"SELECT * FROM read_parquet('{lake}/_lakemagic/results/{stored.result_id}.parquet')",
        f"SELECT * FROM glob('{lake}/*/results/*')",
        "SELECT current_setting('home_directory')",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM enable_logging()",
        "SELECT * FROM query('SELECT 42')",
    ]
    for sql in hostile:
        with pytest.raises(LakeQueryError) as refused:
            client.run_query(engine, sql)
        assert refused.value.error_type == "PermissionException", (sql, str(refused.value))
        assert "hunter2" not in str(refused.value)
    assert client.run_query(engine, "SELECT 1 AS still_serving").to_dataframe()["still_serving"][0] == 1
