"""Per-container state on disk: /run/minicontainer/NAME/{state.json, upper/, work/, merged/}.

The helper writes it when the container starts and removes it when it ends; a
crashed helper leaves it for `minicontainer cleanup`.
"""

from __future__ import annotations

import json
import os
import shutil


def _default_root() -> str:
    """/run/minicontainer for root; a rootless user's own runtime directory otherwise."""
    if os.geteuid() == 0:
        return "/run/minicontainer"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/minicontainer-{os.geteuid()}"
    return os.path.join(runtime, "minicontainer") if "XDG_RUNTIME_DIR" in os.environ else runtime


STATE_ROOT = os.environ.get("MINICONTAINER_STATE") or _default_root()


def container_dir(name: str) -> str:
    return os.path.join(STATE_ROOT, name)


def write_state(name: str, state: dict) -> None:
    path = os.path.join(container_dir(name), "state.json")
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)  # readers never see half a file


def read_state(name: str) -> dict | None:
    try:
        with open(os.path.join(container_dir(name), "state.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def all_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(STATE_ROOT) if not n.startswith(".") and os.path.isdir(container_dir(n)))
    except FileNotFoundError:
        return []


def process_alive(pid: int | None, start_time: int | None = None) -> bool:
    """Is this PID still the process we recorded (same start time), not a reused PID?"""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if fields[0] == "Z":
        return False
    return start_time is None or int(fields[19]) == start_time


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def remove_dir(name: str) -> bool:
    path = container_dir(name)
    if os.path.lexists(path):
        shutil.rmtree(path, onerror=_unlock_and_remove)
        return True
    return False


def _unlock_and_remove(function, failed: str, _exc_info) -> None:
    """overlayfs leaves work/work at mode 000; root passes through it, its unprivileged owner (rootless)
    cannot list it until it gives itself the right back."""
    try:
        os.chmod(failed, 0o700)
        shutil.rmtree(failed, ignore_errors=True)
    except OSError:
        pass
