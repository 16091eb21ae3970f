"""What the kernel holds about a process, read from /proc, as plain data (no printing).

Widgets and notebooks render these; tests assert on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import namespaces
from .errors import LabError
from .kernel import CAPABILITIES


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
    super_options: str = ""  # the filesystem's own options, e.g. overlay's lowerdir=...


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
                           r[0], r[1] if len(r) > 1 else "", r[2] if len(r) > 2 else ""))
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


# -- views that need a process inside another namespace ------------------------------------
# The caller (often a Jupyter kernel) never calls setns itself: a fresh interpreter does it.

def _in_namespace(pid: int, what: str):
    """Ask a fresh process to enter pid's namespace of one kind and report (see __main__ below)."""
    import json

    from .process import spawn
    out = spawn.run_forked("minicontainer.inspect", str(pid), what, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise LabError(f"cannot look inside process {pid}: {out.stderr.strip().splitlines()[-1:]}",
                       "it has exited, or this needs root", "check that the container still runs")
    return json.loads(out.stdout)


def hostname(pid: int) -> str:
    """The hostname in a process's UTS namespace (read by a helper that enters it)."""
    return _in_namespace(pid, "hostname")


def network(pid: int | str = "self") -> dict:
    """Links, addresses and routes in a process's network namespace ("self": the caller's)."""
    if pid == "self":
        from . import network as net
        return net.describe()
    return _in_namespace(int(pid), "network")


def mount_namespace_root_is_host(pid: int) -> bool:
    """Is the root of the process's mount namespace the host's own root directory?

    True after a plain chroot (the host's tree is still mounted there, and reachable by
    climbing out); False after pivot_root with the old root detached.
    """
    here = os.stat("/")
    return _in_namespace(pid, "root") == [here.st_dev, here.st_ino]


# -- cgroups as the kernel shows them ------------------------------------------------------

def cgroup_of(pid: int):
    """The Cgroup a process is in, from /proc/PID/cgroup (not from any spec)."""
    from .cgroups import Cgroup, detect
    layout = detect()
    membership = cgroups(pid)
    dirs = {}
    for name, controller in layout.controllers.items():
        key = "" if controller.version == 2 else next(
            (k for k in membership if name in k.split(",") or (name == "io" and "blkio" in k.split(","))), None)
        if key is not None and key in membership:
            dirs[name] = os.path.join(controller.mount, membership[key].lstrip("/"))
    return Cgroup(os.path.basename(next(iter(dirs.values()), "")), dirs=dirs, layout=layout)


def cgroup_stats(group) -> dict:
    """A cgroup's counters: memory, CPU, pids, OOM kills, frozen (see Cgroup.stats)."""
    return group.stats()


def memory_file(group) -> str | None:
    """The cgroupfs file that holds the cgroup's current memory use."""
    from .cgroups import detect
    directory = group.dirs.get("memory")
    if directory is None:
        return None
    return os.path.join(directory, "memory.current" if detect().version_of("memory") == 2 else "memory.usage_in_bytes")


@dataclass
class CgroupNode:
    path: str        # the directory in cgroupfs
    depth: int       # below the root shown
    processes: int   # in this cgroup itself


def cgroup_tree(root: str, max_depth: int = 4) -> list[CgroupNode]:
    """The cgroup directories below root, depth-first, with how many processes each holds."""
    nodes = []
    for top, dirs, _ in os.walk(root):
        depth = top[len(root):].count("/")
        if depth > max_depth:
            dirs[:] = []
            continue
        dirs.sort()
        try:
            with open(os.path.join(top, "cgroup.procs")) as f:
                count = len(f.read().split())
        except OSError:
            count = 0
        nodes.append(CgroupNode(top, depth, count))
    return nodes


def cgroup_files(directory: str, limit: int = 400) -> dict[str, str]:
    """Each readable interface file in a cgroup directory and (the start of) its content."""
    files = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                files[name] = f.read(limit).strip()
        except OSError:
            continue  # write-only files (cgroup.kill) and files the kernel refuses to read
    return files


if __name__ == "__main__":  # python -m minicontainer.inspect PID hostname|root|network: see _in_namespace
    import json
    import socket
    import sys

    from . import security
    target, what = int(sys.argv[1]), sys.argv[2]
    kind = {"hostname": "uts", "root": "mnt", "network": "net"}[what]
    # Outside the container's PID namespace, so invisible from inside; non-dumpable all the same, as every
    # process of the runtime's that enters a container's namespaces.
    security.make_non_dumpable()
    # Its user namespace first, where it has one of its own: the rights to enter the rest are held there
    # (an unprivileged learner owns their rootless container's user namespace, and has them only inside it).
    namespaces.enter(namespaces.open_namespaces(target, ["user", kind]))
    if what == "network":
        from . import network
        print(json.dumps(network.describe()))
    elif what == "hostname":
        print(json.dumps(socket.gethostname()))
    else:  # setns into a mount namespace moves our root to the namespace's root
        st = os.stat("/")
        print(json.dumps([st.st_dev, st.st_ino]))
