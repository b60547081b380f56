"""The result table widget, pages fetched from the engine on demand.

What a table shows first is four widget models (each built, serialized and
sent): its box, the pager (pager.py), the grid (grid.py) and the footer; the
tools (filter, go to, profile, export) are standard ipywidgets, built when
first opened. Each column's name is a button: a click sorts the whole result by
it (ascending, descending, off), and the filter box cuts it to the rows where an
SQL condition holds; both are done by the engine that holds the result (the
function, the embedded handler, or the kernel engine) and give a new result
that is paged like the first. The grid draws the names, the types, each column
at a glance (of the whole result or of a filter's rows) and the rows: a click
on a bar or a null share filters (or narrows the filter) to its rows, and
PageDown, PageUp, Home and End turn the page while the table has focus. A column's profile and an export of what is
shown are one call each. Only a bounded number of decoded pages stay in the
kernel, so paging through a result of any size does not grow memory. The
widget also carries a static HTML and text form, which is what papermill,
nbconvert and GitHub show where no widget front end runs.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections import OrderedDict

import ipywidgets as widgets

from lakelambda.protocol import SortKey, SummariesAnswer

from .. import export
from ..client import CallStats, QueryResult
from ..decode import TextRow
from ..errors import EngineError, LakeMagicError, LakeQueryError
from . import cells, conditions, frontend, grid, pager, render
from .parts import shared_parts

PAGE_SIZES = (10, 25, 50, 100, 250, 500)
CACHED_PAGES = 8
_GO_TO = re.compile(r"\s*(?:(p|page)\s*)?([\d,]+)\s*", re.I)


class ResultTable(widgets.VBox):
    """One result's paged table, with the controls that sort, filter, profile and export it."""

    def __init__(self, result: QueryResult, page_size: int):
        self.base = self.result = result
        self.page_size = page_size
        self.offset = 0
        self.sort: tuple[SortKey, ...] = ()
        self.where: str | None = None
        self.tools: widgets.HBox | None = None  # built by show_tools
        self.profile: widgets.HTML | None = None  # built with the tools
        self._message: widgets.HTML | None = None  # made by the first message (see `message`)
        self._busy: widgets.Widget | None = None  # an export's progress bar while it runs
        # Each kept page's rows, and the call to a remote engine that fetched them (None: none, or one on this machine).
        self._pages: OrderedDict[tuple[int, int], tuple[tuple[TextRow, ...], CallStats | None]] = OrderedDict()

        self._widths: list[int] = []  # the shown page's columns, in pixels
        # Column summaries by filter (None: the whole result, in any order), once asked; None while none came.
        self._summaries: dict[str | None, SummariesAnswer | None] = {}
        self._clicked_where: str | None = None  # the filter the last click on a summary made
        self._parts = parts = shared_parts()
        # Each model is made with its first view, which it is sent with: no update follows it.
        shown = self._view(0)
        failed = isinstance(shown, str)
        grid_view, pager_view = ({}, {}) if failed else shown
        self.footer = parts.html("" if failed else self._footer_html())
        # The page turns, the page size, where the page is and the tools' button: one model.
        self.pager = pager.Pager(sizes=sorted(set(PAGE_SIZES) | {page_size}), size=page_size, layout=parts.plain,
                                 **pager_view)
        self.pager.on_msg(self._on_pager_message)
        # The one box that scrolls: the names, types and summaries stick to its top, the row numbers to its left.
        # A click on a name sorts, on a summary's bar filters; it also hears the table's paging keys.
        self.grid = grid.Grid(layout=parts.scroll, _dom_classes=("lm-scroll",), **grid_view)
        self.grid.on_msg(self._on_grid_message)
        super().__init__(self._shown_parts(), layout=parts.plain, _dom_classes=("lakemagic-widget",))
        self._tell(shown if failed else "")
        frontend.after_this_cell(self.show_summaries)

    @property
    def summaries(self) -> SummariesAnswer | None:
        """The whole result's column summaries, once they came."""
        return self._summaries.get(None)

    def show_summaries(self) -> None:
        """Each column at a glance under its header (render.glance_row) for what is shown, the whole result or
        its filter's rows: one call for every column, made once that first page is shown (after the cell or
        the click), once per filter. Summaries are a help: if they fail, the table stays."""
        where, shown = self.where, self.result
        if where in self._summaries:  # asked already: by this cell's end, or by a headless static form first
            return
        self._summaries[where] = None
        try:
            self._summaries[where] = shown.summaries()
        except (LakeQueryError, EngineError):
            return
        self.grid.glances = self._glances_html()
        self.footer.value = self._footer_html()

    def _glances_shown(self) -> SummariesAnswer | None:
        """The summaries of what is shown (in any order: a sort keeps them), once they came."""
        return self._summaries.get(self.where)

    def _on_pager_message(self, _pager, content, _buffers) -> None:
        """A page turn, a page size offered, or the tools' button. Anything else is dropped."""
        message = pager.read_message(content)
        if message is None:
            return
        if message["kind"] == "page":
            self._turn(message["to"])
        elif message["kind"] == "size":
            if message["rows"] in self.pager.sizes:
                self._set_page_size(message["rows"])
        else:
            self.show_tools()

    def _turn(self, to: grid.PageTurn) -> None:
        {"first": self.first, "previous": self.previous, "next": self.next, "last": self.last}[to]()

    def _on_grid_message(self, _grid, content, _buffers) -> None:
        """A click on a name sorts by it, on a summary filters to its rows; a paging key turns the page. Anything
        else is dropped."""
        message = grid.read_message(content)
        if message is None:
            return
        if message["kind"] == "page":
            self._turn(message["to"])
            return
        if message["kind"] == "sort":
            if message["column"] < len(self.base.columns):
                self.sort_by(self.base.columns[message["column"]].name)
            return
        glances = self._glances_shown()
        if glances is None or message["column"] >= min(len(glances.columns), len(self.base.columns)):
            return  # a click on summaries no longer shown
        column, summary = self.base.columns[message["column"]], glances.columns[message["column"]]
        if message["kind"] == "nulls":
            self.filter_to(conditions.nulls(column))
        elif message["bar"] < len(summary.bars):
            try:
                self.filter_to(conditions.bar(column, summary, message["bar"]))
            except conditions.NoCondition as exc:
                self._tell(render.error_html(str(exc)))

    def filter_to(self, condition: str) -> None:
        """Narrow what is shown to the rows where `condition` also holds, as if typed in the filter box, which
        shows it: a click on a filtered result's summary drills down."""
        if self.where is not None:
            kept = self.where if self.where == self._clicked_where else f"({self.where})"
            condition = f"{kept} AND {condition}"
        self._clicked_where = condition
        self.show_tools()
        if self.filter_text.value != condition:
            self.filter_text.value = condition  # its observer applies it
        else:
            self.apply_filter(condition)

    def _glances_html(self) -> str:
        glances = self._glances_shown()
        return "" if glances is None else render.glance_row(glances, self._widths)

    def _arrange(self) -> None:
        self.children = self._shown_parts()

    def _shown_parts(self) -> list[widgets.Widget]:
        """The pager, then the tools and a message under them (next to what caused it), the grid, the profile
        and the footer: only those that exist."""
        tools = [self.tools] if self.tools is not None else []
        below = [child for child in (self._busy, self._message) if child is not None]
        profile = [self.profile] if self.profile is not None else []
        return [self.pager, *tools, *below, self.grid, *profile, self.footer]

    def show_tools(self) -> None:
        """The filter box, go-to box, profile choice and export, built on first use: most tables are only read,
        and each control is a widget model to build and send."""
        self.pager.tools_shown = True
        if self.tools is not None:
            self.tools.layout.display = None
            return
        parts = self._parts
        # Enter (or leaving the box) applies, as the button does.
        self.filter_text = widgets.Text(value=self.where or "", placeholder="filter: an SQL condition, e.g. fare_amount > 10",
                                        continuous_update=False, layout=parts.wide, style=parts.text)
        self.filter_text.observe(lambda _: self.apply_filter(), names="value")
        self.go_text = widgets.Text(placeholder="row or p N", continuous_update=False, layout=parts.short,
                                    style=parts.text)
        self.go_text.observe(lambda _: self.go_to(), names="value")
        self.profile_choice = widgets.Dropdown(options=["profile…"] + [c.name for c in self.base.columns],
                                               layout=parts.narrow, style=parts.description)
        self.profile_choice.observe(self._on_profile_choice, names="value")
        self.export_path = widgets.Text(value="result.parquet", layout=parts.narrow, style=parts.text)
        self.tools = widgets.HBox([
            self.filter_text, parts.button("Filter", "filter", self.apply_filter),
            self.go_text, parts.button("Go", "arrow-right", self.go_to),
            self.profile_choice, self.export_path, parts.button("Export", "download", self.export),
            parts.button("Hide", "chevron-up", self.hide_tools),
        ], layout=widgets.Layout(flex_flow="row wrap"))
        self.profile = parts.html()
        self._arrange()

    def hide_tools(self) -> None:
        """Put the tools row away (what it set stays: the filter and sort go on); the pager's button brings it back."""
        if self.tools is not None:
            self.tools.layout.display = "none"
            self.pager.tools_shown = False

    @property
    def message(self) -> widgets.HTML:
        """The line under the pager and tools for errors and notes, added the first time there is one."""
        if self._message is None:
            self._message = self._parts.html()
            self._arrange()
        return self._message

    def _tell(self, message: str) -> None:
        if message or self._message is not None:
            self.message.value = message

    # --- navigation ---------------------------------------------------------

    @property
    def page_count(self) -> int:
        return max(1, math.ceil(self.result.total_rows / self.page_size))

    def first(self) -> None:
        self._show(0)

    def previous(self) -> None:
        self._show(max(0, self.offset - self.page_size))

    def next(self) -> None:
        shown = len(self._pages.get((self.offset, self.page_size), ((), None))[0]) or self.page_size
        self._show(min(self.offset + shown, (self.page_count - 1) * self.page_size))

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

    def _set_page_size(self, rows: int) -> None:
        self.page_size = self.pager.size = rows
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
            self._tell(render.error_html(exc.shown() + conditions.did_you_mean(exc, self.base.columns)))
            return
        self.result, self.sort, self.where = view, sort, where
        self._pages.clear()
        self._summaries = {key: value for key, value in self._summaries.items() if key in (None, where)}
        frontend.after_this_cell(self.show_summaries)  # this view's, once its first page is shown
        if self.tools is not None:
            self.profile.value = ""
        self._show(0)  # the names too: the sorted one's arrow

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
        self._busy = bar
        self._arrange()
        try:
            rows = export.write(self.result, target, lambda done, total: setattr(bar, "value", done))
        except (LakeMagicError, OSError, ValueError) as exc:
            self._tell(render.error_html(f"Could not export to {target}: {exc}"))
            return
        finally:
            self._busy = None
            self._arrange()
            bar.close()
        where = os.path.abspath(os.path.expanduser(target))
        self._tell(render.note_html(f"exported {render.count(rows, 'row')} to {where}"))

    # --- showing a page -------------------------------------------------------

    def _show(self, offset: int) -> None:
        shown = self._view(offset)
        self._tell(shown if isinstance(shown, str) else "")
        if not isinstance(shown, str):
            for model, view in zip((self.grid, self.pager), shown):
                with model.hold_sync():  # one message for the model's parts
                    for name, value in view.items():
                        setattr(model, name, value)
            self.footer.value = self._footer_html()

    def _view(self, offset: int) -> tuple[dict, dict] | str:
        """The grid's and the pager's state showing the page at `offset`; or, where its rows could not be fetched, why."""
        try:
            rows = self._page(offset)
        except (LakeQueryError, EngineError) as exc:
            return render.error_html(f"Could not fetch rows from {offset + 1:,}: {exc.shown()}")
        self.offset = offset
        table = render.html_table(rows, self.result.columns, first_row_number=offset + 1)
        if offset == 0:  # the static form's table, kept for this view and page size
            self._first_table = (self.result, self.page_size, table.html())
        self._widths = table.widths
        page_number = offset // self.page_size + 1
        return ({"names": render.name_row(self.result.columns, table.widths, self.sort),
                 "types": render.type_row(self.result.columns, table.widths), "glances": self._glances_html(),
                 "rows": table.html(head=False)},
                {"position": (f"page {page_number:,} of {self.page_count:,} · "
                              f"{render.rows_label(offset, len(rows), self.result.total_rows)}"),
                 "at_start": offset == 0, "at_end": offset + len(rows) >= self.result.total_rows})

    def _footer_html(self) -> str:
        view = render.view_label(self.sort, self.where, self.result.total_rows, self.base.total_rows)
        note = render.glance_note(self._glances_shown())
        rows_call = self._pages.get((self.offset, self.page_size), ((), None))[1]
        shown_rows = None if self.where is not None else self.result.total_rows  # a filter's label says them
        figures = render.stats_label(self.base.stats, shown_rows, self.base.reuse_note, rows_call)
        return (f"<div class='lakemagic-summary'>{view}{html.escape(figures)}"
                f"{html.escape(' · ' + note) if note else ''}</div>")

    def _page(self, offset: int) -> tuple[TextRow, ...]:
        """A page's rows, kept with the remote call that fetched them (a sort or filter's first page: its derive
        call), which the footer times."""
        key = (offset, self.page_size)
        if key in self._pages:
            self._pages.move_to_end(key)
            return self._pages[key][0]
        before = self.result.last_call
        rows = cells.text_rows(self.result, offset, self.page_size)
        fetched = self.result.last_call is not before  # a page call of its own, not rows of the first page
        derived = offset == 0 and self.result is not self.base  # a sort or filter's first page: its derive call's
        remote = not self.result.engine.shares_files
        self._pages[key] = rows, (self.result.last_call if remote and (fetched or derived) else None)
        while len(self._pages) > CACHED_PAGES:
            self._pages.popitem(last=False)
        return rows

    # --- static forms ---------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        """The widget, and the first page of what it shows (with its sort and filter) for front ends without widgets.

        Run headless (papermill, `nbconvert --execute`), the static table alone: nbconvert would draw the saved
        widget instead, from scripts it fetches from a CDN, and offline that is a blank output. The widget is
        closed then: nothing will ever draw it."""
        bundle = self._static_bundle()
        if frontend.headless():
            frontend.close_tree(self)
            return bundle
        # The widget's own reference, without ipywidgets' text form: that repr()s every child, and is replaced here.
        return {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": self.model_id}, **bundle}

    def _static_bundle(self) -> dict:
        bundle = {}
        result = self.result
        if frontend.headless():  # nothing comes after this cell there: the summaries go into the static table now
            self.show_summaries()
        first_rows = self._page(0)
        shown_for, size, table = self._first_table
        glances = self._glances_shown()
        if (shown_for, size) != (result, self.page_size) or glances is not None:
            table = render.html_table(first_rows, result.columns, summaries=glances).html()
        view = render.view_label(self.sort, self.where, result.total_rows, self.base.total_rows)
        bundle["text/html"] = render.static_html(table, len(first_rows), result.total_rows, self.base.stats, view,
                                                 self.base.reuse_note)
        bundle["text/plain"] = render.static_text(first_rows, result.columns, result.total_rows, self.base.stats,
                                                  self.base.reuse_note)
        return bundle
