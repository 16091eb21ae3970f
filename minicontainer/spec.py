"""ContainerSpec: what to build. Checked before anything touches the kernel."""

from __future__ import annotations

import os
import re
import resource
import secrets
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from . import namespaces, security
from .cgroups.limits import parse_cpus, parse_pids, parse_size
from .errors import LabError
from .process import mcinit
from .security import Security

DEFAULT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TERM": "xterm"}
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_+.-]{0,127}$")
_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


def _user_namespace_of(join: dict) -> int | str | None:
    """The process (or /proc path) whose user namespace holds the namespaces a spec joins; None for none, or for
    a path that is not under /proc (a bind such as /run/netns/NAME names no process)."""
    for where in join.values():
        if not isinstance(where, str):
            return where
        match = re.match(r"^/proc/(\d+)/ns/[a-z_]+$", where)
        if match:
            return f"/proc/{match.group(1)}/ns/user"
    return None


def _a_user_namespace_of_ours(path: str) -> bool:
    """A user namespace below ours that we may enter: its process is ours to follow the link of (ptrace access
    mode read), and it is not our own namespace."""
    try:
        return os.stat(path).st_ino != namespaces.ns_inode("self", "user")
    except PermissionError:
        return False


class Bind(NamedTuple):
    """A host file or directory shown at target inside the container."""
    source: str
    target: str
    read_only: bool = True


JOINABLE = ("net", "ipc", "uts", "pid", "cgroup")  # kinds a container may share with another (by PID or path)


class Port(NamedTuple):
    """A published port: host_ip:host_port on the host forwarded to container_port."""
    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"


@dataclass
class ContainerSpec:
    """What to build. Limits, binds and ports may be given as text ("64M", 0.5, ("/src", "/dst", True))
    and are typed values from then on: bytes, a CPU fraction, a count, Bind and Port."""
    rootfs: str | None                      # None: a namespace-only process on the host's filesystem
    command: list[str] = field(default_factory=lambda: ["/bin/sh"])
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    hostname: str | None = None
    namespaces: tuple[str, ...] = namespaces.DEFAULT_KINDS
    memory: int | None = None               # bytes ("64M" when made); swap is off unless swap=True
    cpus: float | None = None               # 0.5 = half a CPU's time per period
    pids: int | None = None
    swap: bool | int = False                # True: unlimited; a number: memory and swap together (OCI)
    cwd: str = "/"
    name: str = ""                          # also the cgroup's directory name
    uid_map: str = "0 100000 65536"         # with the user namespace: inside outside count
    time_offset: int = 0                    # with the time namespace: seconds added to CLOCK_MONOTONIC/BOOTTIME
    fresh_proc: bool = True                 # namespace-only process: mount a new /proc (needs mnt + pid)
    tty: bool = False                       # stdin is a pty slave: make it the controlling terminal
    binds: list[Bind] = field(default_factory=list)  # e.g. a payload: [(host path, container path, read_only)]
    root_switch: str = "pivot_root"         # or "chroot", to show why containers do not use it
    network: str = "none"                   # "none": lo (down) and no address; "loopback": lo up, as runc and
                                            # crun give an OCI config's new network namespace; "bridge": the
                                            # lab bridge, NAT, publish; "slirp4netns": user-mode networking,
                                            # rootless too (usernet.py)
    publish: list[Port] = field(default_factory=list)  # with bridge: [(host ip, host port, ctr port, proto)]
    security: Security = field(default_factory=Security)  # the defences; Security.off() for none
    user: str | None = None                 # "UID[:GID]" to run the command as, after the set-up as root
    read_only_root: bool = False            # / remounted read-only (docker --read-only); /tmp stays a tmpfs
    rlimits: dict = field(default_factory=dict)  # {"RLIMIT_NOFILE": (soft, hard)}
    extra_mounts: tuple = ()                # "mqueue" (/dev/mqueue), "cgroup" (/sys/fs/cgroup, read-only, v2)
    join: dict = field(default_factory=dict)  # {"net": PID}: enter that process's namespace, as pods share one;
                                              # or a path to it (an OCI config's namespace path)
    cgroup_path: str | None = None          # OCI linux.cgroupsPath: absolute from each hierarchy's root, or
                                            # relative to the runtime's own cgroup; None: our base dir + name
    sysctl: dict = field(default_factory=dict)  # {"net.ipv4.ping_group_range": "0 0"}: namespaced ones only
    masked: list | None = None              # OCI maskedPaths, path by path; None: the runtime's own list
    read_only_paths: list | None = None     # OCI readonlyPaths, likewise
    groups: list | None = None              # supplementary gids (OCI additionalGids); None: none for a user
    umask: int | None = None                # the command's umask; None: the runtime's own (022)
    oom_score_adj: int | None = None        # /proc/self/oom_score_adj of PID 1 (children inherit it)
    bind_options: dict = field(default_factory=dict)  # bind target -> mount flags beyond ro: nosuid, nodev, noexec
    console_fd: int | None = None           # OCI create --console-socket: a connected socket; tty=True then
    cpu_shares: int | None = None           # OCI cpu.shares: a weight against sibling cgroups
    device_rules: list | None = None        # OCI: the devices a config allows, [type, major, minor, access];
                                            # None: the runtime's own list (devices.ALLOWED)
    hooks: dict = field(default_factory=dict)  # OCI hooks by kind (hooks.py); only create, start and delete run them
    tmpfs: dict = field(default_factory=dict)  # target -> options ("size=64m", "nosuid"...): tmpfs mounts asked for
    init: bool = False                      # a small init as PID 1 runs the command as PID 2: passes signals
                                            # on, reaps orphans (process/mcinit.c; docker run --init)
    rootless: bool | None = None            # started by an unprivileged user (root inside is that user
                                            # outside); None: whether this process is not root
    rootless_cgroup: bool | None = None     # rootless, a cgroup below the one the host delegated to the user
                                            # (cgroups.delegated_to_us); None: where there is one (never for root)

    def __post_init__(self):
        self.namespaces = namespaces.check_kinds(self.namespaces)
        # Parsed once, here: every later reader (cgroups, OCI, ps, the steps) gets typed values.
        self.memory = None if self.memory is None else parse_size(self.memory)
        self.cpus = None if self.cpus is None else parse_cpus(self.cpus)
        self.pids = None if self.pids is None else parse_pids(self.pids)
        self.binds = [Bind(*bind) for bind in self.binds]
        self.publish = [Port(*port) for port in self.publish]
        self.extra_mounts = tuple(self.extra_mounts)
        self.rlimits = {name: tuple(values) for name, values in self.rlimits.items()}
        if isinstance(self.security, dict):
            self.security = Security(**self.security)
        if not self.name:
            self.name = "mc-" + secrets.token_hex(4)
        if self.hostname is None and "uts" in self.namespaces and "uts" not in self.join and \
                _HOSTNAME.match(self.name):
            self.hostname = self.name  # "": keep the copy of the host's name the UTS namespace starts with
        if self.rootless is None:
            self.rootless = os.geteuid() != 0
        if self.rootless and "user" not in self.namespaces and "user" not in self.join:
            pod = _user_namespace_of(self.join)
            if pod is not None:
                # Rootless, another container's namespaces are held by its user namespace: only inside that one
                # may they be joined (a user namespace of our own would hold no rights over them), as rootless
                # Podman's pods share one.
                self.join = {"user": pod, **self.join}
            else:
                self.namespaces = ("user", *self.namespaces)  # rootless is a user namespace where root is its caller
        if self.rootless and self.rootless_cgroup is None:
            # Root asking for rootless mode gets what an unprivileged user gets where nothing is delegated.
            from .cgroups import delegated_to_us
            self.rootless_cgroup = os.geteuid() != 0 and delegated_to_us() is not None
        if self.rootless and self.uid_map == ContainerSpec.uid_map:
            self.uid_map = f"0 {os.geteuid()} 1"  # unprivileged: only our own uid can be mapped

    def validate(self) -> ContainerSpec:
        """Raise a LabError for anything the kernel would refuse later, with a clearer message."""
        if os.geteuid() != 0 and "user" not in self.namespaces and "user" not in self.join:
            raise LabError("minicontainer needs root (or rootless mode)", "namespaces, mounts and cgroups need "
                           "CAP_SYS_ADMIN, which an unprivileged user has only inside a user namespace of its own",
                           "run with sudo or inside the lab VM, or rootless: minicontainer run --rootless")
        if self.rootless and self.network == "bridge":
            raise LabError("a rootless container cannot join the lab bridge", "creating veth pairs and NAT rules "
                           "on the host needs root", "use network='slirp4netns' (user-mode networking) or 'none' "
                           "when rootless")
        if not _NAME.match(self.name):
            raise LabError(f"container name {self.name!r} is not valid", "it becomes a cgroup directory name",
                           "use letters, digits, '_', '+', '.', '-' (at most 128)")
        if self.hostname and not _HOSTNAME.match(self.hostname):
            raise LabError(f"hostname {self.hostname!r} is not valid",
                           "a hostname is letters, digits and '-', at most 63, not starting or ending with '-'",
                           "choose one like lab or box-1")
        if self.hostname and "uts" not in self.namespaces:
            raise LabError("a hostname needs the uts namespace", "without it the host's hostname would change",
                           "add 'uts' to the namespaces")
        if not self.command or not all(isinstance(a, str) for a in self.command):
            raise LabError("no command to run", "the command is empty", "give one, e.g. -- sh -c 'echo hi'")
        if self.rootfs is not None and "mnt" not in self.namespaces:
            raise LabError("a root filesystem needs the mnt namespace",
                           "pivot_root and the container's mounts would change the host's mount table",
                           "add 'mnt' to the namespaces")
        if self.root_switch not in ("pivot_root", "chroot"):
            raise LabError(f"root_switch {self.root_switch!r} is unknown", "the root is switched by pivot_root "
                           "or chroot", "use root_switch='pivot_root' (the default) or 'chroot'")
        for bind in self.binds:
            source, target = bind[0], bind[1]
            if not os.path.exists(source):
                raise LabError(f"bind source {source!r} does not exist", "a bind mount needs an existing file "
                               "or directory on the host", "check the path")
            if not target.startswith("/") or ".." in target.split("/"):
                raise LabError(f"bind target {target!r} is not an absolute path inside the container",
                               "targets are paths as the container sees them", "write it like /data")
            if self.rootfs is None:
                raise LabError("binds need a rootfs", "a namespace-only process already sees the host's files",
                               "give a rootfs, or drop the binds")
        if self.network not in ("none", "loopback", "bridge", "slirp4netns"):
            raise LabError(f"network {self.network!r} is unknown", "a container's network is none, loopback, "
                           "bridge or slirp4netns (for the host's network, leave 'net' out of the namespaces)",
                           "use 'none', 'loopback', 'bridge' or 'slirp4netns'")
        if self.network in ("bridge", "loopback", "slirp4netns") and "net" not in self.namespaces:
            raise LabError(f"network={self.network!r} needs the net namespace", "it configures a network namespace "
                           "of the container's own, not the host's", "add 'net' to the namespaces")
        if self.publish and self.network not in ("bridge", "slirp4netns"):
            raise LabError("publishing a port needs network='bridge' (or 'slirp4netns')", "ports are forwarded to "
                           "the container's address on the lab bridge (or relayed by slirp4netns)",
                           "use --net bridge (rootless: --net slirp4netns) with --publish")
        self.security.check()
        for name in self.rlimits:
            if not name.startswith("RLIMIT_") or not hasattr(resource, name):
                raise LabError(f"unknown rlimit {name!r}", "limits are named as in getrlimit(2)",
                               "use e.g. RLIMIT_NOFILE or RLIMIT_NPROC")
        for kind, pid in self.join.items():
            where = pid if isinstance(pid, str) else f"/proc/{pid}/ns/{kind}"
            if kind not in JOINABLE and not (kind == "user" and self.rootless):
                raise LabError(f"cannot join a {kind} namespace", "a container may share the net, ipc, uts, pid "
                               "and cgroup namespaces of another (as the containers of a Kubernetes pod do); its own "
                               "mount and user namespaces are what its other defences stand on",
                               f"join one of {', '.join(JOINABLE)}")
            if kind == "pid" and "user" in self.namespaces:
                raise LabError("joining a PID namespace from a user namespace of its own", "the new user namespace "
                               "holds no privilege over the other container's PID namespace", "drop one of them")
            if not os.path.lexists(where):  # (exists() is False too where the link is not ours to follow)
                raise LabError(f"no {kind} namespace at {where} to join", "its process has exited, or the path is "
                               "wrong", "give the PID of a running container, or a namespace's path")
            if kind == "user" and not _a_user_namespace_of_ours(where):
                raise LabError(f"{where} is not a user namespace of yours", "rootless, a container can join only "
                               "the namespaces of another rootless container: only in its user namespace do you hold "
                               "rights over them", "join a container you started rootless")
            if kind == "uts" and self.hostname:
                raise LabError("a hostname and joining a UTS namespace conflict", "the hostname belongs to the "
                               "namespace joined", "drop the hostname")
            if kind == "net" and self.network == "bridge":
                raise LabError("joining a network namespace and network='bridge' conflict",
                               "the joined namespace already has its network", "drop network='bridge'")
        security.check_sysctls(self.sysctl, set(self.namespaces) | set(self.join))
        unknown = [m for m in self.extra_mounts if m not in ("mqueue", "cgroup")]
        if unknown:
            raise LabError(f"unknown extra mount(s) {unknown}", "only mqueue and cgroup are known",
                           "use extra_mounts=('mqueue', 'cgroup')")
        if self.user is not None and not re.match(r"^\d+(:\d+)?$", str(self.user)):
            raise LabError(f"user {self.user!r} is not UID or UID:GID", "the image has no user database to look "
                           "names up in", "give numbers, e.g. user='1000:1000'")
        if self.init:
            if "pid" not in self.namespaces:
                raise LabError("init=True needs the pid namespace", "the init is there to be PID 1 of the "
                               "container's own PID namespace", "add 'pid' to the namespaces, or drop init")
            mcinit.build()  # compiled here, in the caller, before anything is made
        if self.time_offset and "time" not in self.namespaces:
            raise LabError("a clock offset needs the time namespace", "only a time namespace has offsets",
                           "add 'time' to the namespaces")
        return self

    def to_dict(self) -> dict:
        data = asdict(self)
        data["namespaces"] = list(self.namespaces)
        data["binds"] = [list(b) for b in self.binds]
        data["publish"] = [list(p) for p in self.publish]
        data["extra_mounts"] = list(self.extra_mounts)
        data["join"] = {k: v if isinstance(v, str) else int(v) for k, v in self.join.items()}
        data["rlimits"] = {k: list(v) for k, v in self.rlimits.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ContainerSpec:
        return cls(**data)
