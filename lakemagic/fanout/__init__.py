"""Fan-out: one query over a Hive-partitioned lake table (or an Iceberg or Delta table's data files, where
the handler says that is exact), split over many Lambda invocations.

Each invocation (a task) reads a share of the table's partition files; the
notebook merges the tasks' results into exactly the single-run result. The
plan and the merge SQL are pure (planner.py and what it uses); runner.py runs
them over an engine (the handler's `partitions` and `task` operations) and
the kernel engine (engines/kernel.py) merges the tasks' results.

    types = autocast_key_types(all_files)          # the keys' types over the whole table (or its DESCRIBE)
    files = prune(sql, "taxi", all_files, types)   # optional: drop the files the WHERE clause rules out
    result = plan(sql, "taxi", files, max_tasks=8, key_types=types)
    if isinstance(result, NotSplit):
        ...                                        # run sql once; result.reason says why
    else:
        # one `task` request per task: result.task_sql, task.files, types (runner.task_requests);
        # concatenate their results as a table named `partials`, then run result.merge_sql over it

`shape(sql, "taxi")` alone says whether and how the query splits, before any
file is listed. A task's SQL reads the table by its name; the handler's task
operation reads the task's own files under that name, as
read_parquet([its files], hive_partitioning = true, hive_types = {...}). It
keeps the query's other tables, views and $parameters, which each task reads
and binds whole, as the query would (a view that itself reads the split table
is not split). Types of the partition keys are fixed in every task, so every
share reads them as the whole table does.

Split: aggregates with or without GROUP BY (see aggregates.py for which, and
how they merge), HAVING, DISTINCT, ORDER BY, LIMIT and OFFSET after the merge;
filters and projections with or without ORDER BY ... LIMIT (rows.py); joins
with other tables in which each output row comes from one row of the split
table. Everything else is NotSplit with its reason (shape.py, aggregates.py).
Rows tied under ORDER BY may come out in another order, or another of the
tied rows kept by LIMIT, as two single runs may too.
"""

from .files import PartitionFile, autocast_key_types
from .planner import NotSplit, Plan, Shape, Task, explain, plan, shape
from .prune import prune
from .tree import PARTIALS

__all__ = [
    "PARTIALS", "NotSplit", "PartitionFile", "Plan", "Shape", "Task", "autocast_key_types", "explain", "plan", "prune",
    "shape",
]
