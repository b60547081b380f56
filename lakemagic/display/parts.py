"""The widgets a result table is built of, sharing one layout or style model per kind across a kernel's tables."""

from __future__ import annotations

import functools

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

# The cells scroll inside this height under the names; the pager and footer stay in view.
GRID_HEIGHT = "520px"
_shared: Parts | None = None


def shared_parts() -> Parts:
    """The kernel's one set of parts, made again once any of them is closed (a headless run closes each table
    with its parts; `Widget.close_all()` closes everything): a closed model cannot be drawn."""
    global _shared
    if _shared is None or not _shared.is_open():
        _shared = Parts()
    return _shared


class Parts:
    """The layouts and styles a table's controls share. Each is a widget model of its own (built, serialized
    and sent to the front end), so one per kind, for every table of the kernel, instead of one per control keeps
    a table cheap to show. None of them changes after it is made: a control whose look changes gets its own."""

    def __init__(self):
        self.fit = widgets.Layout(width="auto", flex="0 0 auto")
        self.narrow = widgets.Layout(width="160px")
        self.plain = widgets.Layout()
        self.scroll = widgets.Layout(overflow="auto", max_height=GRID_HEIGHT, align_items="flex-start")
        self.button_style = widgets.ButtonStyle()
        self.html_style = HTMLStyle()
        self.description = DescriptionStyle()

    def is_open(self) -> bool:
        return all(part.comm is not None for part in vars(self).values() if isinstance(part, widgets.Widget))

    # The tools row's, made when a table's tools are first opened.
    @functools.cached_property
    def text(self) -> TextStyle:
        return TextStyle()

    @functools.cached_property
    def wide(self) -> widgets.Layout:
        return widgets.Layout(width="300px")

    @functools.cached_property
    def short(self) -> widgets.Layout:
        return widgets.Layout(width="100px")

    def button(self, description: str, icon: str, action) -> widgets.Button:
        """A button that calls `action`."""
        button = widgets.Button(tooltip=description, icon=icon, description=description, layout=self.fit,
                                style=self.button_style)
        button.on_click(lambda _: action())
        return button

    def html(self, value: str = "") -> widgets.HTML:
        return widgets.HTML(value, layout=self.plain, style=self.html_style)
