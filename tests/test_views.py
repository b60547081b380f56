"""dbt-style views: composition, cycles, shadowing, atomic materialize, and the .sql folder."""

from __future__ import annotations

import os

import duckdb
import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError
from lakemagic.views import ViewError, ViewRegistry


@pytest.fixture
def lake(tmp_path):
    (tmp_path / "dataset").mkdir()
    duckdb.sql(f"COPY (SELECT range % 265 + 1 AS loc, range AS id, (range % 7) * 1.5 AS fare FROM range(50000)) "
               f"TO '{tmp_path}/dataset/trips.parquet'")
    return tmp_path


def run(registry: ViewRegistry, lake, sql: str) -> pd.DataFrame:
    return client.run_query(EmbeddedEngine(str(lake)), sql, views=registry.resolve(sql)).to_dataframe()


def test_nested_views_compose_in_dependency_order(lake):
    views = ViewRegistry()
    views.save("by_loc", "SELECT loc, count(*) AS trips FROM trips GROUP BY loc")
    views.save("top", "SELECT * FROM by_loc ORDER BY trips DESC, loc LIMIT 10")
    assert [view.name for view in views.resolve("SELECT * FROM top")] == ["by_loc", "top"]
    expected = duckdb.sql(f"SELECT loc, count(*) AS trips FROM '{lake}/dataset/trips.parquet' "
                          "GROUP BY loc ORDER BY trips DESC, loc LIMIT 10").df()
    pd.testing.assert_frame_equal(run(views, lake, "SELECT * FROM top"), expected)


def test_diamond_dependencies_send_each_view_once(lake):
    views = ViewRegistry()
    views.save("base", "SELECT loc, fare FROM trips")
    views.save("cheap", "SELECT * FROM base WHERE fare < 3")
    views.save("dear", "SELECT * FROM base WHERE fare >= 3")
    views.save("total", "SELECT (SELECT count(*) FROM cheap) + (SELECT count(*) FROM dear) AS n")
    sent = [view.name for view in views.resolve("SELECT * FROM total")]
    assert sent.count("base") == 1 and sent.index("base") < sent.index("cheap") < sent.index("total")
    assert run(views, lake, "SELECT * FROM total").n[0] == 50000


def test_a_cycle_is_refused_and_the_old_definition_kept(lake):
    views = ViewRegistry()
    views.save("a", "SELECT 1 AS x")
    views.save("b", "SELECT * FROM a")
    with pytest.raises(ViewError, match="cycle: a -> b -> a"):
        views.save("a", "SELECT * FROM b")
    assert views["a"].sql == "SELECT 1 AS x"
    assert run(views, lake, "SELECT * FROM b").x[0] == 1


def test_unknown_names_are_the_engines_clear_error(lake):
    views = ViewRegistry()
    views.save("v", "SELECT * FROM no_such_table")
    with pytest.raises(LakeQueryError) as unknown:
        run(views, lake, "SELECT * FROM v")
    assert unknown.value.error_type == "CatalogException"
    assert "in view v" in unknown.value.message and "no_such_table" in unknown.value.message


def test_a_view_shadows_a_lake_table_of_the_same_name(lake):
    views = ViewRegistry()
    views.save("trips", "SELECT 42 AS answer")
    assert run(views, lake, "SELECT * FROM trips").answer.tolist() == [42]
    assert len(run(ViewRegistry(), lake, "SELECT * FROM trips")) == 50000


def test_views_cannot_hold_parameters_or_bad_names():
    views = ViewRegistry()
    with pytest.raises(ViewError, match=r"\$parameters"):
        views.save("v", "SELECT * FROM trips WHERE loc = $loc")
    with pytest.raises(ViewError, match="not a valid view name"):
        views.save("my view", "SELECT 1")


def test_materialize_writes_the_artifact_and_the_name_then_reads_it(lake):
    views = ViewRegistry()
    views.save("by_loc", "SELECT loc, count(*) AS trips FROM trips GROUP BY loc")
    views.save("top", "SELECT * FROM by_loc ORDER BY trips DESC, loc LIMIT 200")
    engine = EmbeddedEngine(str(lake))
    written = client.materialize(engine, views["top"].sql, "dashboard/my_view.parquet", views.resolve(views["top"].sql))
    views.mark_materialized("top", written.path)
    assert written.rows == 200 and os.path.exists(lake / "dashboard" / "my_view.parquet")
    before = run(views, lake, "SELECT * FROM top")
    # Change the raw data: the dashboard keeps reading the artifact, not recomputing it.
    duckdb.sql(f"COPY (SELECT 1 AS loc, 1 AS id, 1.0 AS fare) TO '{lake}/dataset/trips.parquet'")
    pd.testing.assert_frame_equal(run(views, lake, "SELECT * FROM top"), before)
    assert run(ViewRegistry(), lake, "SELECT count(*) AS n FROM my_view").n[0] == 200  # the catalog knows it too


def test_a_failed_materialize_leaves_the_previous_artifact_unchanged(lake):
    engine = EmbeddedEngine(str(lake))
    client.materialize(engine, "SELECT loc FROM trips WHERE loc < 10", "dashboard/small.parquet")
    target = lake / "dashboard" / "small.parquet"
    before = target.read_bytes()
    failing = "SELECT CASE WHEN id > 40000 THEN error('disk on fire') ELSE id END AS id FROM trips"
    with pytest.raises(LakeQueryError, match="disk on fire"):
        client.materialize(engine, failing, "dashboard/small.parquet")
    assert target.read_bytes() == before
    assert sorted(os.listdir(lake / "dashboard")) == ["small.parquet"]  # no temporary file left behind


def test_materialize_refuses_paths_outside_dashboard(lake):
    with pytest.raises(LakeQueryError) as refused:
        client.materialize(EmbeddedEngine(str(lake)), "SELECT 1", "dataset/trips.parquet")
    assert refused.value.error_type == "ProtocolError"


def test_a_folder_of_sql_files_round_trips(tmp_path, lake):
    views = ViewRegistry()
    views.save("by_loc", "SELECT loc, count(*) AS trips FROM trips GROUP BY loc")
    views.save("top", "SELECT * FROM by_loc ORDER BY trips DESC LIMIT 3")
    views.save_folder(tmp_path / "models")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["by_loc.sql", "top.sql"]
    loaded = ViewRegistry()
    assert sorted(loaded.load_folder(tmp_path / "models")) == ["by_loc", "top"]
    pd.testing.assert_frame_equal(run(loaded, lake, "SELECT * FROM top"), run(views, lake, "SELECT * FROM top"))


def test_the_magic_saves_materializes_and_lists_views(ipython, lake):
    shell = ipython
    shell.run_line_magic("config", f"LakeMagic.lake = {str(lake)!r}")
    shell.run_line_magic("config", "LakeMagic.engine = 'local'")
    with capture_output():
        assert shell.run_cell("%%lakesql --save by_loc\nSELECT loc, count(*) AS trips FROM trips GROUP BY loc").success
        assert shell.run_cell("%%lakesql --save top_loc --materialize\nSELECT * FROM by_loc ORDER BY trips DESC LIMIT 5").success
        listing = shell.run_cell("%lakesql --views").result
    assert (lake / "dashboard" / "top_loc.parquet").exists()
    row = listing.set_index("view").loc["top_loc"]
    assert row["depends on"] == "by_loc" and row["materialized"].endswith("dashboard/top_loc.parquet")
