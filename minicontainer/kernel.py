"""The kernel interface: the few syscalls a container is made of, and their flags.

Each wrapper calls the kernel directly (os.* where this Python has it, else libc
through ctypes) and turns a failure into a LabError that names the call, its
argument and the likely cause. Nothing here decides policy; it only calls.
"""

from __future__ import annotations

import _thread
import ctypes
import ctypes.util
import errno
import os
import signal
import socket

from .errors import LabError

# Namespace flags for clone(2), unshare(2) and setns(2): <linux/sched.h>.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Capabilities by bit number: <linux/capability.h>.
CAPABILITIES = [
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
]


# Mount flags: <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Tests set this to exercise the ctypes path on a Python that has os.unshare.
FORCE_CTYPES = os.environ.get("MINICONTAINER_FORCE_CTYPES") == "1"



def _load_libc() -> ctypes.CDLL:
    """glibc by its soname first: ctypes.util.find_library runs ldconfig, which costs every helper ~10 ms."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


libc = _libc = _load_libc()
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
_libc.pthread_self.restype = ctypes.c_void_p
# The system calls glibc has no wrapper for (in the Python this runs on), by architecture: the one place their
# numbers are written. arm64 (like every architecture since) uses the kernel's generic table, x86_64 its own.
SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155, "bpf": 321, "keyctl": 250, "clone3": 435},
    "aarch64": {"pivot_root": 41, "bpf": 280, "keyctl": 219, "clone3": 435},
}
MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}.get(os.uname().machine, os.uname().machine)


def syscall_number(name: str) -> int:
    try:
        return SYSCALL_NUMBERS[MACHINE][name]
    except KeyError:
        raise LabError(f"no system call number for {name} on {MACHINE}", "the runtime knows x86_64 and arm64 "
                       "(aarch64)", "run the lab on one of them (the lab VM is either)") from None


# Why a call most often fails, by call and errno. The generic fallbacks follow.
_CAUSES = {
    ("unshare", errno.EINVAL): "the kernel lacks this namespace kind, or CLONE_NEWUSER was asked "
                               "in a multithreaded process",
    ("unshare", errno.ENOSPC): "a per-user namespace limit is reached (/proc/sys/user/max_*_namespaces), or "
                               "user or PID namespaces would nest more than 32 deep (Linux 4.9 and later)",
    ("unshare", errno.EUSERS): "user namespaces would nest more than 32 deep (Linux 3.11 to 4.8; later "
                               "kernels say ENOSPC)",
    ("setns", errno.EINVAL): "the file is not a namespace of that kind, or a multithreaded process "
                             "tried to enter a user or mount namespace",
    ("pivot_root", errno.EINVAL): "new_root is not a mount point, put_old is not below new_root, "
                                  "or a mount involved has shared propagation (make / rprivate first)",
    ("pivot_root", errno.EBUSY): "new_root is not a mount point of its own (it lies on the current root's "
                                 "mount; bind-mount it onto itself first), or it is the current root",
    ("mount", errno.ENODEV): "the kernel does not support this filesystem type (modprobe it?)",
    ("mount", errno.ENOENT): "the mount point or source does not exist",
    ("mount", errno.EINVAL): "bad flags or options, or the source is not a mount for a remount/propagation change",
    ("mount", errno.EBUSY): "the source is already mounted or the target is busy",
    ("umount2", errno.EINVAL): "the target is not a mount point",
    ("umount2", errno.EBUSY): "the mount is still in use (try MNT_DETACH)",
}
_GENERIC = {
    errno.EPERM: "not permitted: run as root (CAP_SYS_ADMIN in the owning user namespace is needed)",
    errno.EACCES: "access denied: run as root, or the path is not accessible",
    errno.ENOENT: "a path involved does not exist",
    errno.ENOSYS: "the kernel does not have this system call",
}
_FIXES = {
    errno.EPERM: "run the lab as root (sudo), or inside the lab VM",
    errno.ENODEV: "load the module (e.g. modprobe overlay) or use a kernel that has it",
    errno.ENOSYS: "use a newer kernel (the lab VM has one)",
}


def syscall_error(call: str, arg: str, err: int, fix: str = "") -> LabError:
    """Build the LabError for a failed kernel call: name, argument, errno, cause, fix."""
    cause = _CAUSES.get((call, err)) or _GENERIC.get(err) or "see the call's man page"
    return LabError(f"{call}({arg}) failed: {errno.errorcode.get(err, err)} ({os.strerror(err)})",
                    cause, fix or _FIXES.get(err, f"man 2 {call}"))


def _check(ret: int, call: str, arg: str) -> None:
    if ret < 0:
        raise syscall_error(call, arg, ctypes.get_errno())


def _b(value):
    return None if value is None else os.fsencode(value)


def flag_names(flags: int) -> str:
    names = [n for n in ("CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWPID", "CLONE_NEWNET",
                         "CLONE_NEWUSER", "CLONE_NEWCGROUP", "CLONE_NEWTIME") if flags & globals()[n]]
    return "|".join(names) or "0"


def implementation() -> str:
    """Which path unshare/setns take in this process: "os" (Python 3.12+) or "ctypes"."""
    return "os" if hasattr(os, "unshare") and not FORCE_CTYPES else "ctypes"


def unshare(flags: int) -> None:
    """unshare(2): move this process into new namespaces (PID and time: its children only)."""
    if implementation() == "os":
        try:
            os.unshare(flags)
        except OSError as e:
            raise syscall_error("unshare", flag_names(flags), e.errno) from None
        return
    _check(_libc.unshare(flags), "unshare", flag_names(flags))


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): enter the namespace that fd (an open /proc/PID/ns/KIND) refers to."""
    if implementation() == "os":
        try:
            os.setns(fd, nstype)
        except OSError as e:
            raise syscall_error("setns", flag_names(nstype), e.errno) from None
        return
    _check(_libc.setns(fd, nstype), "setns", flag_names(nstype))


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, "mount", f"{source!r}, {target!r}, {fstype!r}, flags={flags:#x}, {data!r}")


# The flags of a mount that a less privileged mount namespace may not drop ("locked" when the mount came from
# the parent's namespace): statvfs's bit for each, and mount's.
LOCKED_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))


def remount_bind(target: str, flags: int) -> None:
    """mount -o remount,bind,FLAGS: the only way a bind mount takes flags (ro, nosuid...). Those the mount has
    already and may not lose are kept: in a user namespace the kernel refuses (EPERM) a remount that would drop
    the nosuid, nodev, noexec or atime setting of a mount the host made (runc keeps them too)."""
    present = os.statvfs(target).f_flag
    flags |= sum(ms for st, ms in LOCKED_FLAGS if present & st)
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2); MNT_DETACH lazily detaches a mount still in use."""
    _check(_libc.umount2(_b(target), flags), "umount2", f"{target!r}, {flags}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make new_root the root of this mount namespace, the old root moved to put_old.

    Rules the kernel enforces: new_root must be a mount point; put_old must be at or
    below new_root; neither the new nor the old root may have shared propagation.
    """
    ret = _libc.syscall(syscall_number("pivot_root"), _b(new_root), _b(put_old))
    _check(ret, "pivot_root", f"{new_root!r}, {put_old!r}")


def sethostname(name: str) -> None:
    """sethostname(2): changes the hostname of the calling process's UTS namespace."""
    try:
        socket.sethostname(name)
    except OSError as e:
        raise syscall_error("sethostname", repr(name), e.errno) from None


# Interface flags and their ioctls: <linux/if.h>, <linux/sockios.h>.
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914


def set_link_up(name: str) -> None:
    """ioctl(SIOCSIFFLAGS) with IFF_UP added: `ip link set NAME up` for the calling process's network
    namespace, through any socket of that namespace (netlink is the newer way to the same flag)."""
    import fcntl
    import struct
    request = struct.pack("16sh", name.encode(), 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", name.encode(), flags | IFF_UP))
    except OSError as e:
        raise syscall_error("ioctl SIOCSIFFLAGS", repr(name), e.errno) from None


def capset(header, data) -> int:
    """capset(2) (glibc has no wrapper that takes all three sets): 0, or -1 with errno set."""
    return _libc.capset(ctypes.byref(header), data)


def prctl(option: int, arg2: int = 0) -> None:
    """prctl(2) with one argument (PDEATHSIG, DUMPABLE, NO_NEW_PRIVS, CHILD_SUBREAPER, CAPBSET_DROP, CAP_AMBIENT)."""
    _check(_libc.prctl(option, arg2, 0, 0, 0), "prctl", f"{option}, {arg2}")


def is_dumpable() -> bool:
    """prctl(PR_GET_DUMPABLE): does this process own its /proc files (1), or does root (0)?"""
    return _libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


PR_SET_NAME = 15


def set_process_name(name: str) -> None:
    """prctl(PR_SET_NAME): the name ps and /proc/PID/comm show (15 bytes at most)."""
    buffer = ctypes.create_string_buffer(name.encode()[:15])
    _check(_libc.prctl(PR_SET_NAME, ctypes.addressof(buffer), 0, 0, 0), "prctl", f"PR_SET_NAME, {name!r}")


def mknod(path: str, mode: int, major: int, minor: int) -> None:
    """mknod(2) for a device node (root only; refused inside a user namespace)."""
    try:
        os.mknod(path, mode, os.makedev(major, minor))
    except OSError as e:
        raise syscall_error("mknod", repr(path), e.errno) from None


# -- clone3: a fork born into its cgroup, or as a sibling ------------------------------------------------------------
CLONE_PIDFD = 0x00001000
CLONE_PARENT = 0x00008000
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_CHILD_SETTID = 0x01000000
CLONE_INTO_CGROUP = 0x200000000


class CloneArgs(ctypes.Structure):
    """struct clone_args (linux/sched.h), every field 64 bits."""
    _fields_ = [(name, ctypes.c_uint64) for name in ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal",
                                                     "stack", "stack_size", "tls", "set_tid", "set_tid_size",
                                                     "cgroup")]


# Called with the GIL held, as os.fork calls fork(): no other Python code runs between the parent's
# PyOS_BeforeFork and the child's PyOS_AfterFork_Child.
_syscall_holding_gil = ctypes.PyDLL(None, use_errno=True).syscall
_syscall_holding_gil.restype = ctypes.c_long
_syscall_holding_gil.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t]


def _own_tid_address() -> int | None:
    """Where glibc keeps this thread's id (struct pthread's tid), from the offset it publishes for debuggers
    (_thread_db_pthread_tid: bits, count, offset); None unless it checks out against gettid()."""
    try:
        bits, _, offset = (ctypes.c_uint32 * 3).in_dll(_libc, "_thread_db_pthread_tid")
    except ValueError:
        return None  # not glibc, or a glibc that does not publish it
    address = _libc.pthread_self() + offset
    if bits != 32 or ctypes.c_int.from_address(address).value != _thread.get_native_id():
        return None
    return address


def clone_fork(*, into_cgroup: int | None = None, sibling: bool = False) -> tuple[int, int]:
    """os.fork through clone3, with what fork cannot ask for:
    - into_cgroup, an fd of a cgroup v2 directory: the child is born there (CLONE_INTO_CGROUP), with no
      write to cgroup.procs afterwards, which on v2 may wait for an RCU grace period;
    - sibling: the child's parent is our own parent (CLONE_PARENT), which reaps it and whose death its
      PR_SET_PDEATHSIG then follows, however long we live.
    Returns (pid, pidfd) in the parent, (0, -1) in the child. Only for a single-threaded process (as any fork
    that goes on running Python); raises OSError where the kernel or the C library do not allow it, so the
    caller forks as before."""
    tid_address = _own_tid_address()
    if tid_address is None:
        raise OSError(errno.ENOTSUP, "glibc does not say where it keeps the thread id")
    pidfd = ctypes.c_int(-1)
    # As glibc's fork: the kernel writes the child's own id where glibc keeps it (else the child would carry
    # ours), and clears it when the child exits.
    flags = CLONE_PIDFD | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID
    flags |= (CLONE_INTO_CGROUP if into_cgroup is not None else 0) | (CLONE_PARENT if sibling else 0)
    # A sibling's exit signal is our own's (the kernel refuses one given with CLONE_PARENT).
    args = CloneArgs(flags=flags, pidfd=ctypes.addressof(pidfd), child_tid=tid_address,
                     exit_signal=0 if sibling else signal.SIGCHLD, cgroup=into_cgroup or 0)
    # No signal handler may run in the child before Python has been told it is a new process.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _syscall_holding_gil(syscall_number("clone3"), ctypes.addressof(args), ctypes.sizeof(args))
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return 0, -1
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if pid < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return pid, pidfd.value
