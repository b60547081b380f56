"""Where a table's output goes: a kernel with a person's front end, a headless run (papermill, nbconvert), or
no kernel at all (a terminal, a test). The widget asks here what comes after its cell, and whether anyone will
ever draw it.
"""

from __future__ import annotations

import IPython
import ipywidgets as widgets


def after_this_cell(callback) -> None:
    """Run `callback` once the running cell has finished and its output is shown, on the kernel's own loop
    (so no thread shares the engine); where there is no kernel (a terminal, a test), never."""
    kernel = getattr(IPython.get_ipython(), "kernel", None)
    if kernel is not None:
        kernel.io_loop.add_callback(callback)


def headless() -> bool:
    """Whether the cell runs where nobody can answer `input()`: nbclient (papermill, `nbconvert --execute`)
    asks the kernel so, and every front end a person uses (JupyterLab, Notebook, VS Code, Colab) allows it."""
    shell = IPython.get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return False
    parent = kernel.get_parent("shell") or {}
    return parent.get("content", {}).get("allow_stdin") is False


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget and every widget under it, with their layouts and styles."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            part.close()
    widget.close()
