"""What a notebook keeps of a cell's captured outputs.

A query that takes over a second shows a waiting line first and puts its result (or nothing) in that line's
place by a display update, so a test that reads raw captured outputs would see the line on a slow machine.
"""

from __future__ import annotations


def kept(outputs) -> list:
    """The outputs a notebook saves: each update replaces the output it names; emptied outputs are dropped."""
    saved, by_id = [], {}
    for output in outputs:
        display_id = (output.transient or {}).get("display_id")
        if output.update and display_id in by_id:
            saved[by_id[display_id]] = output
        elif not output.update:
            if display_id:
                by_id[display_id] = len(saved)
            saved.append(output)
    return [output for output in saved if any(output.data.values())]
