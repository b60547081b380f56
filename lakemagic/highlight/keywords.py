"""Writes src/keywords.ts: DuckDB's keywords, which the extension colours as keywords.

Run by `make labextension` with the project's DuckDB; tests/test_highlight_build.py checks the
committed file against the installed DuckDB, so an upgrade that adds keywords is noticed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb

TARGET = Path(__file__).resolve().parent / "src" / "keywords.ts"


def keywords_module() -> str:
    words = [word for (word,) in duckdb.sql("SELECT keyword_name FROM duckdb_keywords() ORDER BY 1").fetchall()]
    body = " +\n".join(f"  '{line} '" for line in textwrap.wrap(" ".join(words), 100))
    return (f"// DuckDB {duckdb.__version__}'s keywords (duckdb_keywords()), written by keywords.py: do not edit.\n"
            f"export const DUCKDB_KEYWORDS =\n{body};\n")


if __name__ == "__main__":
    TARGET.write_text(keywords_module())
