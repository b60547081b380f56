"""The widgets a result table is built of, sharing one layout or style model per kind."""

from __future__ import annotations

import functools

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from . import cells


class Parts:
    """The layouts and styles a table's controls share. Each is a widget model of its own (built, serialized
    and sent to the front end), so one per kind instead of one per control keeps a table cheap to show."""

    def __init__(self):
        self.fit = widgets.Layout(width="auto", flex="0 0 auto")
        self.wrap = widgets.Layout(flex_flow="row wrap")
        self.header_layout = widgets.Layout(width="100%", margin="0", padding="0 8px")
        self.narrow = widgets.Layout(width="160px")
        self.plain = widgets.Layout()
        self.button_style = widgets.ButtonStyle()
        self.html_style = HTMLStyle()
        self.description = DescriptionStyle()

    @functools.cached_property
    def text(self) -> TextStyle:
        return TextStyle()

    def button(self, description: str, icon: str, action, key: str = "") -> widgets.Button:
        """A button that calls `action`; `key` names the key that does the same while the table has focus."""
        button = widgets.Button(tooltip=f"{description} ({key})" if key else description, icon=icon,
                                description=description, layout=self.fit, style=self.button_style)
        button.on_click(lambda _: action())
        return button

    def header(self, column, sort_by) -> widgets.Button:
        """A column's name, aligned as its values are; a click sorts by it."""
        button = widgets.Button(description=column.name, tooltip=f"{column.name} {column.type}: click to sort",
                                layout=self.header_layout, style=self.button_style,
                                _dom_classes=("lm-num" if cells.is_number(column.type) else "lm-text",))
        button.on_click(lambda _: sort_by(column.name))
        return button

    def html(self) -> widgets.HTML:
        return widgets.HTML(layout=self.plain, style=self.html_style)
