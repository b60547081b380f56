"""The strip of column summaries above a result table, and the table's paging keys: one small front-end module.

Stock ipywidgets can neither send a click on part of an HTML value nor a key press, so this one widget
(anywidget: its own front-end extension ships in its wheel, nothing to enable) draws the strip the kernel
renders (render.glance_row marks each bar with its column and number) and sends back what was clicked or
pressed. Every message the front end sends is declared here, tagged by `kind`; `read_message` dispatches on
that tag and refuses anything else, as the handler does with requests: a message is input like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict, Union, get_args

import anywidget
import traitlets

PageTurn = Literal["first", "previous", "next", "last"]
# More columns or bars than an answer may hold (protocol's MAX_COLUMNS, MAX_BARS) never name a real one.
_MAX_INDEX = 100_000


class BarClicked(TypedDict):
    """A histogram bin or a top value of a column's summary: filter to its rows."""

    kind: Literal["bar"]
    column: int  # the column's position in the result
    bar: int  # the bar's position in its summary


class NullsClicked(TypedDict):
    """A column's null share: filter to its NULL rows."""

    kind: Literal["nulls"]
    column: int


class PageKey(TypedDict):
    """PageDown, PageUp, Home or End pressed while the table has focus."""

    kind: Literal["page"]
    to: PageTurn


Message = Union[BarClicked, NullsClicked, PageKey]


class SummaryStrip(anywidget.AnyWidget):
    """Each column at a glance (HTML from render.glance_row, empty until the summaries come); its clicks and the
    table's keys come back as messages (read_message)."""

    _esm = Path(__file__).with_name("strip.js")
    value = traitlets.Unicode("").tag(sync=True)


def read_message(content: object) -> Message | None:
    """The message `content` is, checked field by field; None for anything else (it is dropped)."""
    if not isinstance(content, dict):
        return None
    kind = content.get("kind")
    if kind == "page" and content.keys() == {"kind", "to"} and content["to"] in get_args(PageTurn):
        return PageKey(kind="page", to=content["to"])
    if kind == "nulls" and content.keys() == {"kind", "column"} and _index(content["column"]):
        return NullsClicked(kind="nulls", column=content["column"])
    if kind == "bar" and content.keys() == {"kind", "column", "bar"} and _index(content["column"]) \
            and _index(content["bar"]):
        return BarClicked(kind="bar", column=content["column"], bar=content["bar"])
    return None


def _index(value: object) -> bool:
    return type(value) is int and 0 <= value < _MAX_INDEX
