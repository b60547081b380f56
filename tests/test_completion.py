"""Tab completion in %%lakesql cells and %lakesql lines, through the shell's own completer, on both engines."""

from __future__ import annotations

import shutil
import threading
import time

import duckdb
import pytest
from IPython.core.completer import provisionalcompleter

from lakemagic import completion
from lakemagic.catalog import CatalogCache
from lakemagic.engines.embedded import EmbeddedEngine
from lakelambda.errors import PermissionDenied
from lakelambda.sandbox import check_query


TAXI_COLUMNS = ["vendor_id", "pickup_at", "dropoff_at", "passenger_count", "trip_distance", "pickup_location_id",
                "dropoff_location_id", "payment_type", "fare_amount", "tip_amount", "total_amount"]


def complete(shell, text: str, cursor: int | None = None) -> list[tuple[str, str]]:
    """What the shell offers at `cursor` (default: the end) of a cell holding `text`."""
    cursor = len(text) if cursor is None else cursor
    with provisionalcompleter():
        return [(found.text, found.type) for found in shell.Completer.completions(text, cursor)]


def lake_names(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lake's tables and columns and the saved views among what was offered (not DuckDB's own words)."""
    return [(text, kind) for text, kind in found if kind in ("table", "view", "column")]


def eventually(shell, text: str, cursor: int | None = None, timeout_s: float = 30) -> list[tuple[str, str]]:
    """The completions once the catalog's background fetch has answered (the first keystroke may be before)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = complete(shell, text, cursor)
        if any(kind in ("table", "column") for _, kind in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def lake_columns(lake, pattern: str) -> list[str]:
    return [row[0] for row in duckdb.connect().execute(f"DESCRIBE SELECT * FROM read_parquet('{lake}/{pattern}', "
                                                       "hive_partitioning = true)").fetchall()]


@pytest.fixture
def shell(shell_on_both_engines):
    return shell_on_both_engines


def test_a_cell_completes_lake_tables_and_saved_views(shell):
    shell.run_cell("%%lakesql --save trips_by_zone\nSELECT pickup_location_id, count(*) AS trips FROM taxi_2019_04 GROUP BY 1")
    assert eventually(shell, "%%lakesql\nSELECT * FROM t") == [("taxi_2019_04", "table"), ("taxi_iceberg", "table"), ("trips_by_zone", "view")]
    assert complete(shell, "%%lakesql\nSELECT *\nFROM PART") == [("partitioned", "table")]


def test_columns_of_the_tables_the_cell_names(shell, local_taxi_lake):
    cell = "%%lakesql\nSELECT pick, count(*)\nFROM taxi_2019_04 GROUP BY 1"
    cursor = cell.index("pick") + len("pick")
    assert eventually(shell, cell, cursor) == [("pickup_at", "column"), ("pickup_location_id", "column")]
    partition_columns = lake_columns(local_taxi_lake, "partitioned/*/*.parquet")
    found = eventually(shell, "%%lakesql\nSELECT p. FROM partitioned p", len("%%lakesql\nSELECT p."))
    assert found == [(column, "column") for column in partition_columns]  # an alias: the named tables' columns
    assert "date" in partition_columns and set(TAXI_COLUMNS) <= set(partition_columns)


def test_a_saved_views_columns_and_a_qualified_name(shell):
    shell.run_cell("%%lakesql --save fares\nSELECT fare_amount AS fare, tip_amount AS tip FROM taxi_2019_04")
    cell = "%%lakesql\nSELECT fares. FROM fares JOIN taxi_2019_04 ON true"
    assert eventually(shell, cell, cell.index(".") + 1) == [("fare", "column"), ("tip", "column")]


def test_the_line_magic_and_its_options_complete_too(shell):
    assert eventually(shell, "df = %lakesql SELECT * FROM taxi") == [("taxi_2019_04", "table"), ("taxi_iceberg", "table")]
    assert complete(shell, "%lakesql --columns par") == [("partitioned", "table")]
    found = eventually(shell, "x = %lakesql SELECT total_ FROM taxi_2019_04", len("x = %lakesql SELECT total_"))
    assert found == [("total_amount", "column")]


def test_python_cells_keep_python_completion(ipython, local_taxi_lake):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(local_taxi_lake)!r}")
    ipython.user_ns["taxi_fares_frame"] = 1
    assert ("taxi_fares_frame", "instance") in complete(ipython, "taxi_f")
    eventually(ipython, "%%lakesql\nFROM taxi")
    assert all(text != "taxi_fares_frame" for text, _ in complete(ipython, "%%lakesql\nSELECT * FROM taxi"))
    assert all(kind != "table" for _, kind in complete(ipython, "print(taxi"))


class HeldEngine:
    """The embedded engine, except that every call waits until the test lets it go: a Lambda that is slow to answer."""

    name, concurrency, shares_files = "held", 1, True

    def __init__(self, lake):
        self.engine = EmbeddedEngine(str(lake))
        self.go = threading.Event()
        self.calls = 0

    def call(self, request):
        self.calls += 1
        self.go.wait(60)
        return self.engine.call(request)


def magic_of(shell):
    return shell.magics_manager.registry["LakeMagic"]


def test_a_keystroke_never_waits_for_a_slow_engine(ipython, local_taxi_lake):
    magic = magic_of(ipython)
    magic.views.save("recent", "SELECT 1 AS x")
    held = HeldEngine(local_taxi_lake)
    magic._engine = held
    completion.register(ipython, magic, CatalogCache(wait_s=0.05))
    # The engine has not answered: what is known (the saved views) is offered, the fetch goes on behind.
    assert lake_names(complete(ipython, "%%lakesql\nSELECT * FROM ")) == [("recent", "view")]
    assert lake_names(complete(ipython, "%%lakesql\nSELECT * FROM ")) == [("recent", "view")]
    assert held.calls == 1  # one fetch on its way, not one per keystroke
    held.go.set()
    assert lake_names(eventually(ipython, "%%lakesql\nSELECT * FROM ")) == [
        ("partitioned", "table"), ("taxi_2019_04", "table"), ("taxi_iceberg", "table"), ("recent", "view")]


def test_the_catalog_is_fetched_again_once_it_is_older_than_its_lifetime(ipython, local_taxi_lake, tmp_path):
    lake = tmp_path / "lake"
    # (the Iceberg table's metadata names the files where the fixture's lake keeps them: it stays behind)
    shutil.copytree(local_taxi_lake, lake, ignore=shutil.ignore_patterns("partitioned", "taxi_iceberg"))
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(lake)!r}")
    cache = CatalogCache(ttl_s=3600)
    completion.register(ipython, magic_of(ipython), cache)
    assert eventually(ipython, "%%lakesql\nFROM tax") == [("taxi_2019_04", "table")]
    shutil.copy(lake / "dataset" / "taxi_2019_04.parquet", lake / "dataset" / "taxi_2019_05.parquet")
    assert complete(ipython, "%%lakesql\nFROM tax") == [("taxi_2019_04", "table")]  # still within its lifetime
    cache.ttl_s = 0
    complete(ipython, "%%lakesql\nFROM tax")  # stale: answered from memory, fetched again behind
    deadline = time.monotonic() + 30
    while len(complete(ipython, "%%lakesql\nFROM tax")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert complete(ipython, "%%lakesql\nFROM tax") == [("taxi_2019_04", "table"), ("taxi_2019_05", "table")]


def test_loading_the_extension_again_keeps_one_matcher(ipython):
    ipython.run_line_magic("reload_ext", "lakemagic")
    ids = [getattr(matcher, "matcher_identifier", None) for matcher in ipython.Completer.custom_matchers]
    assert ids.count(completion.MATCHER_ID) == 1


def test_no_lake_yet_still_completes_the_saved_views(ipython, tmp_path):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(tmp_path / 'missing')!r}")
    magic_of(ipython).views.save("recent", "SELECT 1 AS x")
    assert lake_names(complete(ipython, "%%lakesql\nSELECT * FROM re")) == [("recent", "view")]


# --- DuckDB's own words: keywords and the functions the handler's sandbox lets a query call -------------------


def offered(shell, text: str, kind: str) -> list[str]:
    return [found for found, found_kind in complete(shell, text) if found_kind == kind]


def test_keywords_complete_in_the_case_typed(ipython, tmp_path):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(tmp_path / 'missing')!r}")  # no lake needed
    assert offered(ipython, "%%lakesql\nSEL", "keyword") == ["SELECT"]
    lower = offered(ipython, "%%lakesql\nselect 1 as n\nfrom range(3) gro", "keyword")
    assert "group" in lower and all(word.islower() for word in lower)
    assert "WHERE" in offered(ipython, "n = %lakesql SELECT count(*) FROM range(3) WHE", "keyword")
    assert "SUMMARIZE" in offered(ipython, "%%lakesql\nSUMM", "keyword")  # DuckDB's own, not only the standard's
    assert ("SELECT", "keyword") not in complete(ipython, "SEL")  # a Python cell: Python's completion only


def test_functions_complete_and_the_sandbox_refused_ones_do_not(ipython, tmp_path):
    ipython.run_line_magic("config", f"LakeMagic.lake = {str(tmp_path / 'missing')!r}")
    assert offered(ipython, "%%lakesql\nSELECT date_tr", "function") == ["date_trunc"]
    assert offered(ipython, "%%lakesql\nSELECT approx_count_d", "function") == ["approx_count_distinct"]
    assert offered(ipython, "%%lakesql\nSELECT current_sett", "function") == []  # reads the engine's settings
    assert offered(ipython, "%%lakesql\nSELECT getvar", "function") == []
    assert offered(ipython, "%%lakesql\nSELECT * FROM read_parq", "function") == ["read_parquet"]
    assert offered(ipython, "%%lakesql\nSELECT * FROM duckdb_", "function") == []  # the engine's own catalog
    assert offered(ipython, "%%lakesql\nSELECT * FROM quer", "function") == []  # SQL from a string
    assert offered(ipython, "%%lakesql\nSELECT read_parq", "function") == []  # a table function, not a value


def test_every_function_offered_passes_the_sandbox_and_every_one_left_out_is_refused():
    """The whole list (IPython shows 500 completions at most) against the handler's own check: a call in a query."""
    functions = {name for name, _ in completion.sql_words()[0]}
    assert len(functions) > 500 and {"date_trunc", "sum", "regexp_matches", "list_transform"} <= functions
    calls = duckdb.sql("SELECT DISTINCT function_name FROM duckdb_functions() "
                       "WHERE function_type IN ('scalar', 'aggregate', 'macro') AND function_name SIMILAR TO '[a-z][a-z0-9_]*'"
                       ).fetchall()
    assert len(calls) > len(functions)
    for (name,) in calls:
        query = f"SELECT \"{name}\"(1) FROM range(1)"  # quoted: some names are keywords too (row, array)
        if name in functions:
            check_query(query, "/lake")
        else:
            with pytest.raises(PermissionDenied, match="is not available to queries"):
                check_query(query, "/lake")
