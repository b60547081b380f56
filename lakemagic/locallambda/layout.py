"""A function's code laid out as Lambda lays it out, so a worker imports what a Lambda container would.

On Lambda, sys.path is the deployment package's folder (/var/task), then
the standard library, then the runtime's own folder, which holds boto3 and
what it needs; nothing else is importable. A worker that imported from this
environment would see pandas, which DuckDB's binding imports (about 350 ms)
the first time a statement runs with parameters: a cold start Lambda never
pays. So a function's packages are linked from this environment into a
folder of their own, boto3's into another, and the worker's sys.path is
those two around the standard library. Nothing is copied: the links go with
`close()`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile

# The deployment package (deploy/package.py): the handler, DuckDB, its httpfs extension and the table
# formats' extensions (loaded only by a request that reads an Iceberg or Delta table).
LAKE_PACKAGES = ("lakelambda", "duckdb", "_duckdb", "duckdb_extension_httpfs", "duckdb_extension_iceberg",
                 "duckdb_extension_delta", "duckdb_extension_avro")
# What Lambda's Python runtime provides beside the package: boto3 and what it imports.
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "six", "urllib3")


class FunctionFolders:
    """The package folder (`task`) and the runtime folder (`runtime`) for one function's workers."""

    def __init__(self, packages: tuple[str, ...]) -> None:
        self._root = tempfile.mkdtemp(prefix="lakemagic-function-")
        try:
            self.task = _linked(packages, os.path.join(self._root, "task"))
            self.runtime = _linked(RUNTIME_PACKAGES, os.path.join(self._root, "runtime"))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


def _linked(names: tuple[str, ...], folder: str) -> str:
    """`folder`, holding a link to each top-level module or package of `names` as installed here, and
    to the metadata (*.dist-info) of the distributions they come from, as a package built by pip has it."""
    os.mkdir(folder)
    distributions = importlib.metadata.packages_distributions()
    for name in names:
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        source = locations[0] if locations else (spec.origin if spec is not None else None)
        if source is None or not os.path.exists(source):
            raise ValueError(f"the function's code needs the module {name!r}, which is not installed here")
        _link(source, folder)
        for distribution in distributions.get(name, ()):
            for file in importlib.metadata.distribution(distribution).files or ():
                if file.parts[0].endswith(".dist-info"):
                    _link(str(file.locate().parent), folder)
                    break
    return folder


def _link(source: str, folder: str) -> None:
    target = os.path.join(folder, os.path.basename(source))
    if not os.path.lexists(target):  # two modules of one distribution share its metadata
        os.symlink(source, target)
