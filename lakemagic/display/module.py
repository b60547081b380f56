"""The base of the table's own front-end modules (grid.py, pager.py): anywidget's, their module declared once.

anywidget's front end draws a model from the script in its `_esm` state, named by its `_anywidget_id`.
AnyWidget itself adds those as traits of each instance it makes, and traitlets adds a trait to an instance by
making it a class of its own: building that class was about a quarter of a table's first view (0.25 ms a
model). Declared on the class here, they are sent as they are and no class is made per model.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets


def script(path: Path) -> traitlets.Unicode:
    """A module's `_esm` trait: the script's text, read once, as anywidget's front end loads it."""
    return traitlets.Unicode(path.read_text(encoding="utf-8")).tag(sync=True)


class FrontEndModule(anywidget.AnyWidget):
    """A model of anywidget's front end whose subclass declares `_esm = script(...)`."""

    _anywidget_id = traitlets.Unicode().tag(sync=True)

    @traitlets.default("_anywidget_id")
    def _default_anywidget_id(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}"  # the name AnyWidget would give it

    def add_traits(self, **traits) -> None:
        """Add only the traits the class does not declare already (AnyWidget adds its own to every instance)."""
        added = {name: trait for name, trait in traits.items() if not self.has_trait(name)}
        if added:
            super().add_traits(**added)
