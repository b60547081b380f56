"""What a caller cannot break for the next one: names, files in the lake, leftovers, and requests too big to check.

All on the embedded engine's handler over a local lake folder, with real DuckDB.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
import time

import duckdb
import pytest

from lakelambda import protocol
from lakelambda.database import SCRATCH_PREFIX
from lakelambda.handler import LakeHandler
from lakelambda.storage import STAGING_FOLDER
from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError, ParameterError
from lakemagic.params import bind_parameters
import events


@pytest.fixture
def lake(tmp_path) -> str:
    root = tmp_path / "lake"
    (root / "dataset").mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT range AS id FROM range(10)) TO '{root}/dataset/trips.parquet'")
    (root / "events" / "day=1").mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT range AS id FROM range(3)) TO '{root}/events/day=1/part.parquet'")
    return str(root)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("taken", ["trips", "events"])
def test_a_view_cannot_take_a_datasets_name(lake, taken):
    engine = EmbeddedEngine(lake)
    with pytest.raises(LakeQueryError) as refused:
        client.materialize(engine, "SELECT 'mine' AS id", f"dashboard/{taken}.parquet")
    assert refused.value.error_type == "NameTaken" and taken in refused.value.message
    assert not os.path.exists(os.path.join(lake, "dashboard", f"{taken}.parquet"))
    frame = client.run_query(engine, f"SELECT count(*) AS n FROM {taken}").to_dataframe()
    assert frame["n"][0] == (10 if taken == "trips" else 3)  # the name still means the dataset


def test_a_view_may_replace_a_view_and_nest_under_its_own_folder(lake):
    engine = EmbeddedEngine(lake)
    client.materialize(engine, "SELECT 1 AS x", "dashboard/mine.parquet")
    client.materialize(engine, "SELECT 2 AS x", "dashboard/mine.parquet")
    client.materialize(engine, "SELECT 3 AS x", "dashboard/team/trips.parquet")  # not a table name: allowed
    assert client.run_query(engine, "SELECT x FROM mine").to_dataframe()["x"].tolist() == [2]


def test_a_dataset_rewritten_with_another_schema_is_read_as_it_is_now(lake):
    """Catalog views outlive a call; one over a rewritten file is made again rather than failing."""
    engine = EmbeddedEngine(lake)
    assert client.run_query(engine, "SELECT count(*) AS n FROM trips").to_dataframe()["n"][0] == 10
    duckdb.sql(f"COPY (SELECT 'renamed' AS label FROM range(4)) TO '{lake}/dataset/trips.parquet'")
    frame = client.run_query(engine, "SELECT * FROM trips").to_dataframe()
    assert list(frame.columns) == ["label"] and len(frame) == 4
    os.remove(f"{lake}/dataset/trips.parquet")
    with pytest.raises(LakeQueryError) as gone:
        client.run_query(engine, "SELECT * FROM trips")
    assert gone.value.error_type == "CatalogException"


# --- files in the lake ----------------------------------------------------------------------------


def _materialize_then_die(lake: str, started) -> None:
    handler = LakeHandler(lake)
    started.set()
    handler(events.materialize_request("SELECT range AS i, repeat('x', 200) AS pad FROM range(30000000)",
                                         "dashboard/big.parquet"))


def test_a_materialize_killed_midway_leaves_nothing_a_reader_can_see(lake):
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    worker = context.Process(target=_materialize_then_die, args=(lake, started))
    worker.start()
    assert started.wait(60)
    time.sleep(1.5)  # inside the COPY
    worker.kill()
    worker.join()

    visible = [os.path.join(folder, name) for folder, _, names in os.walk(lake) for name in names
               if "_lakemagic" not in folder]
    assert sorted(os.path.relpath(path, lake) for path in visible) == ["dataset/trips.parquet", "events/day=1/part.parquet"]
    engine = EmbeddedEngine(lake)
    assert client.run_query(engine, "SELECT count(*) AS n FROM read_parquet('%s/dataset/*')" % lake).total_rows == 1


def test_stale_staged_files_are_removed_when_a_handler_starts(lake):
    staging = os.path.join(lake, STAGING_FOLDER)
    os.makedirs(staging)
    stale, fresh = os.path.join(staging, "stale.parquet"), os.path.join(staging, "fresh.parquet")
    for path in (stale, fresh):
        open(path, "wb").close()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    LakeHandler(lake)
    assert not os.path.exists(stale) and os.path.exists(fresh)  # a fresh one may be another process's


def test_a_removed_results_folder_is_made_again(lake):
    engine = EmbeddedEngine(lake)
    client.run_query(engine, "SELECT 1 AS x")
    shutil.rmtree(os.path.join(lake, "_lakemagic", "results"))
    assert client.run_query(engine, "SELECT 2 AS x").to_dataframe()["x"].tolist() == [2]


# --- leftovers in the temp directory -----------------------------------------------------------------


def scratch_folders() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")}


def test_a_handler_takes_its_scratch_folder_with_it(lake):
    before = scratch_folders()
    handler = LakeHandler(lake)
    handler(events.query_request("SELECT 1", {}, 1))
    made = scratch_folders() - before
    assert len(made) == 1
    del handler
    gc.collect()
    assert not made & scratch_folders()


def test_scratch_folders_of_dead_processes_are_removed(lake):
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    left = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{dead.pid}-")
    mine = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    try:
        LakeHandler(lake)
        assert not os.path.exists(left)
        assert os.path.exists(mine)  # a live process's folder is never touched
    finally:
        os.rmdir(mine)


# --- requests too big to check within the budget --------------------------------------------------------


def answer(lake: str, event: dict) -> dict:
    return LakeHandler(lake)(event)


@pytest.mark.parametrize("event, says", [
    (events.query_request("SELECT 1" + " " * protocol.MAX_SQL_CHARS, {}, 1), "longer than"),
    ({**events.query_request("SELECT 1", {}, 1), "params": {f"p{i}": i for i in range(protocol.MAX_PARAMS + 1)}},
     "at most 1000 parameters"),
    ({**events.query_request("SELECT $p", {}, 1), "params": {"p": [[[[[[[[[[1]]]]]]]]]]}}, "nested at most"),
    ({**events.query_request("SELECT $p", {}, 1), "params": {"p": {"$type": "decimal", "value": "1" * 39}}},
     "38 digits"),
    ({**events.query_request("SELECT $p", {}, 1), "params": {"p": 2**200}}, "128-bit"),
    ({**events.query_request("SELECT 1", {}, 1), "views": [{"name": f"v{i}", "sql": "SELECT 1"} for i in range(201)]},
     "at most 200 views"),
])
def test_requests_beyond_the_bounds_are_refused_at_the_edge(lake, event, says):
    error = answer(lake, event)["error"]
    assert error["type"] == "ProtocolError" and says in error["message"], error


def test_a_query_nested_too_deep_to_check_is_refused_in_well_under_a_second(lake):
    started = time.monotonic()
    error = answer(lake, events.query_request("SELECT " + "1+" * 990 + "1", {}, 1))["error"]
    assert error["type"] == "PermissionException" and "nested too deeply" in error["message"]
    assert time.monotonic() - started < 5


def test_many_subqueries_are_checked_in_time_linear_in_their_length(lake):
    """Planning helpers that were quadratic (DuckDB's get_table_names) ran past the function timeout here."""
    sql = "SELECT " + ", ".join(f"(SELECT {i} FROM range(1))" for i in range(3400))
    assert len(sql) < protocol.MAX_SQL_CHARS
    started = time.monotonic()
    reply = answer(lake, events.query_request(sql, {}, 1))
    assert time.monotonic() - started < 30
    assert reply["version"] == protocol.VERSION  # an answer (DuckDB's binder refuses this one), not a crash


def test_the_notebook_refuses_a_value_the_handler_would_refuse():
    with pytest.raises(ParameterError) as refused:
        bind_parameters("SELECT $x", {"x": __import__("decimal").Decimal("1" * 40)})
    assert "38 digits" in str(refused.value)


class _Context:
    """What the handler reads of Lambda's context: the time left."""

    def __init__(self, seconds: float):
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def test_a_budget_that_runs_out_while_checking_still_stops_the_query(lake):
    """An interrupt that lands between statements is lost; the budget interrupts again until the call ends."""
    handler = LakeHandler(lake)
    slow_to_check = "SELECT " + " OR ".join(["true"] * 11_000)
    event = {**events.query_request("SELECT count(*) FROM range(20000000000) AS t(a) WHERE a % 7 = 3", {}, 1),
             "views": [{"name": "slow", "sql": slow_to_check}]}
    started = time.monotonic()
    error = handler(event, _Context(seconds=2.0))["error"]
    assert error["type"] == "QueryTimeout", error
    assert time.monotonic() - started < 15
