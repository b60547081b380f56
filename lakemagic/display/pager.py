"""A result table's pager: one small front-end module where seven ipywidgets controls and their row were eight
models to build, serialize and send for every table.

It draws the page turns, the page size, where the page is and the tools' button from the state the kernel
sets, and sends back what was clicked or chosen. Every message the front end sends is declared here, tagged by
`kind`; `read_message` dispatches on that tag and refuses anything else: a message is input like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict, Union

import traitlets

from .grid import PageKey, read_page_turn
from .module import FrontEndModule, script

_MAX_ROWS = 1_000_000  # a page size the table could ever offer is below this


class SizeChosen(TypedDict):
    """A page size picked in the choice."""

    kind: Literal["size"]
    rows: int


class ToolsAsked(TypedDict):
    """The `Filter, profile, go to, export` button."""

    kind: Literal["tools"]


Message = Union[PageKey, SizeChosen, ToolsAsked]


class Pager(FrontEndModule):
    """The pager's state: where the page is, whether it is the first or last, the page sizes offered and the one
    chosen, and whether the tools are open (their button is hidden then)."""

    _esm = script(Path(__file__).with_name("pager.js"))
    position = traitlets.Unicode("").tag(sync=True)
    at_start = traitlets.Bool(True).tag(sync=True)
    at_end = traitlets.Bool(True).tag(sync=True)
    sizes = traitlets.List(traitlets.Int()).tag(sync=True)
    size = traitlets.Int(0).tag(sync=True)
    tools_shown = traitlets.Bool(False).tag(sync=True)


def read_message(content: object) -> Message | None:
    """The message `content` is, checked field by field; None for anything else (it is dropped)."""
    if not isinstance(content, dict):
        return None
    kind = content.get("kind")
    if kind == "page":
        return read_page_turn(content)
    if kind == "size" and content.keys() == {"kind", "rows"} and type(content["rows"]) is int \
            and 0 < content["rows"] < _MAX_ROWS:
        return SizeChosen(kind="size", rows=content["rows"])
    if kind == "tools" and content.keys() == {"kind"}:
        return ToolsAsked(kind="tools")
    return None
