"""dbt-style views kept by the notebook: named queries that later queries use by name.

The Lambda is stateless, so the notebook holds the views and sends the ones
a query uses with it, in dependency order. Which names a query uses is what
DuckDB's own parser finds in it. A materialized view is a file in the lake's
dashboard/ folder; from then on its name reads that file, so dashboards read
the artifact rather than recomputing it from raw data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from lakelambda.protocol import PARAM_NAME_PATTERN, View
from lakelambda.sql import parameter_names, quote_literal, referenced_tables

from .errors import ViewError


@dataclass
class SavedView:
    name: str
    sql: str
    materialized_path: str | None = None
    materialized_at: dt.datetime | None = None


class ViewRegistry:
    def __init__(self) -> None:
        self._views: dict[str, SavedView] = {}

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._views

    def __getitem__(self, name: str) -> SavedView:
        return self._views[name.lower()]

    def save(self, name: str, sql: str) -> SavedView:
        """Keep `sql` as view `name` (replacing an older definition and its materialization)."""
        if not PARAM_NAME_PATTERN.fullmatch(name):
            raise ViewError(f"{name!r} is not a valid view name; use letters, digits and _")
        if parameter_names(sql):
            raise ViewError(f"view {name} uses $parameters, which a saved view cannot hold")
        previous = self._views.get(name.lower())
        self._views[name.lower()] = SavedView(name, sql.strip().rstrip(";").strip())
        try:
            self.resolve(f"SELECT * FROM {name}")
        except ViewError:
            if previous is None:
                del self._views[name.lower()]
            else:
                self._views[name.lower()] = previous
            raise
        return self._views[name.lower()]

    def mark_materialized(self, name: str, path: str) -> None:
        view = self[name]
        view.materialized_path, view.materialized_at = path, dt.datetime.now(dt.timezone.utc)

    def dependencies(self, name: str) -> list[str]:
        """The views (not lake tables) that view `name` reads directly."""
        return sorted(self[other].name for other in referenced_tables(self[name].sql) if other in self and other.lower() != name.lower())

    def resolve(self, sql: str) -> tuple[View, ...]:
        """The views `sql` uses, directly or through other views, dependencies first.

        A materialized view travels as a read of its file in the lake. A
        cycle is an error naming it.
        """
        ordered: list[View] = []
        done: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            key = name.lower()
            if key in done:
                return
            if key in (step.lower() for step in path):
                raise ViewError(f"views refer to each other in a cycle: {' -> '.join(path + (name,))}")
            view = self._views[key]
            if view.materialized_path:  # the name now reads the artifact, not its inputs
                done.add(key)
                ordered.append(View(view.name, f"SELECT * FROM read_parquet({quote_literal(view.materialized_path)})"))
                return
            for used in referenced_tables(view.sql):
                if used in self:
                    visit(self[used].name, path + (view.name,))
            done.add(key)
            ordered.append(View(view.name, view.sql))

        for name in sorted(referenced_tables(sql)):
            if name in self:
                visit(self[name].name, ())
        return tuple(ordered)

    def names(self) -> list[str]:
        return [view.name for view in self._views.values()]

    def listing(self) -> list[dict]:
        return [
            {
                "view": view.name,
                "depends on": ", ".join(self.dependencies(view.name)),
                "materialized": view.materialized_path or "",
                "at": view.materialized_at.strftime("%Y-%m-%d %H:%M:%S UTC") if view.materialized_at else "",
            }
            for view in self._views.values()
        ]

    def save_folder(self, folder: str | Path) -> list[Path]:
        """Write each view as `<folder>/<name>.sql`, one model per file, as a dbt project keeps them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for view in self._views.values():
            path = folder / f"{view.name}.sql"
            path.write_text(view.sql + "\n")
            written.append(path)
        return written

    def load_folder(self, folder: str | Path) -> list[str]:
        """Read every `<name>.sql` in `folder` as a view; their order does not matter."""
        files = sorted(Path(folder).glob("*.sql"))
        if not files:
            raise ViewError(f"no .sql files in {folder}")
        for path in files:  # first all definitions, then the checks, so files may refer to later ones
            self._views[path.stem.lower()] = SavedView(path.stem, path.read_text().strip().rstrip(";").strip())
        for path in files:
            self.save(path.stem, self[path.stem].sql)
        return [path.stem for path in files]
