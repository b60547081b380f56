"""The catalog an answer lists is names the lake can have: completion inserts them into the user's SQL,
so a forged `tables` answer must not offer SQL, quotes or lines of its own as a table's name."""

from __future__ import annotations


import pytest

from lakelambda import protocol
from lakelambda.errors import ProtocolError
from lakemagic import client
from lakemagic.catalog import CatalogCache
from lakemagic.errors import EngineError

from forged import Forged

TABLE = protocol.TableInfo("events", "partitioned", "s3://lake/events", ("day",), 2, 220, 3)


def tables_answer(name: str) -> dict:
    wire = protocol.encode(protocol.TablesAnswer((TABLE,)))
    wire["tables"][0]["name"] = name
    return wire


@pytest.mark.parametrize("name", [
    "taxi FROM read_text('/etc/passwd') --", "taxi; SELECT 1", 'taxi"', "taxi'", "taxi\nFROM x", "taxi.x",
    "_lakemagic", "-taxi", "taxi x", "täxi", "taxi\u200b", "", "dataset/taxi", "../taxi", "taxi%2F",
])
def test_a_tables_answer_names_only_what_a_lake_table_can_be_called(name):
    with pytest.raises(ProtocolError, match=r"'tables\[0\].name'"):
        protocol.parse_answer(tables_answer(name))
    with pytest.raises(EngineError):
        client.tables(Forged(tables_answer(name)))
    assert CatalogCache(wait_s=5).table_names(Forged(tables_answer(name))) == []  # completion offers nothing


@pytest.mark.parametrize("name", ["taxi_2019_04", "Partitioned", "a-b", "9lives", "x" * 300])
def test_every_name_the_lake_lists_arrives(name):
    assert [table.name for table in client.tables(Forged(tables_answer(name)))] == [name]
    assert CatalogCache(wait_s=5).table_names(Forged(tables_answer(name))) == [name]


def described_answer(sql: str, tmp_path) -> dict:
    """An inline answer holding what `sql` gives, as a function answering a DESCRIBE would send it."""
    import base64

    import duckdb

    path = tmp_path / "described.parquet"
    with duckdb.connect() as con:
        relation = con.sql(sql)
        columns = tuple(protocol.Column(name, str(kind)) for name, kind in zip(relation.columns, relation.types))
        relation.write_parquet(str(path))
    data = path.read_bytes()
    path.unlink()
    info = protocol.ResultInfo(None, columns, 1, len(data))
    return protocol.encode(protocol.PageAnswer(info, protocol.Page(0, 1, base64.b64encode(data).decode())))


@pytest.mark.parametrize("sql", ["SELECT 1 AS x", "SELECT 'a' AS column_type, 'b' AS column_name",
                                 "SELECT 'a' AS column_name, 1 AS column_type"])
def test_a_columns_listing_that_is_not_describes_answer_is_an_engine_error(sql, tmp_path):
    from lakemagic.catalog import describe
    from lakemagic.views import ViewRegistry

    with pytest.raises(EngineError, match="not DuckDB's"):
        describe(Forged(described_answer(sql, tmp_path)), "events", ViewRegistry())
    listing = describe(Forged(described_answer("SELECT 'day' AS column_name, 'DATE' AS column_type", tmp_path)),
                       "events", ViewRegistry())
    assert listing.values.tolist() == [["day", "DATE"]]
