"""How parameter values travel: JSON as it is, and tagged values for what JSON has no type for.

Both ends use it: the notebook encodes (and checks, before sending, what the
handler would refuse), the handler decodes at its edge. Only the standard
library, and that imported when a tagged value first travels: the handler's
cold-start path.
"""

from __future__ import annotations

import functools
from typing import Any

from .errors import ProtocolError

MAX_PARAM_DEPTH = 8  # lists in lists
MAX_DECIMAL_DIGITS = 38  # DuckDB's widest DECIMAL


# JSON carries None, bool, int, float, str and lists of them as they are. Other
# values a notebook variable commonly holds travel tagged, {"$type": ..., "value": ...},
# so that DuckDB binds a DATE as a DATE rather than as a string.

TAGS = ("datetime", "date", "time", "decimal", "uuid")  # datetime before date: it is a subclass


@functools.lru_cache(maxsize=1)
def _tagged_types() -> dict[str, tuple]:
    """Each tag's type and its parser; imported on first use (the three modules cost a cold start ~5 ms)."""
    import datetime as dt
    import decimal
    import uuid

    return {"datetime": (dt.datetime, dt.datetime.fromisoformat), "date": (dt.date, dt.date.fromisoformat),
            "time": (dt.time, dt.time.fromisoformat), "decimal": (decimal.Decimal, decimal.Decimal),
            "uuid": (uuid.UUID, uuid.UUID)}


def _tag_of(value: Any) -> str | None:
    return next((tag for tag, (kind, _) in _tagged_types().items() if isinstance(value, kind)), None)


def encode_value(value: Any, depth: int = 0) -> Any:
    """A parameter value as JSON; TypeError names values that cannot be bound."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        if depth >= MAX_PARAM_DEPTH:
            raise TypeError(f"parameter lists may be nested at most {MAX_PARAM_DEPTH} deep")
        return [encode_value(item, depth + 1) for item in value]
    tag = _tag_of(value)
    if tag is None:
        raise TypeError(
            f"a {type(value).__name__} cannot be bound as an SQL parameter; "
            "use a number, string, boolean, None, date/time, Decimal, UUID or a list of them"
        )
    return {"$type": tag, "value": value.isoformat() if tag in ("datetime", "date", "time") else str(value)}


def decode_value(value: Any, depth: int = 0) -> Any:
    """The inverse of encode_value, validating as it goes: only values DuckDB binds as what they are."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**127) <= value < 2**128:
        raise ProtocolError(f"integer parameter {value} is outside DuckDB's 128-bit integers")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("a string parameter is not Unicode text: it holds a lone surrogate") from None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        if depth >= MAX_PARAM_DEPTH:
            raise ProtocolError(f"parameter lists may be nested at most {MAX_PARAM_DEPTH} deep")
        return [decode_value(item, depth + 1) for item in value]
    if isinstance(value, dict) and set(value) == {"$type", "value"} and value["$type"] in TAGS:
        _, parse = _tagged_types()[value["$type"]]
        try:
            parsed = parse(value["value"])
        except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:  # decimal.InvalidOperation too
            raise ProtocolError(f"bad {value['$type']} parameter value {value['value']!r}") from exc
        if value["$type"] == "decimal" and not _fits_decimal(parsed):
            raise ProtocolError(f"decimal parameter {value['value']!r} is not a finite number of at most "
                                f"{MAX_DECIMAL_DIGITS} digits, which DuckDB's DECIMAL holds exactly")
        return parsed
    raise ProtocolError(f"unsupported parameter value {value!r}")


def _fits_decimal(number) -> bool:
    if not number.is_finite():
        return False
    digits, exponent = len(number.as_tuple().digits), number.as_tuple().exponent
    return max(digits, -exponent, digits + max(exponent, 0)) <= MAX_DECIMAL_DIGITS
