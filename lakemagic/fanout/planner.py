"""shape() and plan(): how one query over a Hive-partitioned table splits into tasks and a merge.

shape(sql, table) is the pure check, no files needed: what every task runs
(the query's split form, reading `table` by its name) and the merge, or why
the query is not split. plan() then shares the table's files out among the
tasks. A task is a `task` request: its files and the shape's task SQL, which
the handler runs with those files read as the table (lakelambda/tasks.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping, Sequence

from lakelambda.errors import PermissionDenied
from lakelambda.sandbox import check_query

from .files import PartitionFile, autocast_key_types, group_files
from .grouped import is_aggregate_query, split_grouped
from .rows import split_rows
from .shape import check
from .tree import PARTIALS, Refusal, select_node, to_sql

# The explanation names this many partitions of a task, then counts the rest.
SHOWN_PARTITIONS = 5


@dataclass(frozen=True)
class Shape:
    """How a query splits, whatever the files: every task runs `task_sql` over its share of `table`'s
    files (read under the table's name); their results, concatenated as the table `partials`
    (same columns, same types), are what `merge_sql` runs over to give the query's result."""

    table: str
    task_sql: str
    merge_sql: str


@dataclass(frozen=True)
class Task:
    """One invocation's share of the table's files."""

    files: tuple[PartitionFile, ...]

    @property
    def size_bytes(self) -> int:
        return sum(file.size_bytes for file in self.files)

    def partitions(self) -> list[str]:
        """The partitions the task reads, as key=value paths, in order."""
        return sorted({file.partition_label() for file in self.files})


@dataclass(frozen=True)
class Plan:
    """A shape over files: each task runs the shape's task SQL over its files, the merge over their results.

    `key_types` are the partition keys' types every task reads its files with (a task request's `key_types`)."""

    shape: Shape
    tasks: tuple[Task, ...]
    key_types: Mapping[str, str]

    @property
    def merge_sql(self) -> str:
        return self.shape.merge_sql

    @property
    def task_sql(self) -> str:
        return self.shape.task_sql

    @functools.cached_property
    def explanation(self) -> str:
        """For %%lakesql --explain."""
        return explain(self)


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
    split = shape(sql, table)
    if isinstance(split, NotSplit):
        return split
    try:
        if not files:
            raise Refusal(f"no files of {table} are left to read")
        types = dict(key_types) if key_types is not None else autocast_key_types(files)
    except Refusal as refusal:
        return NotSplit(str(refusal))
    return Plan(split, tuple(Task(tuple(group)) for group in group_files(files, max_tasks)), types)


@functools.lru_cache(maxsize=64)
def shape(sql: str, table: str) -> Shape | NotSplit:
    """How `sql` splits over `table`'s files, whatever they are, or why it is not split. Kept, as a
    fan-out asks it twice: before listing the table, then to plan over its files."""
    try:
        query = check(select_node(sql), table)
        split = split_grouped if is_aggregate_query(query) else split_rows
        task_node, merge_node = split(query)
        merge_sql = to_sql(merge_node)
        _refuse_what_the_engine_would(merge_sql)
        return Shape(table, to_sql(task_node), merge_sql)
    except Refusal as refusal:
        return NotSplit(str(refusal))


def _refuse_what_the_engine_would(merge_sql: str) -> None:
    """The merge runs the user's expressions in the kernel; one the handler's sandbox refuses (a setting,
    a file) is not split, so the query runs on one invocation and the handler refuses it there, pointing at it."""
    try:
        check_query(merge_sql, None)  # the merge reads no file at all
    except PermissionDenied as denied:
        raise Refusal(f"its merge would run what the engine refuses: {denied.message}") from None


def explain(planned: Plan) -> str:
    """What a fan-out does: its tasks and their partitions, the task SQL and the merge SQL."""
    tasks = planned.tasks
    files = sum(len(task.files) for task in tasks)
    lines = [f"Fan-out over {len(tasks)} task{'s' * (len(tasks) != 1)}, reading {files} files "
             f"({_size(sum(task.size_bytes for task in tasks))}):"]
    for number, task in enumerate(tasks, 1):
        partitions = task.partitions()
        shown = ", ".join(partitions[:SHOWN_PARTITIONS])
        more = f", ... ({len(partitions)} partitions)" if len(partitions) > SHOWN_PARTITIONS else ""
        lines.append(f"  task {number}: {len(task.files)} files, {_size(task.size_bytes)}; {shown}{more}")
    lines += [f"Each task runs, reading only its own files as the table {planned.shape.table}:",
              f"  {planned.task_sql}",
              f"The merge runs over the tasks' results, concatenated as the table {PARTIALS}:", f"  {planned.merge_sql}"]
    return "\n".join(lines)


def _size(count: float) -> str:
    units = ("bytes", "KB", "MB", "GB")
    power = 0
    while count >= 1000 and power < len(units) - 1:
        count, power = count / 1000, power + 1
    return f"{count:.0f} bytes" if power == 0 else f"{count:.1f} {units[power]}"
