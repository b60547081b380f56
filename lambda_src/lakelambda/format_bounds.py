"""A data file's lower and upper statistics, as the text the notebook's pruning reads (fanout/transforms.py):
Iceberg's `lower_bounds`/`upper_bounds` (binary single-value serialization) and Delta's add `stats`
(minValues/maxValues), for top-level columns of the types pruning uses (integers, decimals, dates,
timestamps). A bound that cannot be decoded exactly is left out: its column is then not pruned in that file.

Timestamps are naive text in UTC (Iceberg's timestamptz and Delta's timestamp are instants): the notebook
reads them in its UTC database. Standard library only.
"""

from __future__ import annotations

import datetime
import json
import re
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation

from .format_answers import BOUND_PATTERN, MAX_BOUND_CHARS

_EPOCH = datetime.datetime(1970, 1, 1)
_DECIMAL = re.compile(r"decimal\(\s*([0-9]{1,2})\s*,\s*([0-9]{1,2})\s*\)")
# A Delta writer may print a decimal statistic through a double: exact only up to 15 digits.
_EXACT_DOUBLE_DIGITS = 15
_EXACT = Context(prec=100, traps=[Inexact, InvalidOperation])


def iceberg_bound(kind: object, raw: object) -> str | None:
    """An Iceberg bound of a column of type `kind` as text, or None where it is not one this decodes exactly."""
    if not isinstance(raw, (bytes, bytearray)) or not isinstance(kind, str):
        return None
    raw = bytes(raw)
    if kind in ("int", "long", "date") and len(raw) == 4 or kind == "long" and len(raw) == 8:  # int promoted to long
        number = int.from_bytes(raw, "little", signed=True)
        return _bound(_date(number) if kind == "date" else str(number))
    if kind in ("timestamp", "timestamptz") and len(raw) == 8:
        return _bound(_instant(int.from_bytes(raw, "little", signed=True)))
    decimal = _DECIMAL.fullmatch(kind)
    if decimal and 0 < len(raw) <= 16:
        return _bound(_scaled(int.from_bytes(raw, "big", signed=True), int(decimal.group(2))))
    return None


def iceberg_bounds(columns: dict[int, tuple[str, object]], bounds: object) -> dict[str, str]:
    """{column name: bound as text} of a manifest entry's bounds (read_avro's MAP(INTEGER, BLOB)), keyed by
    field id: only the current schema's top-level columns (`columns`: field id -> (name, type))."""
    found = {}
    for field_id, raw in bounds.items() if isinstance(bounds, dict) else ():
        if field_id in columns:
            name, kind = columns[field_id]
            text = iceberg_bound(kind, raw)
            if text is not None:
                found[name] = text
    return found


def delta_bounds(columns: dict[str, object], stats: object) -> tuple[dict[str, str], dict[str, str]]:
    """(lower, upper) by column from a Delta add's `stats` JSON text, for the top-level columns of `columns`
    (name -> the schema's type) whose type pruning uses; numbers kept as their exact text."""
    try:
        parsed = json.loads(stats, parse_float=str, parse_int=str) if isinstance(stats, str) else {}
    except (ValueError, RecursionError):
        return {}, {}
    if not isinstance(parsed, dict):
        return {}, {}
    found: list[dict[str, str]] = []
    for side in ("minValues", "maxValues"):
        values = parsed.get(side)
        found.append({name: text for name, value in (values.items() if isinstance(values, dict) else ())
                      if name in columns and (text := delta_bound(columns[name], value)) is not None})
    return found[0], found[1]


def delta_bound(kind: object, value: object) -> str | None:
    """A Delta statistic (its JSON text for a number) of a column of type `kind` as text, or None."""
    if not isinstance(value, str) or not isinstance(kind, str):
        return None  # a nested column's statistics are an object
    if kind in ("byte", "short", "integer", "long"):
        return _bound(value) if re.fullmatch(r"-?[0-9]{1,20}", value) else None
    if kind == "date":
        return _bound(value) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value) else None
    if kind in ("timestamp", "timestamp_ntz"):
        try:  # Python 3.10 reads no "Z"
            instant = datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            return None
        if instant.tzinfo is not None:
            try:
                instant = instant.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            except OverflowError:
                return None
        return _bound(instant.isoformat(" "))
    decimal = _DECIMAL.fullmatch(kind)
    if decimal and int(decimal.group(1)) <= _EXACT_DOUBLE_DIGITS and len(value) <= MAX_BOUND_CHARS:
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        try:  # exactly, or not at all: a value with more fraction digits than the scale is none of the column's
            unscaled = _EXACT.scaleb(Decimal(value), scale)
            if unscaled != unscaled.to_integral_value() or abs(unscaled) >= 10 ** precision:
                return None
        except DecimalException:
            return None
        return _bound(_scaled(int(unscaled), scale))
    return None


def _date(days: int) -> str | None:
    try:
        return (_EPOCH.date() + datetime.timedelta(days=days)).isoformat()
    except OverflowError:
        return None


def _instant(micros: int) -> str | None:
    try:
        return (_EPOCH + datetime.timedelta(microseconds=micros)).isoformat(" ")
    except OverflowError:
        return None


def _scaled(unscaled: int, scale: int) -> str:
    """The decimal `unscaled` * 10^-scale, exactly, as text."""
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    text = f"{digits[:-scale]}.{digits[-scale:]}" if scale else digits
    return f"-{text}" if unscaled < 0 else text


def _bound(text: str | None) -> str | None:
    """`text` if it is what a bound may be on the wire, else None (left out)."""
    return text if text is not None and len(text) <= MAX_BOUND_CHARS and BOUND_PATTERN.fullmatch(text) else None
