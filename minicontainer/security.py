"""Security: what makes root inside a container much less than root.

Each defence is one field of Security, on by default, switchable off for a lesson:

- capabilities: the bounding set is cut to a short list, so even root cannot regain the rest
  (no mount, no module loading, no raw disk access, no mknod...);
- no_new_privs: execve can never add privileges (setuid binaries and file capabilities stop working);
- masked_paths: /proc files that expose or change the host (kcore, keys, sysrq-trigger, /proc/sys)
  are hidden under /dev/null or made read-only;
- seccomp: a deny-list of system calls containers have no business making, loaded through
  libseccomp (its filter compiler, not hand-written BPF);
- close_fds: only fds 0-2 (and those asked for) survive into the container;
- tmpfs_size: /dev/shm and /tmp are size-limited tmpfs, so filling them cannot fill a host disk.

apply_process_defences() runs in the container's init (and in every `exec`) just before execve.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
from dataclasses import asdict, dataclass, field

from . import kernel
from .errors import LabError
from .inspect import CAPABILITIES

# Docker's default list, less MKNOD (no devices cgroup here to make device nodes harmless).
DEFAULT_CAPABILITIES = ["chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
                        "net_bind_service", "net_raw", "sys_chroot", "audit_write", "setfcap"]

MASKED_PATHS = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
                "/proc/timer_stats", "/proc/acpi", "/proc/scsi", "/sys/firmware"]
READ_ONLY_PATHS = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"]

# System calls a container gets EPERM for: kernel keyrings (not namespaced), BPF, kernel
# (un)loading, kexec, handle-based opens (a known escape), perf, and clock/time/swap/reboot/acct.
SECCOMP_DENY = ["keyctl", "add_key", "request_key", "bpf", "kexec_load", "kexec_file_load", "init_module",
                "finit_module", "delete_module", "open_by_handle_at", "perf_event_open", "userfaultfd",
                "clock_settime", "settimeofday", "adjtimex", "swapon", "swapoff", "reboot", "acct",
                "lookup_dcookie", "uselib"]
TIOCSTI = 0x5412  # ioctl that pushes bytes into a terminal's input: typing commands into the host's shell


@dataclass
class Security:
    capabilities: list[str] | None = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))  # None: all
    no_new_privs: bool = True
    masked_paths: bool = True
    seccomp: bool = True
    close_fds: bool = True
    keep_fds: list[int] = field(default_factory=list)
    tmpfs_size: str | None = "64m"       # /dev/shm and /tmp; None: unlimited (half of RAM) and /tmp on disk

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def off(cls) -> Security:
        """Every defence switched off (what `docker run --privileged` comes close to)."""
        return cls(capabilities=None, no_new_privs=False, masked_paths=False, seccomp=False, close_fds=False,
                   tmpfs_size=None)

    def check(self) -> None:
        unknown = [c for c in self.capabilities or [] if c.lower().removeprefix("cap_") not in CAPABILITIES]
        if unknown:
            raise LabError(f"unknown capabilities: {', '.join(unknown)}", "capabilities are named as in "
                           "capabilities(7), e.g. net_raw or CAP_NET_RAW", "see `man 7 capabilities`")


# -- mount-level defences (in the init, before pivot_root) -------------------------------------

def mask_paths(root: str) -> None:
    """Hide files under /dev/null and directories under an empty read-only tmpfs."""
    for path in MASKED_PATHS:
        target = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(target):
            kernel.mount("tmpfs", target, "tmpfs", kernel.MS_RDONLY)
        elif os.path.exists(target):
            kernel.mount(os.path.join(root, "dev/null"), target, None, kernel.MS_BIND)


def read_only_paths(root: str) -> None:
    """Bind each path onto itself, then remount the bind read-only (the two steps a bind needs)."""
    for path in READ_ONLY_PATHS:
        target = os.path.join(root, path.lstrip("/"))
        if os.path.exists(target):
            kernel.mount(target, target, None, kernel.MS_BIND | kernel.MS_REC)
            kernel.mount(None, target, None, kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY)


def mount_tmp(root: str, size: str) -> None:
    """A size-limited tmpfs on /tmp: writes there use (cgroup-charged) memory, not the host's disk."""
    target = os.path.join(root, "tmp")
    os.makedirs(target, exist_ok=True)
    kernel.mount("tmpfs", target, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV, f"mode=1777,size={size}")


# -- process-level defences (just before execve) ------------------------------------------------

def drop_capabilities(keep: list[str] | None) -> None:
    """PR_CAPBSET_DROP every capability not kept: root's next execve gets only the kept ones."""
    if keep is None:
        return
    kept = {c.lower().removeprefix("cap_") for c in keep}
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for bit, name in enumerate(CAPABILITIES[:last + 1]):
        if name not in kept:
            kernel.prctl(kernel.PR_CAPBSET_DROP, bit)
    kernel.prctl(47, 4)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL: no ambient capabilities either


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: inherited by every child, and can never be unset."""
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)


class _Seccomp:
    """The libseccomp calls used: init a filter, add rules, load it, release it."""
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000

    def __init__(self):
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            self.lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            raise LabError("libseccomp is not installed", "the seccomp filter is compiled by libseccomp",
                           "apt-get install libseccomp2, or switch seccomp off in the spec") from None
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = [ctypes.c_uint32]
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                                    ctypes.c_void_p]
        self.lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        self.lib.seccomp_release.argtypes = [ctypes.c_void_p]


@functools.lru_cache(maxsize=1)
def libseccomp() -> _Seccomp:
    """Loaded once, before the root is switched: after pivot_root the host's library is out of reach."""
    return _Seccomp()


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def load_seccomp(deny: list[str] = SECCOMP_DENY) -> None:
    """Allow everything but the deny-list, which fails with EPERM; TIOCSTI ioctls too."""
    sc = libseccomp()
    ctx = sc.lib.seccomp_init(sc.ALLOW)
    try:
        # libseccomp sets no_new_privs itself unless told not to (SCMP_FLTATR_CTL_NNP = 3): that is
        # a defence of its own, switched on or off separately.
        sc.lib.seccomp_attr_set(ctx, 3, 0)
        rules = [(name, None) for name in deny] + [("ioctl", _ArgCmp(1, 4, TIOCSTI, 0))]  # op 4: SCMP_CMP_EQ
        for name, compare in rules:
            number = sc.lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue  # not a system call on this architecture
            added = sc.lib.seccomp_rule_add_array(ctx, sc.ERRNO | errno.EPERM, number, 1 if compare else 0,
                                                  ctypes.byref(compare) if compare else None)
            if added != 0:
                raise LabError(f"seccomp_rule_add({name}) failed", "libseccomp rejected the rule", "report it")
        if sc.lib.seccomp_load(ctx) != 0:
            raise LabError("loading the seccomp filter failed", "the kernel refused it (no CONFIG_SECCOMP?)",
                           "switch seccomp off in the spec, or use a kernel with seccomp")
    finally:
        sc.lib.seccomp_release(ctx)


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


def switch_user(user: str | None) -> None:
    """Become UID[:GID] (numbers): groups dropped first, then gid, then uid (the reverse fails)."""
    if not user:
        return
    uid, _, gid = str(user).partition(":")
    os.setgroups([])
    os.setgid(int(gid or uid))
    os.setuid(int(uid))


def apply_process_defences(security: Security, user: str | None = None) -> None:
    """The last steps before execve, in the init and in every exec'd process, in this order:
    capabilities (while still root), seccomp (loading needs root or no_new_privs), user,
    no_new_privs, then fds."""
    drop_capabilities(security.capabilities)
    if security.seccomp:
        load_seccomp()
    switch_user(user)
    if security.no_new_privs:
        set_no_new_privs()
    if security.close_fds:
        close_inherited_fds(security.keep_fds)
