"""JupyterLab / Jupyter Notebook 7 servers and Debian's chromium, for the browser tests.

Each server runs on 127.0.0.1 with a token, a random free port and its own
Jupyter config, data, runtime, IPython and settings folders, so nothing of
the machine's own Jupyter setup (or of another run) leaks in, and its own
temporary folder, so nothing its kernels leave (one ended before its clean-up
ran) stays in the machine's. The venv's
kernel spec is still found: Jupyter always searches `sys.prefix/share/jupyter`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import psutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync",
]
# "Would you like to receive official Jupyter news?" would otherwise cover part of the page.
NO_NEWS = ("@jupyterlab/apputils-extension", "notification.jupyterlab-settings", {"fetchNews": "false", "checkForUpdates": False})
FOLDERS = ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
           "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "TMPDIR")


def write_notebook(path: Path, *sources: str, lake: Path | None = None, **metadata) -> None:
    """A notebook of code cells on the venv's python3 kernel; with `lake`, its first cell loads lakemagic over it."""
    notebook = nbformat.v4.new_notebook()
    loads = [f"%load_ext lakemagic\n%config LakeMagic.lake = {str(lake)!r}"] if lake is not None else []
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in [*loads, *sources]]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.metadata.update(metadata)
    nbformat.write(notebook, path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterServer:
    """`jupyter lab` (app "jupyterlab") or `jupyter notebook` (app "notebook") serving `root`."""

    def __init__(self, app: str, root: Path, home: Path):
        self.app, self.root = app, root
        self.folders = {name: home / name.lower() for name in FOLDERS}
        self.log_path = home / "server.log"
        self.token = secrets.token_hex(16)
        self.url = ""
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        for folder in self.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        plugin, file, settings = NO_NEWS
        (self.folders["JUPYTERLAB_SETTINGS_DIR"] / plugin).mkdir(parents=True, exist_ok=True)
        (self.folders["JUPYTERLAB_SETTINGS_DIR"] / plugin / file).write_text(json.dumps(settings))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("JUPYTER", "IPYTHON"))}
        env.update({name: str(folder) for name, folder in self.folders.items()})
        return env

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until its API answers."""
        command = [
            sys.executable, "-m", self.app, "--no-browser", "--ip=127.0.0.1", f"--port={free_port()}",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}", "--allow-root",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, env=self.environment(), cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        # Should the port be taken meanwhile, the server tries others; its info file says which it got.
        info = self.folders["JUPYTER_RUNTIME_DIR"] / f"jpserver-{self.process.pid}.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError, ValueError, KeyError, urllib.error.URLError):
                self.url = f"http://127.0.0.1:{json.loads(info.read_text())['port']}"
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.app} did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def page_url(self, notebook: str) -> str:
        path = "lab/tree" if self.app == "jupyterlab" else "notebooks"
        return f"{self.url}/{path}/{notebook}?token={self.token}"

    def stop(self) -> list[int]:
        """SIGTERM (the server shuts its kernels down), then kill what of ours is left; returns those pids."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        left = self.kernels()
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        return [process.pid for process in left]

    def kernels(self) -> list[psutil.Process]:
        """Kernels of this server: they run in sessions of their own, but their command line
        names a connection file in this server's runtime folder."""
        runtime = str(self.folders["JUPYTER_RUNTIME_DIR"])
        return [process for process in psutil.process_iter(["cmdline"])
                if any(runtime in part for part in process.info["cmdline"] or ())]


def save_small_png(source: Path, target: Path) -> None:
    """A copy of a screenshot in at most 256 colours: the same picture in a fraction of the bytes."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
