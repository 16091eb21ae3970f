"""Per-container state on disk: ROOT/NAME/{state.json, exec.fifo, upper/, work/, merged/}.

ROOT is /run/minicontainer for root, or what `--root` (use_root) or MINICONTAINER_STATE names.

Two lifetimes share this layout. A supervised container (notebooks, `run`) has a helper that writes
the state when it starts and removes it when the container ends; what a crashed helper leaves,
`minicontainer cleanup` removes. An OCI container (`create`) outlives the process that made it: its
state stays until `delete`, and its status is read from the kernel and the gate each time it is
asked (oci_status), never stored, so it cannot go stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from enum import Enum


def _default_root() -> str:
    """/run/minicontainer for root; a rootless user's own runtime directory otherwise."""
    if os.geteuid() == 0:
        return "/run/minicontainer"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/minicontainer-{os.geteuid()}"
    return os.path.join(runtime, "minicontainer") if "XDG_RUNTIME_DIR" in os.environ else runtime


STATE_ROOT = os.environ.get("MINICONTAINER_STATE") or _default_root()  # the default; see root()
_chosen_root: str | None = None

# An OCI id may be 1024 characters; a directory name at most 255 bytes (NAME_MAX).
LONGEST_DIR_NAME = 128
GATE = "exec.fifo"  # init blocks opening it for writing until `start` opens it for reading


class Status(str, Enum):
    """A container's life, one set of names for every mode. The OCI runtime spec's four (creating,
    created, running, stopped) and the lab's stage: a container under construction, its steps run one by
    one on request. A str, so that state.json and `state` print the plain word."""

    CREATING = "creating"  # its start sequence runs
    STAGED = "staged"      # paused between steps of the sequence (a notebook's Stage)
    CREATED = "created"    # every step but exec has run: PID 1 waits for start
    RUNNING = "running"    # PID 1 has exec'd the command
    STOPPED = "stopped"    # PID 1 has ended (or never came to be)

    def __str__(self) -> str:
        return self.value


# The moves the runtime makes; any other is a bug of ours, and says so (advance).
TRANSITIONS = {
    None: {Status.CREATING},
    Status.CREATING: {Status.STAGED, Status.CREATED, Status.STOPPED},
    Status.STAGED: {Status.STAGED, Status.CREATED, Status.RUNNING, Status.STOPPED},
    Status.CREATED: {Status.RUNNING, Status.STOPPED},
    Status.RUNNING: {Status.STOPPED},
    Status.STOPPED: set(),
}


def advance(current: Status | None, new: Status) -> Status:
    """The next status, if the lifecycle allows the move; else a RuntimeError naming it."""
    if new not in TRANSITIONS[current]:
        raise RuntimeError(f"a container cannot go from {current or 'nothing'} to {new}")
    return new


def use_root(path: str) -> None:
    """`--root`: where this process keeps and looks for containers' state, instead of the default."""
    global _chosen_root
    _chosen_root = os.path.abspath(path)


def root() -> str:
    return _chosen_root or STATE_ROOT


def dir_name(container_id: str) -> str:
    """A container's directory (and cgroup) name: its id, or for an id too long for one, a prefix and a
    digest of the whole id (state.json keeps the id itself)."""
    if len(container_id) <= LONGEST_DIR_NAME:
        return container_id
    return container_id[:64] + "-" + hashlib.sha256(container_id.encode()).hexdigest()[:32]


def container_dir(name: str) -> str:
    return os.path.join(root(), name)


def oci_status(info: dict) -> Status:
    """The OCI runtime spec's status of a container made by `create`, from the kernel and the gate:
    creating (its creator still runs the steps), created (init waits at the gate), running (init has
    passed it), stopped (init has exited, or its creator died before init reached the gate)."""
    init_alive = process_alive(info.get("init_pid"), info.get("init_start"))
    if info.get("status") == Status.CREATING:
        creator_alive = process_alive(info.get("helper_pid"), info.get("helper_start"))
        return Status.CREATING if creator_alive else Status.STOPPED
    if not init_alive:
        return Status.STOPPED
    gate = os.path.join(container_dir(info["name"]), GATE)
    return Status.CREATED if os.path.exists(gate) else Status.RUNNING


def write_state(name: str, state: dict) -> None:
    path = os.path.join(container_dir(name), "state.json")
    temporary = f"{path}.{os.getpid()}.tmp"  # each writer its own: a helper and its caller may both write
    with open(temporary, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(temporary, path)  # readers never see half a file


def read_state(name: str) -> dict | None:
    try:
        with open(os.path.join(container_dir(name), "state.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def all_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(root()) if not n.startswith(".") and os.path.isdir(container_dir(n)))
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
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. FileNotFoundError once it
    is gone, also when it was reaped between the open and the read (which says ESRCH)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except ProcessLookupError:
        raise FileNotFoundError(f"/proc/{pid}/stat: process {pid} has been reaped") from None


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
