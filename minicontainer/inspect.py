"""What the kernel holds about a process, read from /proc, as plain data (no printing).

Widgets and notebooks render these; tests assert on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import namespaces
from .errors import LabError

# Bit numbers from <linux/capability.h>.
CAPABILITIES = [
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
]


def decode_capabilities(mask: int) -> list[str]:
    """CAP_* names for the bits set in a capability mask such as CapEff from /proc/PID/status."""
    return [f"CAP_{name.upper()}" for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


@dataclass
class Mount:
    mount_id: int
    parent_id: int
    root: str            # the part of the filesystem shown at the mount point
    mount_point: str
    options: str
    propagation: str     # "shared:N", "master:N", or "private"
    fstype: str
    source: str


@dataclass
class IdMapRange:
    inside: int
    outside: int
    count: int


@dataclass
class ProcessInfo:
    pid: int
    command: str
    namespaces: dict[str, int]
    nspid: list[int]                     # the PID in each nested PID namespace, outermost first
    cgroups: dict[str, str]              # hierarchy ("memory", "" for v2) -> path
    capabilities: dict[str, list[str]]   # effective, permitted, bounding, ... -> names
    uid_map: list[IdMapRange]
    gid_map: list[IdMapRange]
    uids: list[int] = field(default_factory=list)  # real, effective, saved, filesystem
    no_new_privs: bool = False


def _read(pid, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise LabError(f"process {pid} does not exist", "it has exited", "check the PID (ps, or /proc)") from None


def status(pid: int | str = "self") -> dict[str, str]:
    """/proc/PID/status as a dict of its "Key:\tvalue" lines."""
    return {k: v.strip() for k, _, v in (line.partition(":") for line in _read(pid, "status").splitlines())}


def cgroups(pid: int | str = "self") -> dict[str, str]:
    """/proc/PID/cgroup: "ID:controllers:path" -> {controllers: path} ("" is the v2 tree)."""
    result = {}
    for line in _read(pid, "cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        result[controllers] = path
    return result


def mounts(pid: int | str = "self") -> list[Mount]:
    """/proc/PID/mountinfo, one Mount per line."""
    table = []
    for line in _read(pid, "mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        optional = [x for x in f[6:] if ":" in x]
        table.append(Mount(int(f[0]), int(f[1]), f[3], f[4], f[5], " ".join(optional) or "private",
                           r[0], r[1] if len(r) > 1 else ""))
    return table


def id_map(pid: int | str, which: str = "uid") -> list[IdMapRange]:
    """/proc/PID/uid_map or gid_map: ranges "inside outside count" (identity 0 0 4294967295 on the host)."""
    return [IdMapRange(*map(int, line.split())) for line in _read(pid, f"{which}_map").splitlines() if line.strip()]


def process(pid: int | str = "self") -> ProcessInfo:
    """Everything above for one process."""
    st = status(pid)
    caps = {name: decode_capabilities(int(st.get(key, "0"), 16))
            for name, key in (("effective", "CapEff"), ("permitted", "CapPrm"), ("inheritable", "CapInh"),
                              ("bounding", "CapBnd"), ("ambient", "CapAmb"))}
    return ProcessInfo(
        pid=int(st["Pid"]), command=st.get("Name", ""), namespaces=namespaces.identities(pid),
        nspid=[int(p) for p in st.get("NSpid", st["Pid"]).split()], cgroups=cgroups(pid), capabilities=caps,
        uid_map=id_map(pid, "uid"), gid_map=id_map(pid, "gid"), uids=[int(u) for u in st["Uid"].split()],
        no_new_privs=st.get("NoNewPrivs", "0") == "1")


def children(pid: int) -> list[int]:
    """Direct children, from /proc/PID/task/*/children."""
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            kids += [int(c) for c in _read(pid, f"task/{tid}/children").split()]
        except LabError:
            continue
    return kids


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            todo += children(current)
        except (FileNotFoundError, LabError):
            continue
    return tree
