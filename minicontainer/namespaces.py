"""Namespaces: the eight kinds, a process's namespace identities, and entering them.

A namespace is a kernel object; /proc/PID/ns/KIND is a handle to the one a
process is in, and its inode number ("uts:[4026531838]") is its identity: two
processes share a namespace exactly when the numbers match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import kernel
from .errors import LabError


@dataclass(frozen=True)
class Kind:
    name: str        # the file in /proc/PID/ns
    flag: int        # CLONE_NEW* for unshare/setns
    isolates: str    # what the kind gives the process its own view of
    children_only: bool = False  # unshare moves only the caller's future children


KINDS = {
    "mnt": Kind("mnt", kernel.CLONE_NEWNS, "mount table"),
    "uts": Kind("uts", kernel.CLONE_NEWUTS, "hostname and domain name"),
    "ipc": Kind("ipc", kernel.CLONE_NEWIPC, "System V IPC and POSIX message queues"),
    "pid": Kind("pid", kernel.CLONE_NEWPID, "process IDs (the first process is PID 1)", True),
    "net": Kind("net", kernel.CLONE_NEWNET, "network devices, addresses, routes, ports"),
    "user": Kind("user", kernel.CLONE_NEWUSER, "user and group IDs, and capabilities"),
    "cgroup": Kind("cgroup", kernel.CLONE_NEWCGROUP, "cgroup root: /proc/self/cgroup paths start at its own group"),
    "time": Kind("time", kernel.CLONE_NEWTIME, "CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets", True),
}

# Kinds a container gets unless its spec says otherwise. The user namespace is
# opt-in: with it, root inside maps to another uid outside (see uid_map).
DEFAULT_KINDS = ("mnt", "uts", "ipc", "pid", "net", "cgroup")


def check_kinds(kinds) -> tuple[str, ...]:
    """Validate namespace kind names; a typo gets the list of real ones."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise LabError(f"unknown namespace kind(s): {', '.join(unknown)}",
                       "namespace kinds are named as in /proc/PID/ns",
                       f"use some of: {', '.join(KINDS)}")
    return kinds


def flags_for(kinds) -> int:
    """OR together the CLONE_NEW* flags for these kinds."""
    flags = 0
    for name in check_kinds(kinds):
        flags |= KINDS[name].flag
    return flags


def ns_inode(pid: int | str, kind: str) -> int:
    """The identity of a process's namespace: the inode number behind /proc/PID/ns/KIND."""
    link = os.readlink(f"/proc/{pid}/ns/{kind}")  # e.g. "uts:[4026531838]"
    return int(link.split("[", 1)[1].rstrip("]"))


def identities(pid: int | str = "self") -> dict[str, int]:
    """Every namespace identity of a process, by kind (kinds this kernel lacks are left out)."""
    ids = {}
    for kind in KINDS:
        try:
            ids[kind] = ns_inode(pid, kind)
        except (FileNotFoundError, PermissionError):
            continue  # a kind this kernel lacks, or a process we may not inspect
        except ProcessLookupError:
            raise LabError(f"process {pid} does not exist", "it has exited", "check the PID") from None
    return ids


def shared_with(pid: int, other: int | str = "self") -> list[str]:
    """Kinds in which two processes (by default: pid and the caller) are in the same namespace."""
    mine, theirs = identities(other), identities(pid)
    return [k for k in theirs if theirs[k] == mine.get(k)]


def unshare(kinds) -> None:
    """Move the calling process into new namespaces of these kinds (see kernel.unshare).

    Only for a fresh, single-threaded process (the helper or the container's init):
    never call it in a Jupyter kernel.
    """
    kernel.unshare(flags_for(kinds))


def open_namespaces(pid: int, kinds) -> list[tuple[str, int]]:
    """Open /proc/PID/ns/KIND for each kind that differs from ours, ready for setns.

    All are opened first, because entering the mount namespace changes what
    /proc paths resolve to.
    """
    opened = []
    for kind in check_kinds(kinds):
        try:
            if ns_inode(pid, kind) == ns_inode("self", kind):
                continue  # already there; setns to one's own user namespace fails with EINVAL
            opened.append((kind, os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                raise LabError(f"process {pid} does not exist", "the container has exited",
                               "list running containers with `minicontainer ps`") from None
    return opened


def enter(opened: list[tuple[str, int]]) -> None:
    """setns(2) into each opened namespace: user first (it grants the rights for the rest).

    PID and time namespaces apply to children made after this call, so the caller
    forks next; entering a mount namespace also moves our root and cwd to its root.
    """
    for kind, fd in sorted(opened, key=lambda item: item[0] != "user"):
        kernel.setns(fd, KINDS[kind].flag)
        os.close(fd)
