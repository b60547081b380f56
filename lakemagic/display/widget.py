"""The result table widget: standard ipywidgets, pages fetched from the engine on demand.

Each column's header is a Button: a click sorts the whole result by it
(ascending, descending, off), and the filter box cuts it to the rows where an
SQL condition holds; both are done by the engine over the stored result (or
in the kernel's DuckDB for a result it holds whole) and give a new result
that is paged like the first. A column's profile and an export of what is
shown are one call each. Only a bounded number of decoded pages stay in the
kernel, so paging through a result of any size does not grow memory. The
widget also carries a static HTML and text form, which is what papermill,
nbconvert and GitHub show where no widget front end runs.
"""

from __future__ import annotations

import functools
import math
import re
from collections import OrderedDict

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle
import pandas as pd

from lakelambda.protocol import SortKey

from .. import export
from ..client import QueryResult
from ..errors import EngineError, LakeMagicError, LakeQueryError
from . import render

PAGE_SIZES = (10, 25, 50, 100, 250, 500)
CACHED_PAGES = 8
SORT_ARROWS = {False: "▲", True: "▼"}
_GO_TO = re.compile(r"\s*(?:(p|page)\s*)?([\d,]+)\s*", re.I)


class _Parts:
    """The layouts and styles a table's controls share. Each is a widget model of its own (built, serialized
    and sent to the front end), so one per kind instead of one per control keeps a table cheap to show."""

    def __init__(self):
        self.fit = widgets.Layout(width="auto", flex="0 0 auto")
        self.header_layout = widgets.Layout(width="100%", margin="0", padding="0 4px")
        self.narrow = widgets.Layout(width="160px")
        self.plain = widgets.Layout()
        self.button_style = widgets.ButtonStyle()
        self.html_style = HTMLStyle()
        self.description = DescriptionStyle()

    @functools.cached_property
    def text(self) -> TextStyle:
        return TextStyle()

    def button(self, tooltip: str, icon: str, action) -> widgets.Button:
        button = widgets.Button(tooltip=tooltip, icon=icon, description=tooltip, layout=self.fit,
                                style=self.button_style)
        button.on_click(lambda _: action())
        return button

    def header(self, name: str, sort_by) -> widgets.Button:
        button = widgets.Button(description=name, tooltip=f"sort by {name}", layout=self.header_layout,
                                style=self.button_style)
        button.on_click(lambda _: sort_by(name))
        return button

    def html(self) -> widgets.HTML:
        return widgets.HTML(layout=self.plain, style=self.html_style)


class ResultTable(widgets.VBox):
    """One result's paged table, with the controls that sort, filter, profile and export it."""

    def __init__(self, result: QueryResult, page_size: int):
        self.base = self.result = result
        self.page_size = page_size
        self.offset = 0
        self.sort: tuple[SortKey, ...] = ()
        self.where: str | None = None
        self.tools: widgets.HBox | None = None  # built by show_tools
        self._pages: OrderedDict[tuple[int, int], tuple[int, pd.DataFrame]] = OrderedDict()
        first_rows, self._first_frame = result.rows(0, page_size)
        self._pages[(0, page_size)] = (first_rows, self._first_frame)

        parts = _Parts()
        self.table, self.footer = parts.html(), parts.html()
        self._error: widgets.HTML | None = None  # made by the first message (see `error`)
        self.position = widgets.Label(layout=parts.fit)
        self.first_button = parts.button("First", "angle-double-left", self.first)
        self.previous_button = parts.button("Previous", "angle-left", self.previous)
        self.next_button = parts.button("Next", "angle-right", self.next)
        self.last_button = parts.button("Last", "angle-double-right", self.last)
        sizes = sorted(set(PAGE_SIZES) | {page_size})
        self.size_choice = widgets.Dropdown(options=sizes, value=page_size, description="rows/page",
                                            layout=parts.narrow, style=parts.description)
        self.size_choice.observe(self._on_size_change, names="value")
        self.tools_button = parts.button("Filter, profile, go to, export", "sliders", self.show_tools)
        controls = widgets.HBox([self.first_button, self.previous_button, self.next_button, self.last_button,
                                 self.size_choice, self.position, self.tools_button], layout=parts.plain)
        self.headers = [parts.header(column.name, self.sort_by) for column in result.columns]
        self.header_row = widgets.GridBox(
            [parts.html()] + self.headers, layout=widgets.Layout(grid_gap="0px", overflow="hidden"))
        self._parts = parts
        super().__init__([controls, self.header_row, self.table, self.footer], layout=parts.plain)
        self._show(0)

    def show_tools(self) -> None:
        """The filter box, go-to box, profile choice and export, built on first use: most tables are only read,
        and these controls would add half again to what a table costs to show."""
        if self.tools is not None:
            return
        parts = self._parts
        # Enter (or leaving the box) applies, as the button does.
        self.filter_text = widgets.Text(value=self.where or "", placeholder="filter: an SQL condition, e.g. fare_amount > 10",
                                        continuous_update=False, layout=widgets.Layout(width="360px"), style=parts.text)
        self.filter_text.observe(lambda _: self.apply_filter(), names="value")
        self.go_text = widgets.Text(placeholder="row or p N", continuous_update=False,
                                    layout=widgets.Layout(width="100px"), style=parts.text)
        self.go_text.observe(lambda _: self.go_to(), names="value")
        self.profile_choice = widgets.Dropdown(options=["profile…"] + [c.name for c in self.base.columns],
                                               layout=parts.narrow, style=parts.description)
        self.profile_choice.observe(self._on_profile_choice, names="value")
        self.export_path = widgets.Text(value="result.parquet", layout=parts.narrow, style=parts.text)
        self.tools = widgets.HBox([
            self.filter_text, parts.button("Filter", "filter", self.apply_filter),
            self.go_text, parts.button("Go", "arrow-right", self.go_to),
            self.profile_choice, self.export_path, parts.button("Export", "download", self.export),
        ], layout=parts.plain)
        self.profile = parts.html()
        self.tools_button.layout = widgets.Layout(display="none")
        self.children = self.children[:1] + (self.tools,) + self.children[1:-1] + (self.profile, self.children[-1])

    @property
    def error(self) -> widgets.HTML:
        """The line under the table for errors and notes, added the first time there is one."""
        if self._error is None:
            self._error = self._parts.html()
            at = self.children.index(self.table) + 1
            self.children = self.children[:at] + (self._error,) + self.children[at:]
        return self._error

    def _tell(self, message: str) -> None:
        if message or self._error is not None:
            self.error.value = message

    # --- navigation ---------------------------------------------------------

    @property
    def page_count(self) -> int:
        return max(1, math.ceil(self.result.total_rows / self.page_size))

    def first(self) -> None:
        self._show(0)

    def previous(self) -> None:
        self._show(max(0, self.offset - self.page_size))

    def next(self) -> None:
        rows, _ = self._pages.get((self.offset, self.page_size), (self.page_size, None))
        self._show(min(self.offset + rows, (self.page_count - 1) * self.page_size))

    def last(self) -> None:
        self._show((self.page_count - 1) * self.page_size)

    def go_to(self, text: str | None = None) -> None:
        """Row N (its page), or page N with `p N`: one page request wherever it is."""
        self.show_tools()
        match = _GO_TO.fullmatch(self.go_text.value if text is None else text)
        if not match:
            self._tell(render.error_html("go to: a row number, or p and a page number (p 12)"))
            return
        number = max(1, int(match.group(2).replace(",", "")))
        row = (number - 1) * self.page_size if match.group(1) else number - 1
        row = min(row, max(0, self.result.total_rows - 1))
        self._show(row - row % self.page_size)

    def _on_size_change(self, change) -> None:
        self.page_size = change["new"]
        self._show(self.offset - self.offset % self.page_size)

    # --- sort, filter, profile, export ---------------------------------------

    def sort_by(self, name: str) -> None:
        """A header click: ascending, then descending, then the result's own order."""
        current = self.sort[0] if self.sort and self.sort[0].column == name else None
        if current is None:
            sort = (SortKey(name, False),)
        elif not current.descending:
            sort = (SortKey(name, True),)
        else:
            sort = ()
        self._derive(sort, self.where)

    def apply_filter(self, where: str | None = None) -> None:
        self.show_tools()
        text = (self.filter_text.value if where is None else where).strip()
        self._derive(self.sort, text or None)

    def _derive(self, sort: tuple[SortKey, ...], where: str | None) -> None:
        """Show the whole result sorted and filtered; an error leaves everything as it was."""
        if (sort, where) == (self.sort, self.where):
            self._tell("")
            return
        try:
            view = self.base if not sort and where is None else self.base.derive(sort, where, self.page_size)
        except (LakeQueryError, EngineError) as exc:
            self._tell(render.error_html(exc.shown()))
            return
        self.result, self.sort, self.where = view, sort, where
        self._pages.clear()
        if self.tools is not None:
            self.profile.value = ""
        for header, column in zip(self.headers, self.base.columns):
            key = next((k for k in sort if k.column == column.name), None)
            header.description = column.name + (f" {SORT_ARROWS[key.descending]}" if key else "")
        self._show(0)

    def _on_profile_choice(self, change) -> None:
        if change["new"] == "profile…":
            self.profile.value = ""
            return
        try:
            profile = self.result.profile(change["new"])
        except (LakeQueryError, EngineError) as exc:
            self._tell(render.error_html(exc.shown()))
            return
        self._tell("")
        self.profile.value = render.profile_html(profile)

    def export(self, path: str | None = None) -> None:
        """What the table shows (the whole result, or its sort and filter) into a local file."""
        self.show_tools()
        target = self.export_path.value if path is None else path
        bar = widgets.IntProgress(min=0, max=max(1, self.result.info.result_bytes), description="exporting")
        self._tell("")
        self.children = self.children + (bar,)
        try:
            rows = export.write(self.result, target, lambda done, total: setattr(bar, "value", done))
        except (LakeMagicError, OSError, ValueError) as exc:
            self._tell(render.error_html(f"Could not export to {target}: {exc}"))
            return
        finally:
            self.children = tuple(child for child in self.children if child is not bar)
            bar.close()
        self._tell(render.note_html(f"exported {rows:,} rows to {target}"))

    # --- showing a page -------------------------------------------------------

    def _show(self, offset: int) -> None:
        try:
            row_count, frame = self._page(offset)
        except (LakeQueryError, EngineError) as exc:
            self._tell(render.error_html(f"Could not fetch rows from {offset + 1:,}: {exc.shown()}"))
            return
        self._tell("")
        self.offset = offset
        table = render.html_table(frame, self.result.columns, first_row_number=offset + 1)
        if offset == 0:  # the static form's table, kept for this view and page size
            self._first_table = (self.result, self.page_size, table.html)
        self.header_row.layout.grid_template_columns = " ".join(f"{width}px" for width in table.widths)
        self.header_row.layout.width = f"{sum(table.widths)}px"
        self.table.value = f"<div class='lm-widget'>{table.html}</div>"
        page_number = offset // self.page_size + 1
        self.position.value = (
            f"page {page_number:,} of {self.page_count:,} · "
            f"{render.rows_label(offset, row_count, self.result.total_rows)}"
        )
        view = render.view_label(self.sort, self.where, self.result.total_rows, self.base.total_rows)
        self.footer.value = (f"<div class='lakemagic-summary'>{view}"
                             f"{render.stats_label(self.result.last_call, self.result.total_rows, self.base.reuse_note)}</div>")
        at_start = offset == 0
        at_end = offset + row_count >= self.result.total_rows
        self.first_button.disabled = self.previous_button.disabled = at_start
        self.next_button.disabled = self.last_button.disabled = at_end

    def _page(self, offset: int) -> tuple[int, pd.DataFrame]:
        key = (offset, self.page_size)
        if key in self._pages:
            self._pages.move_to_end(key)
            return self._pages[key]
        self._pages[key] = self.result.rows(offset, self.page_size)
        while len(self._pages) > CACHED_PAGES:
            self._pages.popitem(last=False)
        return self._pages[key]

    # --- static forms ---------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        """The widget, and the first page of what it shows (with its sort and filter) for front ends without widgets."""
        # The widget's own reference, without ipywidgets' text form: that repr()s every child, and is replaced here.
        bundle = {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                               "model_id": self.model_id}}
        result = self.result
        first_rows, first_frame = self._page(0)
        shown_for, size, table = self._first_table
        if (shown_for, size) != (result, self.page_size):
            table = render.html_table(first_frame, result.columns).html
        view = render.view_label(self.sort, self.where, result.total_rows, self.base.total_rows)
        bundle["text/html"] = render.static_html(table, first_rows, result.total_rows, result.stats, view,
                                                 self.base.reuse_note)
        bundle["text/plain"] = render.static_text(first_frame, result.columns, result.total_rows, result.stats,
                                                  self.base.reuse_note)
        return bundle
