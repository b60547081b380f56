"""The deployment zip: the lake handler plus DuckDB and its extensions, for one Lambda runtime.

What goes in, at the zip's root (Lambda unpacks it into /var/task, first on sys.path):

    lakelambda/                 the handler's sources, with their bytecode (below)
    duckdb/, _duckdb.*.so       the `duckdb` wheel for the runtime's Python and architecture
    duckdb_extension_httpfs/    the `duckdb-extension-httpfs` wheel: httpfs, loaded at every cold start
    duckdb_extension_iceberg/   the Iceberg, Delta and Avro (Iceberg's manifests) extensions' wheels,
    duckdb_extension_delta/     loaded only by a query that reads such a table
    duckdb_extension_avro/
    *.dist-info/                the wheels' metadata and licences (RECORD dropped: files were stripped)

The handler finds each extension the same way here and in a local
environment: `lakelambda.database.extension_path(name)`, from the wheel's
module. The table formats' extensions are about 60% of the unzipped package
and it still fits Lambda's 250 MB with room to spare (the README has the
measured sizes), so they ship in the package itself: a layer would count
against the same 250 MB and add a second thing to deploy and destroy, and
a container image would need a registry and an image build.

boto3 is not bundled: every Lambda Python runtime has it. Type stubs
(`.pyi`, `_duckdb-stubs/`) and `tests/` folders are dropped.

Lambda's /var/task is read-only, so Python cannot cache what it compiles
there: a package of sources alone compiles the handler's and DuckDB's
modules at every cold start (about 80 ms of CPU here, against 45 ms from
bytecode). A package built by the Python its runtime runs therefore ships
their bytecode, checked against each source by hash (no timestamps, which a
zip fixes at 1980); one built by another Python cannot, and says so.

The wheels (wheels.py says where they come from) are unzipped, a wheel
being a zip, into the package. The zip is reproducible:
entries sorted, one fixed timestamp and mode, so the same inputs give the same
bytes and the same SHA-256, which is how a redeploy knows the code did not
change. Packages and wheels are cached under ~/.cache/lakemagic/ (or
$XDG_CACHE_HOME/lakemagic/), keyed by everything that goes into them.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lakelambda.protocol import LAMBDA_ARCHITECTURES

from .errors import DeployError
from .wheels import MissingWheel, PipDownload, Target, WheelSource

MB = 1_000_000
# Lambda's limits on a .zip package (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
DIRECT_UPLOAD_LIMIT = 50 * MB  # zipped, sent in the CreateFunction/UpdateFunctionCode request itself
UNZIPPED_LIMIT = 250 * MB  # unzipped, layers included; uploading through S3 does not lift it

DUCKDB = "duckdb"
HTTPFS = "httpfs"
# Read only by a query over an Iceberg or Delta table. In load order: Iceberg's manifests are Avro, and
# iceberg's LOAD fails (trying to install avro) unless avro is loaded first.
TABLE_FORMAT_EXTENSIONS = ("avro", "iceberg", "delta")
EXTENSIONS = (HTTPFS, *TABLE_FORMAT_EXTENSIONS)
# Bumped whenever what the builder puts in a zip changes, so old cached packages are not reused.
BUILD_FORMAT = 3
# What a package lacking each extension's wheel means for the function.
_WITHOUT = {
    HTTPFS: "the function installs httpfs from DuckDB's extension repository into /tmp at each cold start instead "
            "(LAKEMAGIC_INSTALL_HTTPFS=1; about 1-3 s and a ~7 MB download, and the function needs outbound internet "
            "access)",
    "iceberg": "the function cannot read the lake's Iceberg tables",
    "delta": "the function cannot read the lake's Delta tables",
    "avro": "the function cannot read the lake's Iceberg tables (their manifests are Avro)",
}
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say; the same for every entry
_DUCKDB_LIBRARY = re.compile(rf"^_duckdb\.cpython-3(\d+)-({'|'.join(LAMBDA_ARCHITECTURES)})-linux-gnu\.so$")
_DROPPED = ("*.pyo", "*.pyi", "*.dist-info/RECORD", "*.dist-info/INSTALLER", "*.dist-info/REQUESTED",
            "*.dist-info/direct_url.json")
_DROPPED_FOLDERS = {"tests", "_duckdb-stubs"}
_TASK_FOLDER = "/var/task"  # where Lambda unpacks the package: the path its bytecode's tracebacks name


@dataclass
class PackageInfo:
    """A built (or given) package: where it is, its digest, its sizes, what it holds."""

    path: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    # Each of EXTENSIONS the package holds for its DuckDB, with its files' (zipped, unzipped) bytes.
    extensions: dict[str, tuple[int, int]]
    duckdb_version: str | None
    python_version: str | None  # of the bundled DuckDB library, like "3.12"
    machine: str | None  # x86_64 or aarch64
    built_from: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_httpfs(self) -> bool:
        return HTTPFS in self.extensions

    @property
    def code_sha256(self) -> str:
        """The digest as Lambda reports it in CodeSha256: base64 of the zip's SHA-256."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")

    def upload_method(self, direct_limit: int = DIRECT_UPLOAD_LIMIT) -> str:
        """"direct" (in the API request) or "s3" (too big for the request); DeployError if Lambda cannot take it."""
        if self.unzipped_bytes > UNZIPPED_LIMIT:
            raise DeployError(
                f"the package unzips to {self.unzipped_bytes / MB:.1f} MB, over Lambda's {UNZIPPED_LIMIT // MB} MB limit "
                "on unzipped code (layers included), which an upload through S3 does not lift")
        return "direct" if self.zipped_bytes <= direct_limit else "s3"

    def size_report(self, direct_limit: int = DIRECT_UPLOAD_LIMIT) -> str:
        """Both figures against Lambda's two limits, and which way the code would go."""
        if self.zipped_bytes > direct_limit:
            zipped = f"over the {direct_limit / MB:g} MB Lambda takes in a direct upload, so it goes through S3"
        else:
            zipped = f"within the {direct_limit / MB:g} MB Lambda takes in a direct upload"
        fits = "within" if self.unzipped_bytes <= UNZIPPED_LIMIT else "over"
        report = (f"{self.zipped_bytes / MB:.1f} MB zipped ({zipped}), {self.unzipped_bytes / MB:.1f} MB unzipped "
                  f"({fits} Lambda's {UNZIPPED_LIMIT // MB} MB limit on unzipped code)")
        formats = [name for name in TABLE_FORMAT_EXTENSIONS if name in self.extensions]
        if formats:
            zipped_share = sum(self.extensions[name][0] for name in formats)
            unzipped_share = sum(self.extensions[name][1] for name in formats)
            report += (f", of which the {', '.join(formats)} extensions are {zipped_share / MB:.1f} MB zipped and "
                       f"{unzipped_share / MB:.1f} MB unzipped")
        return report

    def contents(self) -> str:
        """What the package ships, in a line: DuckDB, its Python and machine, and the extensions."""
        extensions = ", ".join(name for name in EXTENSIONS if name in self.extensions) or "no"
        return (f"DuckDB {self.duckdb_version} for Python {self.python_version} on {self.machine}, with "
                f"{extensions} extensions, and the handler")

    @classmethod
    def from_zip(cls, path: str | os.PathLike, built_from=(), notes=()) -> "PackageInfo":
        path = str(path)
        try:
            with zipfile.ZipFile(path) as archive:
                entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        except (OSError, zipfile.BadZipFile) as exc:
            raise DeployError(f"{path} is not a readable zip file ({exc})") from None
        names = {entry.filename: entry for entry in entries}
        if "lakelambda/handler.py" not in names:
            raise DeployError(f"{path} is not a lakemagic package: it has no lakelambda/handler.py at its root")
        versions = [re.match(r"^duckdb-([^/]+)\.dist-info/METADATA$", name) for name in names]
        duckdb_version = next((match.group(1) for match in versions if match), None)
        library = next((match for match in map(_DUCKDB_LIBRARY.match, names) if match), None)
        extensions = {}
        for name in EXTENSIONS if duckdb_version is not None else ():
            if f"duckdb_extension_{name}/extensions/v{duckdb_version}/{name}.duckdb_extension" in names:
                files = [entry for entry in entries if entry.filename.startswith(f"duckdb_extension_{name}")]
                extensions[name] = (sum(entry.compress_size for entry in files), sum(entry.file_size for entry in files))
        return cls(
            path=path,
            sha256=_file_sha256(path),
            zipped_bytes=os.path.getsize(path),
            unzipped_bytes=sum(entry.file_size for entry in entries),
            extensions=extensions,
            duckdb_version=duckdb_version,
            python_version=f"3.{library.group(1)}" if library else None,
            machine=library.group(2) if library else None,
            built_from=list(built_from),
            notes=list(notes),
        )

    def check_target(self, target: Target) -> None:
        """Refuse a package whose DuckDB would not load in the target runtime."""
        if self.python_version is None or self.machine is None:
            raise DeployError(f"{self.path} holds no DuckDB library (_duckdb.cpython-*-linux-gnu.so), so the function could not import duckdb")
        if (self.python_version, self.machine) != (target.python_version, target.machine):
            raise DeployError(
                f"{self.path} holds DuckDB for Python {self.python_version} on {self.machine}, but the function "
                f"would run {target.runtime} on {target.architecture}: pass --runtime python{self.python_version} "
                f"--architecture {LAMBDA_ARCHITECTURES[self.machine]}, or let deploy build the package")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakemagic"


def duckdb_version() -> str:
    """The DuckDB this installation runs, which the function must run too."""
    return importlib.metadata.version(DUCKDB)


def build_package(target: Target | None = None, source: WheelSource | None = None, cache_dir: Path | None = None,
                  log=None) -> PackageInfo:
    """Build (or take from the cache) the package for `target`; PipDownload from PyPI unless `source` says otherwise."""
    target = target or Target()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    log = log or (lambda message: None)
    if source is None:
        source = PipDownload(target, cache_dir / "wheels" / f"cp{target.python_version.replace('.', '')}-{target.machine}")
    version = duckdb_version()
    handler_files = _handler_files()
    key = hashlib.sha256(json.dumps({
        "format": BUILD_FORMAT, "target": asdict(target), "duckdb": version, "source": source.key(),
        "handler": {name: _file_sha256(path) for name, path in handler_files.items()},
    }, sort_keys=True).encode()).hexdigest()
    packages = cache_dir / "packages"
    cached = packages / f"lakemagic-{target.runtime}-{target.architecture}-{key[:16]}.zip"
    sidecar = cached.with_suffix(".json")
    if cached.exists() and sidecar.exists():
        recorded = json.loads(sidecar.read_text())
        info = PackageInfo.from_zip(cached, recorded.get("built_from", ()), recorded.get("notes", ()))
        if info.sha256 == recorded.get("sha256"):
            log(f"package: {cached} (cached)")
            return info

    with tempfile.TemporaryDirectory(prefix="lakemagic-package-") as staging:
        root = Path(staging)
        built_from, notes = [], []
        built_from.append(source.extract(DUCKDB, version, root))
        for name in EXTENSIONS:
            try:
                built_from.append(source.extract(f"duckdb-extension-{name}", version, root))
            except MissingWheel as missing:
                notes.append(f"{missing}: {_WITHOUT[name]}")
        for name, path in handler_files.items():
            target_path = root / "lakelambda" / name
            target_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target_path)
        if sys.implementation.cache_tag == f"cpython-{target.python_version.replace('.', '')}":
            _compile(root)
        else:
            notes.append(f"this is Python {sys.version_info[0]}.{sys.version_info[1]}, the function runs "
                         f"{target.runtime}: the package ships no bytecode, so each cold start compiles the handler's "
                         f"and DuckDB's Python modules (about 35 ms more); build it with Python {target.python_version} "
                         "to ship it")
        packages.mkdir(parents=True, exist_ok=True)
        partial = packages / f".{cached.name}.{os.getpid()}.tmp"
        write_reproducible_zip(root, partial)
        os.replace(partial, cached)
    info = PackageInfo.from_zip(cached, built_from, notes)
    sidecar.write_text(json.dumps({"sha256": info.sha256, "built_from": built_from, "notes": notes}, indent=1))
    log(f"package: {cached} (built from {', '.join(built_from)})")
    return info


def write_reproducible_zip(root: Path, destination: Path) -> None:
    """Zip the files under `root`, less what Lambda never needs, so equal inputs give equal bytes."""
    files = {}
    for folder, folders, names in os.walk(root):
        folders[:] = [name for name in folders if name not in _DROPPED_FOLDERS]
        for name in names:
            path = Path(folder) / name
            arcname = path.relative_to(root).as_posix()
            if not any(fnmatch.fnmatch(arcname, pattern) for pattern in _DROPPED):
                files[arcname] = path
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for arcname in sorted(files):
            entry = zipfile.ZipInfo(arcname, _FIXED_DATE)
            entry.create_system = 3  # unix, so the mode below is honoured
            mode = 0o755 if arcname.endswith(".so") else 0o644
            entry.external_attr = (0o100000 | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, files[arcname].read_bytes(), compresslevel=6)


def _compile(root: Path) -> None:
    """Bytecode beside every module under `root`, checked by its source's hash, as Lambda will find it.

    A fresh interpreter compiles them in a fixed order, so the same sources give the same bytes (marshal's
    output depends on what else the compiling process holds)."""
    done = subprocess.run([sys.executable, "-I", "-m", "compileall", "-q", "-d", _TASK_FOLDER,
                           "--invalidation-mode", "checked-hash", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        raise DeployError(f"compiling the package's Python modules failed: {(done.stdout + done.stderr).strip()}")


def _handler_files() -> dict[str, Path]:
    """The lakelambda package's sources, by path inside the package."""
    spec = importlib.util.find_spec("lakelambda")
    if spec is None or not spec.submodule_search_locations:
        raise DeployError("the lakelambda package (the handler) is not installed with lakemagic")
    folder = Path(list(spec.submodule_search_locations)[0])
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*.py"))
            if "__pycache__" not in path.parts}


def _file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
