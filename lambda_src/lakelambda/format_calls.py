"""The table-format functions a query calls itself (iceberg_scan(...), delta_scan(...)), checked and pinned.

formats.check proves what a read of a table's snapshot opens; the call then
runs pinned to that snapshot: a table's folder becomes the metadata file
that was checked (Iceberg), or gains the Delta version that was checked.
Without the pin the extension would find the current snapshot again when
it runs: a version hint or a commit written in between (or a hint the check
refuses, which iceberg_snapshots would follow) would be read unchecked.
"""

from __future__ import annotations

import functools

from .errors import PermissionDenied
from .formats import DELTA, ICEBERG, SNAPSHOT_OPTIONS, check
from .sandbox import FORMAT_FUNCTIONS, Checked, option_name
from .sql import character_offsets, parse_tree, quote_literal, start_of, walk


def pin_calls(con, lake, checked: Checked) -> Checked:
    """`checked` (a sandbox-approved query) with every table-format call it makes checked and pinned."""
    text, offsets, pins = checked.text, None, []
    for name, function in _format_calls(text):
        path, options = call_arguments(function)
        snapshot = options.get(SNAPSHOT_OPTIONS[FORMAT_FUNCTIONS[name]])
        pinned = check(con, lake, name, path, snapshot)
        if FORMAT_FUNCTIONS[name] == ICEBERG and pinned != path:
            replacement = quote_literal(pinned)
        elif FORMAT_FUNCTIONS[name] == DELTA and snapshot is None:
            replacement = f"{quote_literal(path)}, version => {int(pinned.rpartition('/')[2][: -len('.json')])}"
        else:
            continue  # already pinned by the call itself
        offsets = offsets or character_offsets(text)
        location = start_of(_path_argument(function))
        at = offsets[location] if location is not None and location < len(offsets) else None
        if at is None or not text.startswith(quote_literal(path), at):
            raise PermissionDenied(f"write the path of {name}() as one quoted string", checked.position_as_written(at))
        pins.append((at, len(quote_literal(path)), replacement))
    return _spliced(checked, pins) if pins else checked


def _spliced(checked: Checked, pins: list[tuple[int, int, str]]) -> Checked:
    """`checked` with `pins` (where in its text, length there, new text) made, its splices mapping positions
    back to the query as written: a pin over a path the sandbox made full replaces that splice."""
    text = checked.text
    for at, length, replacement in sorted(pins, reverse=True):
        text = text[:at] + replacement + text[at + length:]
    now, shift = {}, 0  # each sandbox splice, by where it is in checked.text
    for at, written, full in checked.splices:
        now[at + shift] = (at, written)
        shift += full - written
    splices = dict((at, (written, full)) for at, written, full in checked.splices)
    for at, length, replacement in pins:
        original, written = now.get(at) or (checked.position_as_written(at) or 0, length)  # at is never None
        splices[original] = (written, len(replacement))
    return Checked(text, tuple((at, written, full) for at, (written, full) in sorted(splices.items())))


def calls_table_formats(statement: str) -> bool:
    """Whether `statement` calls iceberg_scan, delta_scan, ... itself (rather than reading a table by name)."""
    return bool(_format_calls(statement))


@functools.lru_cache(maxsize=128)  # asked of every query: a repeated one's tree is walked once (read, never changed)
def _format_calls(statement: str) -> tuple[tuple[str, dict], ...]:
    tree = parse_tree(statement)
    found: list[tuple[str, dict]] = []
    for node in walk({} if tree.get("error") else tree):
        function = node.get("function") if node.get("type") == "TABLE_FUNCTION" else None
        name = function.get("function_name", "").lower() if isinstance(function, dict) else ""
        if isinstance(function, dict) and name in FORMAT_FUNCTIONS:
            found.append((name, function))
    return tuple(found)


def _path_argument(function: dict) -> dict:
    return next(argument for argument in function.get("children", []) if option_name(argument) is None)


def call_arguments(function: dict) -> tuple[str, dict[str, int]]:
    """A sandbox-approved table-format call's path and its integer options, from its parse tree."""
    path, options = "", {}
    for argument in function.get("children", []):
        value = (argument.get("right") if argument.get("type") == "COMPARE_EQUAL" else argument).get("value") or {}
        name = option_name(argument)
        if name is None:
            path = str(value["value"])
        else:
            options[name.lower()] = int(value["value"])
    return path, options
