"""A result table's scrolling grid, and the table's paging keys: one small front-end module.

Stock ipywidgets can neither send a click on part of an HTML value nor a key press, and each of their controls
is a model of its own to build, serialize and send: a header button per column, the header row and its
layout, the types, the rows and two boxes were a dozen models per table. This one widget (anywidget: its own
front-end extension ships in its wheel, nothing to enable) draws the column names, types, summaries and rows
the kernel renders (render.name_row and render.glance_row mark each name and bar with its column and number)
and sends back what was clicked or pressed. Every message the front end sends is declared here, tagged by
`kind`; `read_message` dispatches on that tag and refuses anything else, as the handler does with requests:
a message is input like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict, Union, get_args

import traitlets

from .module import FrontEndModule, script

PageTurn = Literal["first", "previous", "next", "last"]
# More columns or bars than an answer may hold (protocol's MAX_COLUMNS, MAX_BARS) never name a real one.
_MAX_INDEX = 100_000


class SortClicked(TypedDict):
    """A column's name: sort by it (ascending, descending, off)."""

    kind: Literal["sort"]
    column: int  # the column's position in the result


class BarClicked(TypedDict):
    """A histogram bin or a top value of a column's summary: filter to its rows."""

    kind: Literal["bar"]
    column: int
    bar: int  # the bar's position in its summary


class NullsClicked(TypedDict):
    """A column's null share: filter to its NULL rows."""

    kind: Literal["nulls"]
    column: int


class PageKey(TypedDict):
    """PageDown, PageUp, Home or End pressed while the table has focus."""

    kind: Literal["page"]
    to: PageTurn


Message = Union[SortClicked, BarClicked, NullsClicked, PageKey]


class Grid(FrontEndModule):
    """The names, types, summaries (empty until they come) and rows, each HTML the kernel renders; its clicks and
    the table's keys come back as messages (read_message)."""

    _esm = script(Path(__file__).with_name("grid.js"))
    names = traitlets.Unicode("").tag(sync=True)
    types = traitlets.Unicode("").tag(sync=True)
    glances = traitlets.Unicode("").tag(sync=True)
    rows = traitlets.Unicode("").tag(sync=True)


def read_message(content: object) -> Message | None:
    """The message `content` is, checked field by field; None for anything else (it is dropped)."""
    if not isinstance(content, dict):
        return None
    kind = content.get("kind")
    if kind == "page":
        return read_page_turn(content)
    if kind == "sort" and content.keys() == {"kind", "column"} and _index(content["column"]):
        return SortClicked(kind="sort", column=content["column"])
    if kind == "nulls" and content.keys() == {"kind", "column"} and _index(content["column"]):
        return NullsClicked(kind="nulls", column=content["column"])
    if kind == "bar" and content.keys() == {"kind", "column", "bar"} and _index(content["column"]) \
            and _index(content["bar"]):
        return BarClicked(kind="bar", column=content["column"], bar=content["bar"])
    return None


def read_page_turn(content: dict) -> PageKey | None:
    """A page turn (the grid's keys, the pager's buttons), checked field by field; None for anything else."""
    if content.keys() == {"kind", "to"} and content["kind"] == "page" and content["to"] in get_args(PageTurn):
        return PageKey(kind="page", to=content["to"])
    return None


def _index(value: object) -> bool:
    return type(value) is int and 0 <= value < _MAX_INDEX
