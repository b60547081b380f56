"""Filling `$name` parameters in SQL from notebook variables.

Values are sent beside the SQL and bound by DuckDB as prepared-statement
parameters, never spliced into the text.
"""

from __future__ import annotations

from typing import Any, Mapping

import duckdb

from lakelambda.protocol import encode_value

from .errors import ParameterError


def parameter_names(sql: str) -> set[str]:
    """The `$name` parameters DuckDB's parser finds (none inside strings or comments)."""
    try:
        return {name for statement in duckdb.extract_statements(sql) for name in statement.named_parameters}
    except duckdb.Error:
        return set()  # the engine reports the syntax error, with its position


def bind_parameters(sql: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each parameter in `sql`, taken from the notebook's variables."""
    values = {}
    for name in sorted(parameter_names(sql)):
        if name not in namespace:
            raise ParameterError(f"ParameterError: the SQL uses ${name} but there is no notebook variable named {name!r}")
        try:
            encode_value(namespace[name])
        except TypeError as exc:
            raise ParameterError(f"ParameterError: ${name}: {exc}") from None
        values[name] = namespace[name]
    return values
