"""Reading and writing cgroupfs files, with errors that say which file and why."""

from __future__ import annotations

import errno
import os

from ..errors import LabError

_CAUSES = {
    errno.EBUSY: "cgroup v2 forbids enabling controllers in a cgroup that holds processes "
                 "(the 'no internal processes' rule), or the cgroup is in use",
    errno.EINVAL: "the kernel rejected the value (out of range, or the wrong format for this file)",
    errno.ENOENT: "the file or cgroup does not exist (controller not enabled here?)",
    errno.EACCES: "no permission: run as root, or delegate this cgroup subtree to your user",
    errno.EPERM: "not permitted: run as root",
    errno.EOPNOTSUPP: "this controller or feature is not available in this cgroup",
    errno.EAGAIN: "the cgroup's pids limit is reached (fork refused)",
    errno.ENOSPC: "no CPU or memory node configured in this cpuset cgroup",
}


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file such as memory.events or cpu.stat: "key value" per line."""
    values = {}
    for line in read_file(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def write_file(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        # cgroupfs cannot create files, so opening a missing one for writing fails with EACCES, not ENOENT.
        cause = errno.ENOENT if e.errno == errno.EACCES and not os.path.exists(path) else e.errno
        raise LabError(f"writing {value!r} to {path} failed: {os.strerror(e.errno)}",
                       _CAUSES.get(cause, "see the kernel's cgroup documentation for this file"),
                       "run `minicontainer doctor` to see this host's cgroup set-up") from None
