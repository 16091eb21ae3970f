"""A throwaway JupyterLab server for tests/test_browser.py.

The server serves a cleaned copy of the notebooks (so nothing the browser does can touch the repo's files),
with its own settings, workspaces, config and runtime dirs, all removed again by stop().
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
from conftest import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# User settings the server starts with: no news or update pop-ups (they would also reach the internet), and
# every cell attached to the DOM (the default windowing leaves off-screen cells out of prompts and screenshots).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def notebooks_dir() -> str:
    return os.environ.get("MINICONTAINER_NOTEBOOKS") or os.path.join(REPO, "notebooks")


def notebooks_glob() -> str:
    return os.path.join(notebooks_dir(), "[0-9][0-9]-*.ipynb")


def copy_without_outputs(source: str, target: str) -> None:
    """Copy the notebook folder; the copies start with no outputs, so every prompt and output seen is fresh."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for path in glob.glob(os.path.join(target, "*.ipynb")):
        with open(path) as f:
            nb = json.load(f)
        nb.get("metadata", {}).pop("widgets", None)
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        with open(path, "w") as f:
            json.dump(nb, f, indent=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`jupyter lab` on 127.0.0.1, a free port and a random token, serving root_dir."""

    def __init__(self, root_dir: str, home: str):
        self.home, self.token, self.port = home, os.urandom(16).hex(), free_port()
        dirs = {name: os.path.join(home, name) for name in ("settings", "workspaces", "config", "runtime")}
        for plugin, values in SETTINGS.items():
            path = os.path.join(dirs["settings"], plugin + ".jupyterlab-settings")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(values, f)
        for d in dirs.values():
            os.makedirs(d, exist_ok=True)
        env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=dirs["settings"], JUPYTERLAB_WORKSPACES_DIR=dirs["workspaces"],
                   JUPYTER_CONFIG_DIR=dirs["config"], JUPYTER_RUNTIME_DIR=dirs["runtime"])
        self.log_path = os.path.join(home, "server.log")
        with open(self.log_path, "w") as log:
            # Its own session: stop() can signal the server's whole process group.
            self.process = subprocess.Popen(
                [os.path.join(sys.prefix, "bin", "jupyter"), "lab", "--no-browser", "--allow-root",
                 "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                 f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root_dir}",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_until_up(60)

    def _wait_until_up(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                self.api("GET", "api/status")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer on port {self.port}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def api(self, method: str, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_status(self, notebook: str) -> str | None:
        """The execution state the server last heard from the notebook's kernel (idle, busy, starting...)."""
        for session in self.api("GET", "api/sessions"):
            if session["path"] == notebook and session.get("kernel"):
                return session["kernel"]["execution_state"]
        return None

    def delete_sessions(self) -> None:
        """Shut down every notebook's kernel, so each run starts from a fresh one."""
        for session in self.api("GET", "api/sessions"):
            self.api("DELETE", f"api/sessions/{session['id']}")

    def stop(self) -> None:
        """Kernels first (they run in sessions of their own), then the server's group, then any stragglers."""
        if self.process.poll() is None:
            try:
                self.delete_sessions()
            except (OSError, urllib.error.URLError):
                pass
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        for child in descendants:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(descendants, timeout=10)
