"""What DuckDB's own catalog says about functions: which aggregate.

Which give a new value per run is lakelambda.sql.changing_value, the answer
result reuse uses too."""

from __future__ import annotations

import functools

from lakelambda.sql import function_catalog, with_macros_over


@functools.lru_cache(maxsize=1)
def aggregates() -> frozenset[str]:
    """Aggregate functions, and macros whose bodies aggregate however deep; lower-cased."""
    return with_macros_over({function.name for function in function_catalog() if function.kind == "aggregate"})


def is_aggregate(node: dict) -> bool:
    return node.get("class") == "FUNCTION" and node["function_name"].lower() in aggregates()
