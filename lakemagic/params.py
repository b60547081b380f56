"""Filling `$name` parameters in SQL from notebook variables.

Values are sent beside the SQL and bound by DuckDB as prepared-statement
parameters, never spliced into the text.
"""

from __future__ import annotations

from typing import Any, Mapping

from lakelambda.errors import ProtocolError
from lakelambda.values import decode_value, encode_value
from lakelambda.sql import parameter_names

from .errors import ParameterError


def bind_parameters(sql: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each parameter in `sql`, taken from the notebook's variables."""
    values = {}
    for name in sorted(parameter_names(sql)):
        if name not in namespace:
            raise ParameterError(f"the SQL uses ${name} but there is no notebook variable named {name!r}")
        try:
            decode_value(encode_value(namespace[name]))  # the handler's own check, before anything is sent
        except (TypeError, ProtocolError) as exc:
            raise ParameterError(f"${name}: {exc}") from None
        values[name] = namespace[name]
    return values
