"""Security: what makes root inside a container much less than root.

Each defence is one field of Security, on by default, switchable off for a lesson:

- capabilities: all five sets are set before exec. The bounding set (the most any later
  program may gain) and the permitted and effective sets are cut to a short list; the
  inheritable and ambient sets are emptied, so a caller holding capabilities cannot pass them
  in. This limits root in the host's user namespace only: a new user namespace would give back
  every capability over what it owns, which is why seccomp refuses making one;
- devices: a device cgroup lets the container open only null, zero, full, random, urandom,
  tty, ptmx and its ptys. With it CAP_MKNOD is harmless and stays in the list, as in
  Docker: a node for the host's disk can be made, and opening it fails (devices.py);
- no_new_privs: execve can never add privileges (setuid binaries and file capabilities stop working);
- masked_paths: /proc files that expose or change the host (kcore, keys, sysrq-trigger, /proc/sys)
  are hidden under /dev/null or made read-only;
- seccomp: an allow-list of system calls (or the deny-list, to see what it misses), with
  TIOCSTI, and, unless CAP_SYS_ADMIN is kept, namespaces and mounts refused (seccomp.py);
- close_fds: only fds 0-2 (and those asked for) survive into the container;
- tmpfs_size: /dev/shm and /tmp are size-limited tmpfs, so filling them cannot fill a host disk;
- non_dumpable: the runtime's own processes are non-dumpable while they run the host's interpreter in
  the container's namespaces (PID 1 until it execs, `exec`'s process until it execs): no process of
  the container may open their /proc/PID/exe (the host's binary, runc's CVE-2019-5736), their fds or
  memory. execve of the container's program makes a process dumpable again, as the kernel always does.
  A notebook's staged container, rootless by an unprivileged user and joining nothing, leaves PID 1 dumpable
  until its exec (its owner's to inspect; before then no container's program can enter its namespaces); exec's process,
  `run` and OCI create keep the flag.

The steps that apply them, in order, are in process/steps.py; `minicontainer exec` runs the same.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import asdict, dataclass, field

from . import kernel, seccomp
from .cgroups.limits import parse_size
from .errors import LabError
from .kernel import CAPABILITIES
from .paths import path_in

# Docker's default list. CAP_MKNOD is in it because the device cgroup makes device nodes harmless.
DEFAULT_CAPABILITIES = ["chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
                        "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap"]

MASKED_PATHS = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
                "/proc/timer_stats", "/proc/acpi", "/proc/scsi", "/sys/firmware"]
READ_ONLY_PATHS = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"]


@dataclass
class Security:
    capabilities: list[str] | None = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))  # None: all
    no_new_privs: bool = True
    masked_paths: bool = True
    seccomp: str | None = "allowlist"    # "allowlist", "denylist", or None (off); True/False mean allowlist/off
    new_namespaces: bool = False         # let the container make namespaces and mount without CAP_SYS_ADMIN
    allow_syscalls: list[str] = field(default_factory=list)  # added to the allow-list, e.g. ["io_uring_setup"]
    devices: bool = True                 # the device cgroup (needs a cgroup: not in rootless mode)
    close_fds: bool = True
    keep_fds: list[int] = field(default_factory=list)
    oci_seccomp: dict | None = None      # an OCI config's linux.seccomp, compiled and loaded instead of ours
    tmpfs_size: int | None = 64 << 20    # bytes ("64m" when made) of /dev/shm and /tmp; None: unlimited (half
                                         # of RAM) and /tmp on disk
    non_dumpable: bool = True            # the runtime's processes in the container, until exec (see above);
                                         # off only to show the attack: off() keeps it, as --privileged does
    apparmor_profile: str = ""           # an OCI config's process.apparmorProfile: AppArmor confines the command

    def __post_init__(self):
        self.tmpfs_size = None if self.tmpfs_size is None else parse_size(self.tmpfs_size, "tmpfs size")
        if self.seccomp is True:
            self.seccomp = "allowlist"
        elif self.seccomp is False:
            self.seccomp = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def off(cls) -> Security:
        """Every defence of the container switched off (what `docker run --privileged` comes close to).
        non_dumpable stays: it protects the runtime, and runc keeps it under --privileged too."""
        return cls(capabilities=None, no_new_privs=False, masked_paths=False, seccomp=None, devices=False,
                   close_fds=False, tmpfs_size=None)

    @property
    def kept(self) -> set[str] | None:
        """The capability names kept (lower case, no CAP_), or None for all."""
        return None if self.capabilities is None else {c.lower().removeprefix("cap_") for c in self.capabilities}

    @property
    def refuses_namespaces(self) -> bool:
        """Docker's rule: namespaces and mounts only for a container that keeps CAP_SYS_ADMIN."""
        return not self.new_namespaces and self.kept is not None and "sys_admin" not in self.kept

    def check(self) -> None:
        unknown = [c for c in self.capabilities or [] if c.lower().removeprefix("cap_") not in CAPABILITIES]
        if unknown:
            raise LabError(f"unknown capabilities: {', '.join(unknown)}", "capabilities are named as in "
                           "capabilities(7), e.g. net_raw or CAP_NET_RAW", "see `man 7 capabilities`")
        if self.seccomp is not None:
            seccomp.check_profile(self.seccomp)
        if self.allow_syscalls:
            seccomp.check_names(self.allow_syscalls)


# -- mount-level defences (in the init, before pivot_root) -------------------------------------

def mask_paths(root: str, paths=None) -> None:
    """Hide files under /dev/null and directories under an empty read-only tmpfs (paths: an OCI config's
    maskedPaths; by default the runtime's own list)."""
    for path in MASKED_PATHS if paths is None else paths:
        target = path_in(root, path)
        if os.path.isdir(target):
            kernel.mount("tmpfs", target, "tmpfs", kernel.MS_RDONLY)
        elif os.path.exists(target):
            kernel.mount(os.path.join(root, "dev/null"), target, None, kernel.MS_BIND)


def read_only_paths(root: str, paths=None) -> None:
    """Bind each path onto itself, then remount the bind read-only (the two steps a bind needs); paths: an
    OCI config's readonlyPaths, by default the runtime's own list."""
    for path in READ_ONLY_PATHS if paths is None else paths:
        target = path_in(root, path)
        if os.path.exists(target):
            kernel.mount(target, target, None, kernel.MS_BIND | kernel.MS_REC)
            kernel.remount_bind(target, kernel.MS_RDONLY)


def mount_tmp(root: str, size: int) -> None:
    """A size-limited tmpfs on /tmp: writes there use (cgroup-charged) memory, not the host's disk."""
    target = os.path.join(root, "tmp")
    os.makedirs(target, exist_ok=True)
    kernel.mount("tmpfs", target, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV, f"mode=1777,size={size}")


# -- process-level defences (just before execve) ------------------------------------------------

def drop_bounding_set(kept: set[str] | None) -> None:
    """PR_CAPBSET_DROP each capability not kept (needs CAP_SETPCAP, so it comes first): no later
    execve can gain a capability outside this set, in this user namespace."""
    if kept is None:
        return
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for bit in range(last + 1):  # a newer kernel's capabilities have no name here: never kept
        if bit >= len(CAPABILITIES) or CAPABILITIES[bit] not in kept:
            kernel.prctl(kernel.PR_CAPBSET_DROP, bit)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def set_capabilities(kept: set[str] | None) -> None:
    """capset(2): effective and permitted = the kept list (none for a non-root user, whose execve
    would drop them anyway), inheritable = none; then the ambient set cleared.

    Why inheritable matters: at execve, root's new permitted set is its inheritable set plus the
    bounding set. A caller that started us with inheritable CAP_SYS_ADMIN would hand it to the
    container's root despite the bounding set.
    """
    # Never more than this process holds (a sandbox may hold fewer than every bit): capset cannot add.
    held = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("CapPrm:")), 16)
    if os.geteuid() != 0:
        mask = 0
    elif kept is None:
        mask = held
    else:
        mask = held & sum(1 << bit for bit, name in enumerate(CAPABILITIES) if name in kept)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (_CapData * 2)(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0), _CapData(mask >> 32, mask >> 32, 0))
    if kernel.capset(header, data) != 0:
        raise kernel.syscall_error("capset", f"effective=permitted={mask:#x}, inheritable=0", ctypes.get_errno())
    kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_CLEAR_ALL)


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: inherited by every child, and can never be unset."""
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)


APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"


def apparmor_enabled() -> bool:
    try:
        with open(APPARMOR_ENABLED) as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def apply_apparmor_profile(profile: str) -> None:
    """Ask AppArmor to confine this process in the profile from its next execve ("exec NAME" written to its
    own attr/exec, what aa_change_onexec(3) and runc do): the runtime's own steps stay unconfined, the command
    starts confined. The LSM's own directory where several LSMs stack (Linux 5.8+), else the shared file."""
    attr = "/proc/thread-self/attr/apparmor/exec"
    if not os.path.exists(attr):
        attr = "/proc/thread-self/attr/exec"
    try:
        fd = os.open(attr, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, f"exec {profile}".encode())
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.exists(attr):
            raise LabError(f"AppArmor has no profile named {profile!r} loaded", "the engine names a profile it "
                           "has not loaded, or it was unloaded", f"load it (apparmor_parser -r FILE) or check "
                           f"aa-status; writing to {attr} said: {e.strerror}") from None
        raise LabError(f"AppArmor refused the profile {profile!r}: {e.strerror}", "AppArmor is off, or this "
                       "process may not change profile", "check /sys/module/apparmor/parameters/enabled "
                       "and aa-status") from None


def load_seccomp(security: Security) -> None:
    """The allow-list (or deny-list) filter, and the argument rules (seccomp.py); or an OCI config's own."""
    if security.oci_seccomp is not None:
        seccomp.load_oci(security.oci_seccomp)
        return
    seccomp.load(security.seccomp, security.refuses_namespaces, security.allow_syscalls)


def close_inherited_fds(keep: list[int]) -> None:
    """Close every fd above 2 that is not asked for (close-on-exec ones close at exec anyway)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                if os.get_inheritable(fd):
                    os.close(fd)
            except OSError:
                pass  # the fd of the listdir itself, already gone


def make_non_dumpable() -> None:
    """PR_SET_DUMPABLE 0: /proc/PID/exe, fd/, mem and ptrace of this process need CAP_SYS_PTRACE over the
    user namespace its program was started in (the host's), which no default container has. Forks
    inherit it; execve resets it; so does a change of uid or gid (to fs.suid_dumpable): set it again."""
    kernel.prctl(kernel.PR_SET_DUMPABLE, 0)


def switch_user(user: str | None, groups: list[int] | None = None) -> None:
    """Become UID[:GID] (numbers): supplementary groups first (none, or those given: OCI's additionalGids),
    then gid, then uid (the reverse fails)."""
    if groups is not None:
        os.setgroups(groups)
    if not user:
        return
    uid, _, gid = str(user).partition(":")
    if groups is None:
        os.setgroups([])
    os.setgid(int(gid or uid))
    os.setuid(int(uid))


# Sysctls that belong to a namespace, by the kind that holds them (as runc allows them): writing one
# in the container's own namespace changes only that copy. Every other sysctl is the host's, and refused.
NAMESPACED_SYSCTLS = {
    "ipc": ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
            "kernel.shmmni", "kernel.shm_rmid_forced", "fs.mqueue."),
    "net": ("net.",),
    "uts": ("kernel.hostname", "kernel.domainname"),
}


def sysctl_namespace(key: str) -> str | None:
    """The namespace kind that holds this sysctl, or None for a host-global one."""
    for kind, names in NAMESPACED_SYSCTLS.items():
        if any(key == n or (n.endswith(".") and key.startswith(n)) for n in names):
            return kind
    return None


def check_sysctls(sysctls: dict, own_kinds) -> None:
    """Refuse a sysctl that would be written to the host's copy: a global one, or one whose namespace the
    container does not have of its own."""
    for key in sysctls:
        if "/" in key or ".." in key or not key:
            raise LabError(f"sysctl {key!r} is not a sysctl name", "names are dotted, like net.ipv4.ip_forward",
                           "fix the name")
        kind = sysctl_namespace(key)
        if kind is None:
            raise LabError(f"sysctl {key} is not namespaced", "writing it from a container would change the host",
                           "drop it from the config, or set it on the host itself")
        if kind not in own_kinds:
            raise LabError(f"sysctl {key} needs the container's own {kind} namespace", "in the host's it would "
                           "change the host's setting", f"add the {kind} namespace, or drop the sysctl")


def set_sysctls(sysctls: dict) -> None:
    """Write each one under /proc/sys: the copy of the namespace this process is in, so PID 1 writes them after
    it has unshared (or joined) the namespaces that hold them."""
    for key, value in sysctls.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))
