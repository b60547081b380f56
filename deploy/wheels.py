"""Where the package's wheels come from, and which of them a Lambda runtime can load.

A Target is a Lambda Python runtime on one architecture. PipDownload fetches
its manylinux wheels from PyPI with `pip download --only-binary=:all:
--platform manylinux... --python-version 3.X --implementation cp --no-deps`
into a cache folder, and reuses what is there; InstalledPackages copies this
interpreter's own distributions instead, for a package that runs here.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging import tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from lakelambda.protocol import LAMBDA_ARCHITECTURES

from . import DEFAULT_ARCHITECTURE, DEFAULT_RUNTIME
from .errors import DeployError

MACHINES = {architecture: machine for machine, architecture in LAMBDA_ARCHITECTURES.items()}  # by Lambda's name
# How other systems' platform.machine() spells the same machines (Windows, macOS).
_MACHINE_ALIASES = {"AMD64": "x86_64", "arm64": "aarch64"}
_RUNTIME = re.compile(r"^python3\.(\d+)$")


@dataclass(frozen=True)
class Target:
    """Where the package runs: a Lambda Python runtime on one architecture."""

    runtime: str = DEFAULT_RUNTIME
    architecture: str = DEFAULT_ARCHITECTURE

    def __post_init__(self):
        match = _RUNTIME.match(self.runtime)
        if not match or int(match.group(1)) < 10:
            raise DeployError(f"--runtime must be a Lambda Python runtime from python3.10 on, like python3.12; got {self.runtime!r}")
        if self.architecture not in MACHINES:
            raise DeployError(f"--architecture must be {' or '.join(MACHINES)}; got {self.architecture!r}")

    @property
    def python_version(self) -> str:
        return self.runtime[len("python"):]

    @property
    def machine(self) -> str:
        return MACHINES[self.architecture]

    @property
    def glibc_minor(self) -> int:
        """python3.10 and 3.11 run on Amazon Linux 2 (glibc 2.26); python3.12 on, on Amazon Linux 2023 (2.34)."""
        return 26 if int(self.python_version.split(".")[1]) <= 11 else 34

    def manylinux_platforms(self) -> list[str]:
        """Every manylinux tag the runtime's glibc can load, newest first (pip does not expand manylinux_2_X)."""
        return [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc_minor, 16, -1)] + [
            f"manylinux2014_{self.machine}"
        ]

    def wheel_tags(self) -> set[tags.Tag]:
        """Every wheel tag the runtime's CPython loads, with the older manylinux names pip takes for manylinux2014."""
        python = (3, int(self.python_version.split(".")[1]))
        platforms = [*self.manylinux_platforms(), f"manylinux2010_{self.machine}", f"manylinux1_{self.machine}"]
        return {*tags.cpython_tags(python, platforms=platforms), *tags.compatible_tags(python, platforms=platforms)}

    @classmethod
    def local(cls) -> "Target":
        """This interpreter and machine, for building from the installed packages."""
        machine = platform.machine()
        architecture = LAMBDA_ARCHITECTURES.get(_MACHINE_ALIASES.get(machine, machine))
        if architecture is None:
            raise DeployError(f"this machine ({machine}) is neither {' nor '.join(MACHINES)}, the architectures "
                              "Lambda runs")
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
        """A wheel of `project==version` in `wheel_dir` that the target loads, if pip fetched one before."""
        wanted = (canonicalize_name(project), Version(version))
        loadable = self.target.wheel_tags()
        for wheel in sorted(self.wheel_dir.glob("*.whl")):
            try:
                name, found_version, _, wheel_tags = parse_wheel_filename(wheel.name)
            except InvalidWheelFilename:
                continue
            if (name, found_version) == wanted and wheel_tags & loadable:
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


def copy_distribution(project: str, into: Path, version: str | None = None) -> None:
    """Copy an installed distribution's files (by its RECORD) into `into`."""
    try:
        distribution = importlib.metadata.distribution(project)
    except importlib.metadata.PackageNotFoundError:
        raise MissingWheel(f"{project} is not installed in this Python") from None
    if version is not None and distribution.version != version:
        raise MissingWheel(f"{project} {distribution.version} is installed, not {version}")
    for file in distribution.files or ():
        relative = Path(str(file))
        if relative.parts[0] == ".." or relative.is_absolute():
            continue  # console scripts and the like, outside site-packages
        source = Path(distribution.locate_file(file))
        if source.is_file():
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
