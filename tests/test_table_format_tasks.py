"""A fan-out's tasks over an Iceberg or Delta table, from the attacker's side and the refusing side: a task may
read only live data files of the snapshot it pins, and a table whose snapshot a read of each file alone would
get wrong (deletion vectors, column mapping, an unknown reader feature, a renamed column) is not split, with
the reason in the listing, in --explain and in the footer, and still answers exactly in one invocation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.handler import LakeHandler
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.fanout import runner

from table_writers import reference, write_delta, write_iceberg

TASK_SQL = "SELECT count(*) AS n FROM {table}"


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("format-tasks-lake")
    write_iceberg(f"file://{root}", "trips", tmp_path_factory.mktemp("iceberg-catalog"))
    write_delta(str(root / "rides"))
    _write_renamed(root, tmp_path_factory.mktemp("iceberg-catalog"))
    version = max(int(path.stem) for path in (root / "rides" / "_delta_log").glob("*.json"))
    log = [json.loads(line) for path in sorted((root / "rides" / "_delta_log").glob("*.json"))
           for line in path.read_text().splitlines() if line.strip()]
    metadata = next(action["metaData"] for action in reversed(log) if "metaData" in action)
    live = _delta_live(log)
    vector = {"storageType": "i", "pathOrInlineDv": "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L",
              "sizeInBytes": 40, "cardinality": 1}
    mapped = dict(metadata, configuration={**(metadata.get("configuration") or {}), "delta.columnMapping.mode": "name"})
    commits = {
        "rides_deletion_vector": [{"remove": {"path": live["path"], "dataChange": True, "deletionTimestamp": 0}},
                                  {"add": dict(live, deletionVector=vector)}],
        "rides_column_mapping": [{"metaData": mapped}],
        "rides_negative_size": [{"add": dict(live, size=-1)}],
        "rides_v2_checkpoint": [{"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                                              "readerFeatures": ["timestampNtz", "v2Checkpoint"],
                                              "writerFeatures": ["timestampNtz", "v2Checkpoint"]}}],
    }
    for name, actions in commits.items():
        shutil.copytree(root / "rides", root / name)
        (root / name / "_delta_log" / f"{version + 1:020d}.json").write_text(
            "\n".join(json.dumps(action) for action in actions) + "\n")
    return root


def _delta_live(log: list[dict]) -> dict:
    """One add no later remove named."""
    removed = {action["remove"]["path"] for action in log if "remove" in action}
    return next(action["add"] for action in log if "add" in action and action["add"]["path"] not in removed)


def _write_renamed(root: Path, catalog_folder: Path) -> None:
    """An Iceberg table whose column `fare` was renamed `price` after its first append."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("renamed", uri=f"sqlite:///{catalog_folder}/catalog.db", warehouse=f"file://{root}")
    catalog.create_namespace_if_not_exists("lake")
    rows = pa.table({"id": pa.array([1, 2], pa.int64()), "fare": pa.array([1.5, 2.5], pa.float64())})
    table = catalog.create_table("lake.renamed", schema=rows.schema, location=f"file://{root}/renamed")
    table.append(rows)
    with table.update_schema() as schema:
        schema.rename_column("fare", "price")
    table = catalog.load_table("lake.renamed")
    table.append(pa.table({"id": pa.array([3], pa.int64()), "price": pa.array([3.5], pa.float64())}))
    catalog.engine.dispose()


@pytest.fixture(scope="module")
def handler(lake):
    found = LakeHandler(str(lake), Settings())
    yield found
    found.close()


def ask(handler, request):
    return protocol.parse_answer(handler(protocol.encode(request)))


def listing(handler, name: str) -> protocol.PartitionsAnswer:
    answer = ask(handler, protocol.PartitionsRequest((name,)))
    assert isinstance(answer, protocol.PartitionsAnswer), answer
    return answer


def task(handler, table: str, pin: str, files: tuple[str, ...]):
    return ask(handler, protocol.TaskRequest(TASK_SQL.format(table=table), {}, 100, table, files, (), pin=pin))


@pytest.mark.parametrize("name", ["trips", "rides"])
def test_a_task_reads_live_data_files_of_its_pinned_snapshot(handler, name):
    table = listing(handler, name).format_tables[0]
    answer = task(handler, name, table.pin, tuple(file.path for file in table.files))
    assert isinstance(answer, protocol.PageAnswer), answer
    assert answer.result.total_rows == 1  # count(*): the table's 99 rows, as one task over every file


def _files(lake: Path, folder: str) -> set[str]:
    return {path.relative_to(lake).as_posix() for path in (lake / folder).rglob("*.parquet")}


@pytest.mark.parametrize("name", ["trips", "rides"])
def test_a_task_naming_a_file_of_another_snapshot_another_table_or_outside_the_lake_is_refused(lake, handler, name):
    table = listing(handler, name).format_tables[0]
    live = {file.path for file in table.files}
    rewritten = sorted(_files(lake, name) - live)  # the delete rewrote a file: live in an earlier snapshot only
    assert rewritten, "the delete left no file of an earlier snapshot"
    other = sorted(_files(lake, "rides" if name == "trips" else "trips"))[0]
    for path in (rewritten[0], other, f"{name}/../rides/{other.partition('/')[2]}", "/etc/hostname.parquet",
                 f"{name}/../../outside.parquet", f"{name}/*.parquet"):
        answer = task(handler, name, table.pin, (sorted(live)[0], path))
        assert isinstance(answer, protocol.ErrorAnswer) and answer.type == "PermissionException", (path, answer)
        assert "not a live data file of the snapshot" in answer.message


@pytest.mark.parametrize("pin", ["rides/_delta_log/00000000000000000000.json", "trips/metadata/../../x.metadata.json",
                                 "trips/_delta_log/00000000000000000000.json", "dataset/x.parquet"])
def test_a_task_pinning_anything_but_a_snapshot_of_its_table_is_refused(handler, pin):
    table = listing(handler, "trips").format_tables[0]
    answer = task(handler, "trips", pin, (table.files[0].path,))
    assert isinstance(answer, protocol.ErrorAnswer) and answer.type in ("PermissionException", "TableMetadataError"), \
        answer
    assert "pins" in answer.message or "snapshot" in answer.message


REFUSED = {
    "rides_deletion_vector": "its snapshot has deletion vectors",
    "rides_column_mapping": "it maps column names (delta.columnMapping)",
    "rides_v2_checkpoint": "reader features whose effect on a plain Parquet read is not known (v2Checkpoint)",
    "renamed": "its schema changed and a data file's columns are not the current ones by name",
    "rides_negative_size": "a data file has no size",  # not a listing the notebook would refuse
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_snapshot_a_read_of_each_file_alone_would_get_wrong_is_not_split_and_says_why(handler, name):
    answer = listing(handler, name)
    assert not answer.format_tables and answer.table_formats[0][:2] == (name, "iceberg" if name == "renamed" else "delta")
    assert REFUSED[name] in answer.table_formats[0][2]


def test_the_renamed_column_runs_in_one_invocation_exactly_with_the_reason_in_the_footer_and_explain(lake):
    engine = EmbeddedEngine(str(lake))
    sql = "SELECT id, price FROM renamed ORDER BY id LIMIT 10"
    explained = runner.explain(engine, sql, (), 8)
    assert explained.startswith("Runs on one invocation: renamed is an Iceberg table that is not split over its "
                                "data files: its schema changed"), explained
    result = runner.run(engine, sql, {}, 50, (), 8)
    assert REFUSED["renamed"] in result.stats.fanout.not_split
    metadata = sorted((lake / "renamed" / "metadata").glob("*.metadata.json"))[-1]
    expected = reference(sql.replace("FROM renamed", f"FROM iceberg_scan('{metadata}')"))
    assert result.to_dataframe().values.tolist() == expected.values.tolist() == [[1, 1.5], [2, 2.5], [3, 3.5]]


def test_a_task_over_a_snapshot_that_is_not_split_is_refused(handler, lake):
    pin = "rides_deletion_vector/_delta_log/" + sorted(
        path.name for path in (lake / "rides_deletion_vector" / "_delta_log").glob("*.json"))[-1]
    answer = task(handler, "rides_deletion_vector", pin, (sorted(_files(lake, "rides_deletion_vector"))[0],))
    assert isinstance(answer, protocol.ErrorAnswer) and "deletion vectors" in answer.message, answer
