"""The result table widget: standard ipywidgets, pages fetched from the engine on demand.

Only a bounded number of decoded pages stay in the kernel, so paging
through a result of any size does not grow memory. The widget also carries
a static HTML and text form, which is what papermill, nbconvert and GitHub
show where no widget front end runs.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import ipywidgets as widgets
import pandas as pd

from ..client import QueryResult
from ..errors import EngineError, LakeQueryError
from . import render

PAGE_SIZES = (10, 25, 50, 100, 250, 500)
CACHED_PAGES = 8


class ResultTable(widgets.VBox):
    def __init__(self, result: QueryResult, page_size: int):
        self.result = result
        self.page_size = page_size
        self.offset = 0
        self._pages: OrderedDict[tuple[int, int], tuple[int, pd.DataFrame]] = OrderedDict()
        first_rows, self._first_frame = result.rows(0, page_size)
        self._pages[(0, page_size)] = (first_rows, self._first_frame)

        self.table = widgets.HTML()
        self.position = widgets.Label()
        self.error = widgets.HTML()
        self.footer = widgets.HTML()
        self.first_button = self._button("First", "angle-double-left", self.first)
        self.previous_button = self._button("Previous", "angle-left", self.previous)
        self.next_button = self._button("Next", "angle-right", self.next)
        self.last_button = self._button("Last", "angle-double-right", self.last)
        sizes = sorted(set(PAGE_SIZES) | {page_size})
        self.size_choice = widgets.Dropdown(
            options=sizes, value=page_size, description="rows/page", layout=widgets.Layout(width="160px")
        )
        self.size_choice.observe(self._on_size_change, names="value")
        controls = widgets.HBox(
            [self.first_button, self.previous_button, self.next_button, self.last_button, self.size_choice, self.position]
        )
        super().__init__([controls, self.table, self.error, self.footer])
        self._show(0)
        self._first_table = self.table.value

    @staticmethod
    def _button(tooltip: str, icon: str, action) -> widgets.Button:
        button = widgets.Button(tooltip=tooltip, icon=icon, description=tooltip, layout=widgets.Layout(width="auto"))
        button.on_click(lambda _: action())
        return button

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

    def _on_size_change(self, change) -> None:
        self.page_size = change["new"]
        self._show(self.offset - self.offset % self.page_size)

    def _show(self, offset: int) -> None:
        try:
            row_count, frame = self._page(offset)
        except (LakeQueryError, EngineError) as exc:
            self.error.value = render.error_html(f"Could not fetch rows from {offset + 1:,}: {exc.shown()}")
            return
        self.error.value = ""
        self.offset = offset
        self.table.value = render.html_table(frame, self.result.columns, first_row_number=offset + 1)
        page_number = offset // self.page_size + 1
        self.position.value = (
            f"page {page_number:,} of {self.page_count:,} · "
            f"{render.rows_label(offset, row_count, self.result.total_rows)}"
        )
        self.footer.value = f"<div class='lakemagic-summary'>{render.stats_label(self.result.last_call, self.result.total_rows)}</div>"
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
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        result = self.result
        bundle["text/html"] = render.static_html(self._first_table, len(self._first_frame), result.total_rows, result.stats)
        bundle["text/plain"] = render.static_text(self._first_frame, result.columns, result.total_rows, result.stats)
        return bundle
