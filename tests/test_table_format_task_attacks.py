"""A fan-out task over a Delta table from the attacker's side, beyond test_table_format_tasks: a log that names
a data file by a glob (a task must not read it), partition values written to break out of the reader's SQL,
and commits written after the listing (a task reads the snapshot it pins, or refuses)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.formats import current_iceberg_metadata
from lakelambda.handler import LakeHandler
from lakelambda.storage import open_storage
from lakemagic import client
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError

from table_writers import reference, write_delta, write_iceberg


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, int]:
    """`rides` as delta-rs writes it (its delete rewrote a file), and `cities`, partitioned by a text column;
    each table's last version."""
    from deltalake import write_deltalake

    root = tmp_path_factory.mktemp("format-task-attacks")
    version = write_delta(str(root / "rides"))
    write_deltalake(str(root / "cities"), pa.table({"id": pa.array([1, 2], pa.int64()), "city": ["a", "b"]}),
                    partition_by=["city"])
    return root, version


@pytest.fixture
def lake(written, tmp_path):
    """A fresh copy of the written tables, a handler over it, and a writer of the next commit of a table."""
    root = tmp_path / "lake"
    shutil.copytree(written[0], root)
    (tmp_path / "scratch").mkdir()
    handler = LakeHandler(str(root), Settings(scratch=str(tmp_path / "scratch")))

    def commit(table: str, *actions: dict, version: int | None = None) -> str:
        """`actions` as commit `version` (the next one: None) of `table`; its pin."""
        log = root / table / "_delta_log"
        number = max(int(path.stem) for path in log.glob("*.json")) + 1 if version is None else version
        (log / f"{number:020d}.json").write_text("".join(json.dumps(action) + "\n" for action in actions))
        return f"{table}/_delta_log/{number:020d}.json"

    yield root, handler, commit
    handler.close()


def ask(handler, request):
    return protocol.parse_answer(handler(protocol.encode(request)))


def task(handler, sql: str, table: str, pin: str, files):
    return ask(handler, protocol.TaskRequest(sql, {}, 100, table, tuple(files), (), pin=pin))


def rows(answer) -> list[tuple]:
    assert isinstance(answer, protocol.PageAnswer), answer
    found = pq.read_table(io.BytesIO(base64.b64decode(answer.page.data)))
    return list(zip(*(column.to_pylist() for column in found.columns)))


def listed(handler, name: str) -> protocol.PartitionsAnswer:
    answer = ask(handler, protocol.PartitionsRequest((name,)))
    assert isinstance(answer, protocol.PartitionsAnswer), answer
    return answer


def log_adds(root: Path, table: str) -> list[dict]:
    return [action["add"] for path in sorted((root / table / "_delta_log").glob("*.json"))
            for line in path.read_text().splitlines() if line.strip() and "add" in (action := json.loads(line))]


def test_a_task_never_reads_a_data_file_the_log_names_by_a_glob(lake):
    """A log may name `zone=N/*.parquet` (inside the lake, so the proof admits it); read_parquet would read
    every file there, the ones earlier commits removed too. Not split, and a task naming it is refused."""
    root, handler, commit = lake
    live = {file.path for file in listed(handler, "rides").format_tables[0].files}
    removed = sorted(path.relative_to(root).as_posix() for path in (root / "rides").rglob("*.parquet")
                     if path.relative_to(root).as_posix() not in live)
    assert removed, "the delete left no removed file"
    folder = removed[0].rpartition("/")[0]
    zone = folder.rpartition("=")[2]
    pin = commit("rides", {"add": {"path": f"{folder.partition('/')[2]}/*.parquet", "partitionValues": {"zone": zone},
                                   "size": 1, "modificationTime": 0, "dataChange": True}})
    answer = listed(handler, "rides")
    assert not answer.format_tables and "is a pattern" in answer.table_formats[0][2], answer
    answer = task(handler, "SELECT count(*) FROM rides", "rides", pin, (f"{folder}/*.parquet",))
    assert isinstance(answer, protocol.ErrorAnswer) and answer.type == "PermissionException", answer
    assert "is a pattern" in answer.message


HOSTILE = ["x'); COPY (SELECT 42) TO '{root}/copied.csv'; --", "x\" , 1) --", "a'||'b", "''", "\\'", "é\n\t'"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_partition_value_is_read_as_a_value_whatever_it_holds(lake, value):
    root, handler, commit = lake
    value = value.format(root=root)
    add = next(add for add in log_adds(root, "cities") if add["partitionValues"]["city"] == "a")
    pin = commit("cities", {"remove": {"path": add["path"], "deletionTimestamp": 0, "dataChange": True}},
                 {"add": dict(add, partitionValues={"city": value})})
    table = listed(handler, "cities").format_tables[0]
    assert (value,) in {tuple(v for _, _, v in file.partition) for file in table.files}
    answer = task(handler, "SELECT id, city FROM cities ORDER BY id", "cities", pin,
                  [file.path for file in table.files])
    assert rows(answer) == [(1, value), (2, "b")]
    assert not (root / "copied.csv").exists()


def test_a_partition_value_holding_nul_is_refused_clearly_or_read_as_it_is(lake):
    root, handler, commit = lake
    add = next(add for add in log_adds(root, "cities") if add["partitionValues"]["city"] == "a")
    pin = commit("cities", {"remove": {"path": add["path"], "deletionTimestamp": 0, "dataChange": True}},
                 {"add": dict(add, partitionValues={"city": "a\0' , 1"})})
    answer = task(handler, "SELECT id, city FROM cities ORDER BY id", "cities", pin,
                  [f"cities/{add['path']}"])
    if isinstance(answer, protocol.ErrorAnswer):
        assert answer.type != "InternalError" and "Traceback" not in answer.message, answer
    else:
        assert rows(answer) == [(1, "a\0' , 1")]


def test_a_task_reads_the_snapshot_it_pins_whatever_was_committed_after_the_listing(lake):
    root, handler, commit = lake
    table = listed(handler, "rides").format_tables[0]
    files = [file.path for file in table.files]
    sql = "SELECT count(*) AS n FROM rides"
    expected = rows(task(handler, sql, "rides", table.pin, files))
    assert expected[0][0] == 99
    # A later commit removes every live file: the task still reads the pinned version.
    later = commit("rides", *({"remove": {"path": path.partition("/")[2], "deletionTimestamp": 0, "dataChange": True}}
                              for path in files))
    assert rows(task(handler, sql, "rides", table.pin, files)) == expected
    answer = task(handler, sql, "rides", later, files[:1])
    assert isinstance(answer, protocol.ErrorAnswer) and "not a live data file" in answer.message, answer


def test_a_pinned_commit_rewritten_in_place_is_read_again(lake):
    """The same pin, other contents: the task is checked against what the commit says now, not a kept reading."""
    root, handler, commit = lake
    table = listed(handler, "rides").format_tables[0]
    files = [file.path for file in table.files]
    assert isinstance(task(handler, "SELECT count(*) FROM rides", "rides", table.pin, files), protocol.PageAnswer)
    pinned = root / table.pin
    removal = {"remove": {"path": files[0].partition("/")[2], "deletionTimestamp": 0, "dataChange": True}}
    pinned.write_text(pinned.read_text().rstrip("\n") + "\n" + json.dumps(removal) + "\n")
    answer = task(handler, "SELECT count(*) FROM rides", "rides", table.pin, files[:1])
    assert isinstance(answer, protocol.ErrorAnswer) and "not a live data file" in answer.message, answer


def test_an_earlier_commit_rewritten_in_place_after_a_checked_query_is_checked_again(lake):
    """The proof that a version's files lie inside the lake is kept by its commit file; a commit before it,
    rewritten in place to add another caller's stored result (inside the lake's folder, so DuckDB's outer
    layer admits it), is part of that version too."""
    root, handler, commit = lake
    engine = EmbeddedEngine(str(root))
    stored = root / "_lakemagic" / "results" / "other-caller.parquet"
    stored.parent.mkdir(parents=True, exist_ok=True)
    reference(f"COPY (SELECT 4242::BIGINT AS id, 0.0::DOUBLE AS fare, TIMESTAMP '2020-01-01' AS pickup, "
              f"0.0::DOUBLE AS tip) TO '{stored}'")
    sql = "SELECT max(id) AS top FROM rides"
    assert client.run_query(engine, sql).to_dataframe()["top"][0] == 99
    first = root / "rides" / "_delta_log" / f"{0:020d}.json"
    added = {"add": {"path": str(stored), "partitionValues": {"zone": "0"}, "size": stored.stat().st_size,
                     "modificationTime": 0, "dataChange": True}}
    first.write_text(first.read_text().rstrip("\n") + "\n" + json.dumps(added) + "\n")
    assert 4242 in reference(f"SELECT id FROM delta_scan('{root}/rides')")["id"].tolist()  # the attack is real
    with pytest.raises(LakeQueryError) as raised:
        client.run_query(engine, "SELECT id FROM rides WHERE id > 1000")
    assert str(stored) in raised.value.message and "will not read" in raised.value.message


def test_a_manifest_list_rewritten_in_place_after_a_checked_query_is_checked_again(lake, tmp_path):
    """The proof that a snapshot's files lie inside the lake is kept by its metadata file; the manifest list
    it names, rewritten in place (same name) with one whose manifests name another caller's files (inside
    the lake's folder, so DuckDB's outer layer admits them), is checked again before the next read."""
    root, handler, commit = lake
    for warehouse, name in ((root, "trips"), (root / "_lakemagic", "secret")):
        (tmp_path / f"catalog-{name}").mkdir()
        write_iceberg(f"file://{warehouse}", name, tmp_path / f"catalog-{name}")
    engine = EmbeddedEngine(str(root))
    sql = "SELECT count(*) AS n FROM trips"
    assert client.run_query(engine, sql).to_dataframe()["n"][0] == 99
    metadata = current_iceberg_metadata(open_storage(str(root)), "trips")
    current = lambda path: next(item["manifest-list"] for item in json.loads(Path(path).read_text())["snapshots"]  # noqa: E731
                                if item["snapshot-id"] == json.loads(Path(path).read_text())["current-snapshot-id"])
    listed_there = current(metadata).removeprefix("file://")
    shutil.copyfile(current(current_iceberg_metadata(open_storage(str(root)), "_lakemagic/secret"))
                    .removeprefix("file://"), listed_there)
    assert any("_lakemagic" in path for path in reference(
        f"SELECT file_path FROM iceberg_metadata('{metadata}')")["file_path"])  # the attack is real
    with pytest.raises(LakeQueryError) as raised:
        client.run_query(engine, "SELECT count(*) AS n FROM trips WHERE id >= 0")
    assert "_lakemagic" in raised.value.message and "will not read" in raised.value.message


@pytest.mark.parametrize("pin", ["rides/_delta_log/{v}.json?s3_endpoint=127.0.0.1:9", "RIDES/_delta_log/{v}.json",
                                 "rides/_delta_log/{v}.JSON", "rides/_delta_log/00000000000000000099.json",
                                 "rides/_delta_log/{v}.checkpoint.parquet", "rides/_delta_log/{v}.json/",
                                 "rides//_delta_log/{v}.json", "rides/./_delta_log/{v}.json",
                                 "cities/_delta_log/00000000000000000000.json"])
def test_a_pin_that_is_not_a_commit_of_the_task_table_is_refused(lake, written, pin):
    root, handler, commit = lake
    table = listed(handler, "rides").format_tables[0]
    pin = pin.format(v=f"{written[1]:020d}")
    answer = task(handler, "SELECT count(*) FROM rides", "rides", pin, [table.files[0].path])
    assert isinstance(answer, protocol.ErrorAnswer), answer
    assert answer.type in ("PermissionException", "TableMetadataError"), answer
    assert "pins" in answer.message or "has no version 99" in answer.message, answer


@pytest.mark.parametrize("change", [str.upper, lambda path: path.replace("/", "//", 1),
                                    lambda path: path.replace("=", "%3D"), lambda path: path + " ",
                                    lambda path: path.replace("/", "/./", 1)])
def test_a_file_named_otherwise_than_the_log_names_it_is_refused(lake, change):
    root, handler, commit = lake
    table = listed(handler, "rides").format_tables[0]
    answer = task(handler, "SELECT count(*) FROM rides", "rides", table.pin, [change(table.files[0].path)])
    assert isinstance(answer, protocol.ErrorAnswer) and answer.type == "PermissionException", answer
    assert "not a live data file" in answer.message
