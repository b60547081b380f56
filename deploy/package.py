"""The deployment zip: the lake handler plus DuckDB and its httpfs extension, for one Lambda runtime.

What goes in, at the zip's root (Lambda unpacks it into /var/task, first on sys.path):

    lakelambda/                 the handler's sources (no __pycache__)
    duckdb/, _duckdb.*.so       the `duckdb` wheel for the runtime's Python and architecture
    duckdb_extension_httpfs/    the `duckdb-extension-httpfs` wheel: httpfs, loaded from the package
    *.dist-info/                the wheels' metadata and licences (RECORD dropped: files were stripped)

boto3 is not bundled: every Lambda Python runtime has it. Type stubs
(`.pyi`, `_duckdb-stubs/`), `__pycache__` and `tests/` folders are dropped.

Wheels come from PyPI with `pip download --only-binary=:all: --platform
manylinux... --python-version 3.X --implementation cp --no-deps`, and are
unzipped (a wheel is a zip) into the package. The zip is reproducible:
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
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DeployError

MB = 1_000_000
# Lambda's limits on a .zip package (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
DIRECT_UPLOAD_LIMIT = 50 * MB  # zipped, sent in the CreateFunction/UpdateFunctionCode request itself
UNZIPPED_LIMIT = 250 * MB  # unzipped, layers included; uploading through S3 does not lift it

DUCKDB = "duckdb"
HTTPFS = "duckdb-extension-httpfs"
ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}  # Lambda's name -> the machine's
# Bumped whenever what the builder puts in a zip changes, so old cached packages are not reused.
BUILD_FORMAT = 1
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say; the same for every entry
_RUNTIME = re.compile(r"^python3\.(\d+)$")
_DUCKDB_LIBRARY = re.compile(r"^_duckdb\.cpython-3(\d+)-(x86_64|aarch64)-linux-gnu\.so$")
_DROPPED = ("*.pyc", "*.pyo", "*.pyi", "*.dist-info/RECORD", "*.dist-info/INSTALLER", "*.dist-info/REQUESTED",
            "*.dist-info/direct_url.json")
_DROPPED_FOLDERS = {"__pycache__", "tests", "_duckdb-stubs"}


@dataclass(frozen=True)
class Target:
    """Where the package runs: a Lambda Python runtime on one architecture."""

    runtime: str = "python3.12"
    architecture: str = "x86_64"

    def __post_init__(self):
        match = _RUNTIME.match(self.runtime)
        if not match or int(match.group(1)) < 10:
            raise DeployError(f"--runtime must be a Lambda Python runtime from python3.10 on, like python3.12; got {self.runtime!r}")
        if self.architecture not in ARCHITECTURES:
            raise DeployError(f"--architecture must be x86_64 or arm64; got {self.architecture!r}")

    @property
    def python_version(self) -> str:
        return self.runtime[len("python"):]

    @property
    def machine(self) -> str:
        return ARCHITECTURES[self.architecture]

    @property
    def glibc_minor(self) -> int:
        """python3.10 and 3.11 run on Amazon Linux 2 (glibc 2.26); python3.12 on, on Amazon Linux 2023 (2.34)."""
        return 26 if int(self.python_version.split(".")[1]) <= 11 else 34

    def manylinux_platforms(self) -> list[str]:
        """Every manylinux tag the runtime's glibc can load, newest first (pip does not expand manylinux_2_X)."""
        return [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc_minor, 16, -1)] + [
            f"manylinux2014_{self.machine}"
        ]

    @classmethod
    def local(cls) -> "Target":
        """This interpreter and machine, for building from the installed packages."""
        machine = platform.machine()
        architecture = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
        if architecture is None:
            raise DeployError(f"this machine ({machine}) is neither x86_64 nor arm64, the architectures Lambda runs")
        return cls(f"python{sys.version_info.major}.{sys.version_info.minor}", architecture)


class MissingWheel(DeployError):
    """The package index has no wheel of that project for the target."""


class WheelSource:
    """Where a project's files come from; `extract` unpacks them into a folder."""

    def key(self) -> dict:  # everything about the source that changes what is extracted
        raise NotImplementedError

    def extract(self, project: str, version: str, into: Path) -> str:
        """Unpack `project==version` into `into`; return what was used. MissingWheel if there is none."""
        raise NotImplementedError


class PipDownload(WheelSource):
    """Manylinux wheels for the target, fetched by `pip download` into a cache folder and unzipped.

    A wheel already in `wheel_dir` is used without asking the index again.
    `pip_options` are added to pip's command line (e.g. `--no-index
    --find-links DIR`, or another index).
    """

    def __init__(self, target: Target, wheel_dir: Path, pip_options: tuple[str, ...] = ()):
        self.target = target
        self.wheel_dir = Path(wheel_dir)
        self.pip_options = tuple(pip_options)

    def key(self) -> dict:
        return {"source": "pip", "platforms": self.target.manylinux_platforms(), "python": self.target.python_version}

    def extract(self, project: str, version: str, into: Path) -> str:
        wheel = self.wheel(project, version)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(into)
        return wheel.name

    def wheel(self, project: str, version: str) -> Path:
        found = self._cached(project, version)
        if found is None:
            self._download(project, version)
            found = self._cached(project, version)
        if found is None:
            raise DeployError(f"pip download reported success but left no {project}=={version} wheel in {self.wheel_dir}")
        return found

    def _cached(self, project: str, version: str) -> Path | None:
        stem = f"{re.sub(r'[-_.]+', '_', project).lower()}-{version}-"
        machine = self.target.machine
        platforms = {*self.target.manylinux_platforms(), f"manylinux2010_{machine}", f"manylinux1_{machine}"}
        pythons = {f"cp{self.target.python_version.replace('.', '')}", "py3"}
        for wheel in sorted(self.wheel_dir.glob(f"{stem}*.whl")):
            python_tags, _, platform_tags = wheel.name[len(stem):-len(".whl")].split("-")
            if pythons & set(python_tags.split(".")) and platforms & set(platform_tags.split(".")):
                return wheel
        return None

    def _download(self, project: str, version: str) -> None:
        self.wheel_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
                   "--timeout", "30", "--retries", "2", "--only-binary=:all:", "--no-deps",
                   "--implementation", "cp", "--python-version", self.target.python_version]
        for tag in self.target.manylinux_platforms():
            command += ["--platform", tag]
        command += [*self.pip_options, "-d", str(self.wheel_dir), f"{project}=={version}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise DeployError(f"cannot run pip ({sys.executable} -m pip), which downloads the Lambda wheels") from None
        if done.returncode == 0:
            return
        output = done.stdout + done.stderr
        if re.search(r"NewConnectionError|Failed to establish|Network is unreachable|Temporary failure in name resolution"
                     r"|ConnectTimeout|ReadTimeout|ProxyError|SSLError", output):
            raise DeployError(f"pip could not reach the package index to download {project}=={version}; "
                              "check the network or pip's index settings") from None
        if "No matching distribution" in output or "Could not find a version" in output:
            raise MissingWheel(f"the package index has no {project}=={version} wheel for CPython "
                               f"{self.target.python_version} on manylinux {self.target.machine}")
        last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        raise DeployError(f"pip download {project}=={version} failed: {last[0].strip()}")


class InstalledPackages(WheelSource):
    """The distributions installed for this interpreter, copied file by file.

    Only right for `Target.local()`: the tests use it to build a package for
    this machine without a download.
    """

    def key(self) -> dict:
        return {"source": "installed", "python": sys.version.split()[0], "machine": platform.machine(),
                "cache_tag": sys.implementation.cache_tag}

    def extract(self, project: str, version: str, into: Path) -> str:
        copy_distribution(project, into, version)
        return f"{project}=={version} (installed)"


def copy_distribution(project: str, into: Path, version: str | None = None) -> list[str]:
    """Copy an installed distribution's files (by its RECORD) into `into`; return the top-level names."""
    try:
        distribution = importlib.metadata.distribution(project)
    except importlib.metadata.PackageNotFoundError:
        raise MissingWheel(f"{project} is not installed in this Python") from None
    if version is not None and distribution.version != version:
        raise MissingWheel(f"{project} {distribution.version} is installed, not {version}")
    tops = set()
    for file in distribution.files or ():
        relative = Path(str(file))
        if relative.parts[0] == ".." or relative.is_absolute():
            continue  # console scripts and the like, outside site-packages
        source = Path(distribution.locate_file(file))
        if source.is_file():
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            tops.add(relative.parts[0])
    return sorted(tops)


@dataclass
class PackageInfo:
    """A built (or given) package: where it is, its digest, its sizes, what it holds."""

    path: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    has_httpfs: bool
    duckdb_version: str | None
    python_version: str | None  # of the bundled DuckDB library, like "3.12"
    machine: str | None  # x86_64 or aarch64
    built_from: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
        return (f"{self.zipped_bytes / MB:.1f} MB zipped ({zipped}), {self.unzipped_bytes / MB:.1f} MB unzipped "
                f"({fits} Lambda's {UNZIPPED_LIMIT // MB} MB limit on unzipped code)")

    @classmethod
    def from_zip(cls, path: str | os.PathLike, built_from=(), notes=()) -> "PackageInfo":
        path = str(path)
        try:
            with zipfile.ZipFile(path) as archive:
                entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        except (OSError, zipfile.BadZipFile) as exc:
            raise DeployError(f"{path} is not a readable zip file ({exc})") from None
        names = {entry.filename for entry in entries}
        if "lakelambda/handler.py" not in names:
            raise DeployError(f"{path} is not a lakemagic package: it has no lakelambda/handler.py at its root")
        versions = [re.match(r"^duckdb-([^/]+)\.dist-info/METADATA$", name) for name in names]
        duckdb_version = next((match.group(1) for match in versions if match), None)
        library = next((match for match in map(_DUCKDB_LIBRARY.match, names) if match), None)
        has_httpfs = duckdb_version is not None and (
            f"duckdb_extension_httpfs/extensions/v{duckdb_version}/httpfs.duckdb_extension" in names)
        return cls(
            path=path,
            sha256=_file_sha256(path),
            zipped_bytes=os.path.getsize(path),
            unzipped_bytes=sum(entry.file_size for entry in entries),
            files=len(entries),
            has_httpfs=has_httpfs,
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
                f"--architecture {'arm64' if self.machine == 'aarch64' else 'x86_64'}, or let deploy build the package")


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
        try:
            built_from.append(source.extract(HTTPFS, version, root))
        except MissingWheel as missing:
            notes.append(f"{missing}: the function installs httpfs from DuckDB's extension repository into /tmp at "
                         "each cold start instead (LAKEMAGIC_INSTALL_HTTPFS=1; about 1-3 s and a ~7 MB download, "
                         "and the function needs outbound internet access)")
        for name, path in handler_files.items():
            target_path = root / "lakelambda" / name
            target_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target_path)
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
