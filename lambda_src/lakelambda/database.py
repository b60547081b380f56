"""The DuckDB database a handler queries with: sized, connected to the lake, then sandboxed.

Whoever can invoke the function must reach the lake and nothing else. Setup
does what needs privileges (load httpfs from the package, create the S3
secret from the execution role's credentials), then closes the doors with
DuckDB's own settings and locks them: no local files outside the scratch
folder, no other buckets or URLs, no extension installs or loads, no
setting changes. Those settings are the outer layer only (they compare
paths before normalizing them, among other gaps): `sandbox.check_query`
proves each query reads nothing but the lake before it runs.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .errors import UnsupportedTableFeature
from .fields import INLINE_RESULT_BYTES
from .sql import quote_literal

if TYPE_CHECKING:  # the lake's storage imports this module: it connects DuckDB to S3 with the functions below
    from .lake import Lake

# Lambda gives a function one vCPU per 1,769 MB of memory.
MB_PER_VCPU = 1769
# What the function's memory must keep beside DuckDB's buffers: Python, DuckDB's and httpfs's code,
# boto3, the pages and answers the handler builds, and what DuckDB allocates outside its limit.
# Lambda kills a process past its memory; DuckDB's limit below it makes most big queries a clean error.
HANDLER_BASE_MB = 256
# The most one result may hold in the engine, unless LAKEMAGIC_MAX_RESULT_BYTES says otherwise.
DEFAULT_MAX_RESULT_BYTES = 8 * 1024**3
# Scratch folders are named lakemagic-<pid>-<random>, so one left by a dead process can be told apart.
SCRATCH_PREFIX = "lakemagic-"


def new_scratch_folder() -> str:
    """A folder of this process's own in the temp directory, after clearing those of processes that died."""
    remove_stale_scratch_folders()
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")


def remove_stale_scratch_folders() -> None:
    for entry in os.scandir(tempfile.gettempdir()):
        owner = entry.name[len(SCRATCH_PREFIX):].partition("-")[0]
        if entry.name.startswith(SCRATCH_PREFIX) and owner.isdigit() and entry.is_dir() and not _alive(int(owner)):
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True)
class Settings:
    """What the handler needs to know about where it runs; Lambda's environment by default."""

    # A folder of its own (under /tmp on Lambda), so handlers in several processes
    # on one machine never clear each other's pages; the handler removes it when it goes.
    scratch: str = field(default_factory=new_scratch_folder)
    memory_mb: int | None = None
    environment: dict = field(default_factory=lambda: dict(os.environ))
    # Results whose file is at most this big travel whole in the query's answer, never stored.
    inline_result_bytes: int = INLINE_RESULT_BYTES
    # The function's timeout, where known: S3 requests are given up well inside it.
    function_timeout_s: float | None = None
    # The scratch folder's space (Lambda's ephemeral storage, which lakemagic deploy sets): half of
    # it for DuckDB's spill, the rest for local copies of results and pages. None: the disk's size.
    scratch_bytes: int | None = None
    # The most one result may hold in the engine on an S3 lake (its rows in DuckDB's memory and spill,
    # which is more than its compressed Parquet file); a larger one is refused before any file is
    # written. A local lake's result streams into its file and is held nowhere, so no cap applies.
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES

    @classmethod
    def from_environment(cls, function_timeout_s: float | None = None) -> "Settings":
        """Lambda's environment; the timeout from the local endpoint's variable if not given
        (AWS Lambda itself does not set AWS_LAMBDA_FUNCTION_TIMEOUT: its handler passes the first
        invocation's remaining time instead)."""
        memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        inline = os.environ.get("LAKEMAGIC_INLINE_RESULT_BYTES")
        timeout = os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT")
        scratch = os.environ.get("LAKEMAGIC_SCRATCH_BYTES")
        cap = os.environ.get("LAKEMAGIC_MAX_RESULT_BYTES")
        return cls(memory_mb=int(memory) if memory else None,
                   inline_result_bytes=int(inline) if inline else INLINE_RESULT_BYTES,
                   function_timeout_s=function_timeout_s or (float(timeout) if timeout else None),
                   scratch_bytes=int(scratch) if scratch else None,
                   max_result_bytes=int(cap) if cap else DEFAULT_MAX_RESULT_BYTES)

    @property
    def scratch_space(self) -> int:
        """The scratch folder's space in bytes: as set, or the size of the disk it is on."""
        return self.scratch_bytes or shutil.disk_usage(self.scratch).total

    @property
    def pages_folder(self) -> str:
        return os.path.join(self.scratch, "pages")

    @property
    def results_folder(self) -> str:
        return os.path.join(self.scratch, "results")


# The extensions each table format needs (Iceberg's manifests are Avro), from their PyPI wheels, and a
# function each adds (how a database is asked whether it has them).
TABLE_FORMAT_EXTENSIONS = {"iceberg": ("avro", "iceberg"), "delta": ("delta",)}
_ADDED_FUNCTION = {"avro": "read_avro", "iceberg": "iceberg_scan", "delta": "delta_scan"}


class NeedsTableFormats(Exception):
    """A request reads an Iceberg or Delta table on a database opened without that format's extensions:
    the handler opens one with them and runs the request again (never an answer of its own)."""

    def __init__(self, table_format: str):
        super().__init__(table_format)
        self.table_format = table_format


def open_database(lake: Lake, settings: Settings, table_formats: frozenset[str] = frozenset(),
                  loaded: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A sandboxed in-memory database over `lake`; one per container, a cursor per call.

    `table_formats` ("iceberg", "delta"): with those formats' extensions loaded. A locked database
    (enable_external_access false) loads no extension, so they are loaded here, before the lock, and
    only in the database the handler reopens at the first request that reads such a table: a
    container that reads only Parquet never loads them (README, "Iceberg and Delta tables").
    `loaded`: what load_database made for these `settings` and the lake's storage (the handler starts
    it as Lambda imports it, see handler.handler), to which this adds the credentials and the doors.
    """
    extensions = (*lake.storage.extensions,
                  *sorted({name for kind in table_formats for name in TABLE_FORMAT_EXTENSIONS[kind]}))
    con = loaded if loaded is not None else load_database(settings, extensions)
    lake.storage.attach(con, settings.environment, settings.function_timeout_s)
    # The handler reads DuckDB's errors as JSON, with the error's position.
    con.execute("SET GLOBAL errors_as_json = true")
    # No logging: a log holds other callers' queries. (The enable_logging() table function
    # ignores the lock below; sandbox.check_query refuses it.)
    con.execute("SET GLOBAL enable_logging = false")
    # A table name is never one of the handler's Python variables.
    con.execute("SET GLOBAL python_enable_replacements = false")
    allowed = [lake.root + "/", settings.pages_folder + "/", settings.results_folder + "/"]
    con.execute(f"SET allowed_directories = [{', '.join(quote_literal(path) for path in allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def load_database(settings: Settings, extensions: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
    """The first half of open_database: an in-memory database in the scratch folder, sized for the
    function, in UTC, with `extensions` loaded from the package (httpfs: about 70 ms, most of it DuckDB
    checking the file's signature). It needs neither the lake's credentials nor the function's timeout,
    and holds nothing of a caller's until open_database has locked it."""
    for folder in ("home", "extensions", "spill", "pages", "results"):
        os.makedirs(os.path.join(settings.scratch, folder), exist_ok=True)
    config: dict[str, str | int | float | list[str]] = {"autoinstall_known_extensions": False,
                                                         "autoload_known_extensions": False}
    if settings.memory_mb:  # sized as it starts: one started on every core, then set to fewer, stops threads it started
        config.update(memory_limit=f"{duckdb_memory_mb(settings.memory_mb)}MB", threads=duckdb_threads(settings.memory_mb))
    con = duckdb.connect(config=config)
    scratch = settings.scratch
    con.execute(f"SET home_directory = {quote_literal(os.path.join(scratch, 'home'))}")
    con.execute(f"SET extension_directory = {quote_literal(os.path.join(scratch, 'extensions'))}")
    con.execute(f"SET temp_directory = {quote_literal(os.path.join(scratch, 'spill'))}")
    # What DuckDB spills never fills the scratch space: a query needing more fails with an out-of-memory error.
    con.execute(f"SET max_temp_directory_size = '{max(1, settings.scratch_space // 2 // 2**20)}MiB'")
    # Every engine computes in UTC (Lambda's zone), so a notebook gets the same
    # dates and hours wherever its query runs; open_database's configuration lock
    # means a caller cannot pick another zone per query.
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    for name in extensions:
        _load_extension(con, name, settings.environment)
    return con


def _load_extension(con: duckdb.DuckDBPyConnection, name: str, environment: dict) -> None:
    """Load `name` from the deployment package (checked against DuckDB's signature, as every load is)."""
    if name == "httpfs" and environment.get("LAKEMAGIC_INSTALL_HTTPFS") == "1":
        # `lakemagic deploy` found no duckdb-extension-httpfs wheel for this platform: fetch the signed
        # extension from DuckDB's repository into the scratch extension_directory (under /tmp), once per
        # cold start, while external access is still open (open_database locks it later).
        try:
            con.execute("INSTALL httpfs")
        except duckdb.IOException as exc:
            raise RuntimeError("LAKEMAGIC_INSTALL_HTTPFS=1 but httpfs could not be installed from DuckDB's "
                               f"extension repository (the function needs outbound internet access): {exc}") from None
        con.execute("LOAD httpfs")
    else:
        con.execute(f"LOAD {quote_literal(extension_path(name))}")


def duckdb_threads(function_memory_mb: int) -> int:
    """DuckDB's threads in a function of this memory: its vCPUs, rounded (one for a 2,048 MB function), at most 6."""
    return max(1, min(6, round(function_memory_mb / MB_PER_VCPU)))


def duckdb_memory_mb(function_memory_mb: int) -> int:
    """DuckDB's share of the function's memory: three quarters, leaving at least HANDLER_BASE_MB beside it
    (a quarter at the least, for the smallest functions)."""
    return max(function_memory_mb // 4, min(function_memory_mb * 3 // 4, function_memory_mb - HANDLER_BASE_MB))


def connect_to_s3(con: duckdb.DuckDBPyConnection, environment: dict) -> None:
    """Give DuckDB (httpfs loaded: load_database) the execution role's credentials."""
    options = {
        "KEY_ID": environment.get("AWS_ACCESS_KEY_ID"),
        "SECRET": environment.get("AWS_SECRET_ACCESS_KEY"),
        "SESSION_TOKEN": environment.get("AWS_SESSION_TOKEN"),
        "REGION": environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    endpoint = environment.get("AWS_ENDPOINT_URL_S3") or environment.get("AWS_ENDPOINT_URL")
    if endpoint:  # an S3-compatible server, such as the local one the tests run
        scheme, _, host = endpoint.partition("://")
        options.update(ENDPOINT=host.rstrip("/"), URL_STYLE="path")
        con.execute(f"CREATE SECRET lake (TYPE s3, {_secret_options(options)}, USE_SSL {str(scheme == 'https').lower()})")
    else:
        con.execute(f"CREATE SECRET lake (TYPE s3, {_secret_options(options)})")


def close_s3_side_doors(con: duckdb.DuckDBPyConnection, http_timeout_s: int, http_retries: int) -> None:
    """Behind sandbox.check_query, what httpfs leaves open once the lake's secret exists.

    Loading httpfs copies AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN from the
    process environment into s3_* settings, which current_setting() and duckdb_settings() read
    back; the secret holds the credentials now, so the settings are blanked (GLOBAL: every cursor
    sees them). Plain http(s):// and hf:// URLs are switched off (the lake is reached through s3://
    only), and a slow or silent S3 costs a bounded time, inside the function's (storage.s3_request_timeout_s).
    """
    for name in ("s3_access_key_id", "s3_secret_access_key", "s3_session_token"):
        con.execute(f"SET GLOBAL {name} = ''")
    con.execute("SET GLOBAL disabled_filesystems = 'HTTPFileSystem,HuggingFaceFileSystem'")
    con.execute(f"SET GLOBAL http_timeout = {http_timeout_s}")  # s, a whole request
    con.execute(f"SET GLOBAL http_retries = {http_retries}")


def _secret_options(options: dict) -> str:
    return ", ".join(f"{key} {quote_literal(value)}" for key, value in options.items() if value)


def require_table_format(con: duckdb.DuckDBPyConnection, table_format: str) -> None:
    """NeedsTableFormats unless `con`'s database has the extensions of `table_format` loaded."""
    # By the functions they add: duckdb_extensions() would list the extension folder, which the sandbox closes.
    wanted = [_ADDED_FUNCTION[name] for name in TABLE_FORMAT_EXTENSIONS[table_format]]
    loaded = con.execute("SELECT count(DISTINCT function_name) FROM duckdb_functions() WHERE function_name IN ("
                         + ", ".join(quote_literal(name) for name in wanted) + ")").fetchone()
    if not loaded or loaded[0] < len(wanted):
        raise NeedsTableFormats(table_format)


def extension_path(name: str) -> str:
    """The `name` extension (httpfs, iceberg, ...) shipped in its `duckdb-extension-<name>` wheel, matching this
    DuckDB: in the deployment package on Lambda, in site-packages elsewhere. Importing the wheel's module only
    finds its folder; DuckDB loads nothing until `LOAD` is given this path. A missing table format's extension
    is the user's to act on (UnsupportedTableFeature); a missing httpfs is a broken install."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
        folder = os.path.dirname(module.__file__ or "")
    except ModuleNotFoundError:
        folder = ""
    path = os.path.join(folder, "extensions", f"v{duckdb.__version__}", f"{name}.duckdb_extension")
    if folder and os.path.exists(path):
        return path
    install = f"install duckdb-extension-{name}=={duckdb.__version__}"
    if name == "httpfs":
        raise RuntimeError(f"no httpfs extension for DuckDB {duckdb.__version__} here: {install}")
    raise UnsupportedTableFeature(f"this engine has no {name} extension for DuckDB {duckdb.__version__}, which "
                                  f"Iceberg and Delta tables need: {install} (lakemagic deploy ships it to the "
                                  "function)")
