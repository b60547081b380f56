"""plan(): split one query over a Hive-partitioned table into tasks over shares of its files, and a merge."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from lakelambda.errors import PermissionDenied
from lakelambda.sandbox import check_query

from .files import PartitionFile, autocast_key_types, group_files, reader
from .grouped import is_aggregate_query, split_grouped
from .rows import split_rows
from .shape import check
from .tree import PARTIALS, Refusal, nodes, select_node, to_sql

# The explanation names this many partitions of a task, then counts the rest.
SHOWN_PARTITIONS = 5


@dataclass(frozen=True)
class Task:
    """One invocation's share: the files it reads and the SQL it runs over them (the files are in it)."""

    files: tuple[PartitionFile, ...]
    _reading: Callable[[], dict] = field(repr=False, compare=False)

    @functools.cached_property
    def sql(self) -> str:
        """Printed when first asked for: a fan-out sends the plan's task_sql and the files instead,
        and printing each task's tree costs about as much as the rest of planning."""
        return to_sql(self._reading())

    @property
    def size_bytes(self) -> int:
        return sum(file.size_bytes for file in self.files)

    def partitions(self) -> list[str]:
        """The partitions the task reads, as key=value paths, in order."""
        return sorted({file.partition_label() for file in self.files})


@dataclass(frozen=True)
class Plan:
    """Run every task's SQL, concatenate their results in any order as a table named `partials`
    (same columns, same types), and run `merge_sql` over it: the result is the query's."""

    tasks: tuple[Task, ...]
    merge_sql: str
    # What every task runs with the split table read by its name: the handler's task
    # operation reads the task's own files under that name (lakelambda/tasks.py).
    task_sql: str = ""

    @functools.cached_property
    def explanation(self) -> str:
        """For %%lakesql --explain."""
        return explain(self.tasks, self.merge_sql)


@dataclass(frozen=True)
class NotSplit:
    """The query runs as one invocation; `reason` says why in one sentence."""

    reason: str


def plan(sql: str, table: str, files: Sequence[PartitionFile], max_tasks: int,
         key_types: Mapping[str, str] | None = None) -> Plan | NotSplit:
    """Split `sql`, a query over the Hive-partitioned lake table `table`, into at most `max_tasks` tasks.

    `files` are the table's files left after pruning (see prune()). `key_types` are
    the partition keys' types as the whole table reads them (DESCRIBE of the
    table); by default they are found from `files` as DuckDB would.
    """
    if max_tasks < 1:
        raise ValueError(f"max_tasks must be at least 1, got {max_tasks}")
    try:
        if not files:
            raise Refusal(f"no files of {table} are left to read")
        types = dict(key_types) if key_types is not None else autocast_key_types(files)
        shape = _split(sql, table)
    except Refusal as refusal:
        return NotSplit(str(refusal))
    if isinstance(shape, NotSplit):
        return shape
    task_node, merge_sql, task_sql = shape
    tasks = tuple(Task(tuple(group), functools.partial(_reading, task_node, table, tuple(group), types))
                  for group in group_files(files, max_tasks))
    return Plan(tasks, merge_sql, task_sql)


@functools.lru_cache(maxsize=64)
def _split(sql: str, table: str) -> tuple[dict, str, str] | NotSplit:
    """The task's tree (shared: never changed), the merge SQL and the task SQL, whatever the files;
    or why `sql` is not split. Kept, as a fan-out plans each query twice: for its shape alone
    before listing the table, then over the table's files."""
    try:
        query = check(select_node(sql), table)
        split = split_grouped if is_aggregate_query(query) else split_rows
        task_node, merge_node = split(query)
        merge_sql = to_sql(merge_node)
        _refuse_what_the_engine_would(merge_sql)
        return task_node, merge_sql, to_sql(task_node)
    except Refusal as refusal:
        return NotSplit(str(refusal))


# The merge reads no file at all: a root no path is inside, so the sandbox refuses any read.
_NO_FILES = "lakemagic-merge-reads-no-files:"


def _refuse_what_the_engine_would(merge_sql: str) -> None:
    """The merge runs the user's expressions in the kernel; one the handler's sandbox refuses (a setting,
    a file) is not split, so the query runs on one invocation and the handler refuses it there, pointing at it."""
    try:
        check_query(merge_sql, _NO_FILES)
    except PermissionDenied as denied:
        raise Refusal(f"its merge would run what the engine refuses: {denied.message}") from None


def _reading(task_node: dict, table: str, files: Sequence[PartitionFile], types: Mapping[str, str]) -> dict:
    """`task_node` with its one reference to `table` replaced by a reader of `files`, under the same name."""
    node = copy.deepcopy(task_node)
    ref = next(part for part in nodes(node)
               if part.get("type") == "BASE_TABLE" and part["table_name"].lower() == table.lower())
    files_reader = {**reader(files, types), "alias": ref["alias"] or ref["table_name"],
                    "column_name_alias": ref["column_name_alias"]}
    ref.clear()
    ref.update(files_reader)
    return node


def explain(tasks: Sequence[Task], merge_sql: str) -> str:
    """What a fan-out does: its tasks and their partitions, the task SQL and the merge SQL."""
    files = sum(len(task.files) for task in tasks)
    lines = [f"Fan-out over {len(tasks)} task{'s' * (len(tasks) != 1)}, reading {files} files "
             f"({_size(sum(task.size_bytes for task in tasks))}):"]
    for number, task in enumerate(tasks, 1):
        partitions = task.partitions()
        shown = ", ".join(partitions[:SHOWN_PARTITIONS])
        more = f", ... ({len(partitions)} partitions)" if len(partitions) > SHOWN_PARTITIONS else ""
        lines.append(f"  task {number}: {len(task.files)} files, {_size(task.size_bytes)}; {shown}{more}")
    lines += ["Each task runs (task 1 shown; the others read their own files):", f"  {tasks[0].sql}",
              f"The merge runs over the tasks' results, concatenated as the table {PARTIALS}:", f"  {merge_sql}"]
    return "\n".join(lines)


def _size(count: float) -> str:
    units = ("bytes", "KB", "MB", "GB")
    power = 0
    while count >= 1000 and power < len(units) - 1:
        count, power = count / 1000, power + 1
    return f"{count:.0f} bytes" if power == 0 else f"{count:.1f} {units[power]}"
