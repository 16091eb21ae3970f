"""seccomp: which system calls a container may make, and with which arguments.

A seccomp filter is a small program the kernel runs on every system call of the process and
its children, forever. libseccomp compiles ours from the rules below (we never hand-write
that BPF). Two filters are stacked, and the kernel applies the stricter answer of the two:

1. **Which calls exist.** The default profile is an allow-list: the groups in ALLOWED, each
   with the reason an ordinary program (busybox, Python, a Debian userland) needs it. Any call
   not listed fails with ENOSYS, the kernel's own answer for a call it does not have, so a
   program that probes a new call (glibc does for clone3, faccessat2, close_range...) falls
   back to an older one instead of failing. The calls in DENIED exist and are known to be
   dangerous in a container: they fail with EPERM, "you may not". The deny-list profile
   (DENIED) allows everything else, which is how a deny-list misses calls nobody foresaw:
   io_uring_setup, say.
2. **Which arguments are refused** (both profiles): the TIOCSTI and TIOCLINUX ioctls, and,
   unless the container keeps CAP_SYS_ADMIN, making or entering namespaces and mounting.
   A root process that makes a new user namespace holds every capability in it: the bounding
   set limits capabilities in the host's user namespace, not in a new one. clone3 passes its
   flags in memory, where a filter cannot read them, so it fails with ENOSYS and libc falls
   back to clone, whose flags the filter reads.

ioctl's request is compared through a 0xffffffff mask, because the kernel reads it as a 32-bit
unsigned int: comparing all 64 bits would let `TIOCSTI | 1 << 32` pass the rule while the
kernel still sees TIOCSTI. The namespace rules test one flag bit each, so high bits cannot hide one.

On x86_64 and aarch64, clone's flags are its first argument (s390 swaps the first two).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
from dataclasses import dataclass

from . import kernel
from .errors import LabError

PROFILES = ("allowlist", "denylist")

# The allow-list, by what an ordinary program does. Names this architecture lacks are skipped.
ALLOWED: dict[str, tuple[str, list[str]]] = {
    "processes": ("start, run and end programs and threads; wait for them; signal them (clone's "
                  "namespace flags are refused separately)",
                  ["fork", "vfork", "clone", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
                   "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
                   "getsid", "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
                   "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "sched_yield",
                   "prctl", "arch_prctl", "personality", "restart_syscall", "pidfd_open", "pidfd_send_signal",
                   "pidfd_getfd", "seccomp", "landlock_create_ruleset", "landlock_add_rule",
                   "landlock_restrict_self"]),
    "memory": ("allocate, map and protect memory, map files, share memory between threads, place the "
               "process's own memory on NUMA nodes (procps's ps does)",
               ["brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock", "mlock2",
                "munlock", "mlockall", "munlockall", "membarrier", "memfd_create", "pkey_alloc", "pkey_free",
                "pkey_mprotect", "get_mempolicy", "set_mempolicy", "mbind", "map_shadow_stack", "mseal"]),
    "file contents": ("open, read, write, seek, size and sync files; copy between fds",
                      ["open", "openat", "openat2", "creat", "close", "close_range", "read", "write", "pread64",
                       "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2", "lseek",
                       "truncate", "ftruncate", "fallocate", "fsync", "fdatasync", "sync", "syncfs",
                       "sync_file_range", "fadvise64", "readahead", "sendfile", "copy_file_range", "splice",
                       "tee", "vmsplice", "cachestat"]),
    "file names and metadata": ("stat, list, create, rename, link and remove files; owners, modes, times, "
                                "extended attributes; the working directory and chroot",
                                ["stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access",
                                 "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
                                 "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
                                 "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat", "chmod",
                                 "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
                                 "utime", "utimes", "utimensat", "futimesat", "umask", "chdir", "fchdir",
                                 "getcwd", "chroot", "getxattr", "lgetxattr", "fgetxattr", "setxattr",
                                 "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr",
                                 "removexattr", "lremovexattr", "fremovexattr", "getxattrat", "setxattrat",
                                 "listxattrat", "removexattrat"]),
    "file descriptors": ("duplicate fds, pipes, locks, fd flags, and device control (ioctl; TIOCSTI and "
                         "TIOCLINUX are refused separately)",
                         ["dup", "dup2", "dup3", "pipe", "pipe2", "fcntl", "flock", "ioctl"]),
    "waiting for events": ("poll and epoll, eventfd, signalfd, timerfd, inotify, Linux AIO (databases use it)",
                           ["select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1", "epoll_ctl",
                            "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd",
                            "signalfd4", "timerfd_create", "timerfd_settime", "timerfd_gettime", "inotify_init",
                            "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "io_setup", "io_destroy",
                            "io_submit", "io_cancel", "io_getevents", "io_pgetevents"]),
    "signals": ("handle, block, wait for and return from signals",
                ["rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
                 "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause", "alarm"]),
    "time": ("read clocks, sleep, the process's own timers (setting the clock is refused: it is the "
             "machine's)",
             ["clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time", "times",
              "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
              "timer_delete"]),
    "users and capabilities": ("read and change the process's uids, gids, groups and capabilities (the "
                               "kernel checks CAP_SETUID and friends)",
                               ["getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
                                "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
                                "setgroups", "setfsuid", "setfsgid", "capget", "capset"]),
    "limits and scheduling": ("resource limits and usage, priorities, CPU affinity, I/O priority",
                              ["getrlimit", "setrlimit", "prlimit64", "getrusage", "getpriority", "setpriority",
                               "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
                               "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
                               "sched_get_priority_min", "sched_rr_get_interval", "sched_getattr",
                               "sched_setattr", "ioprio_get", "ioprio_set", "getcpu"]),
    "system information": ("uname, sysinfo, random bytes; the hostname of the container's own UTS namespace",
                           ["uname", "sysinfo", "getrandom", "sethostname", "setdomainname"]),
    "sockets": ("network and Unix sockets (the network namespace decides what they reach)",
                ["socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
                 "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
                 "setsockopt", "getsockopt"]),
    "IPC": ("System V message queues, semaphores and shared memory, POSIX message queues (the IPC "
            "namespace keeps them the container's own)",
            ["msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl", "shmget", "shmat",
             "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
             "mq_getsetattr"]),
    "debugging": ("strace and gdb inside the container: ptrace reaches only processes of the container's "
                  "PID namespace that the tracer's uid owns (no CAP_SYS_PTRACE by default)",
                  ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"]),
    "namespaces and mounts": ("containers that build containers: new namespaces, entering them, mounting "
                              "(refused by the second filter unless the container keeps CAP_SYS_ADMIN)",
                              ["unshare", "setns", "clone3", "mount", "umount2", "pivot_root", "fsopen",
                               "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr"]),
}

# Calls that exist but a container may not make: EPERM in both profiles. Kernel keyrings and
# BPF are not namespaced; modules and kexec change the kernel; open_by_handle_at opens any
# inode of a filesystem by number (the "shocker" escape); perf and userfaultfd are exploit
# tools; the clock, swap, reboot and accounting belong to the machine.
DENIED = ["keyctl", "add_key", "request_key", "bpf", "kexec_load", "kexec_file_load", "init_module",
          "finit_module", "delete_module", "open_by_handle_at", "perf_event_open", "userfaultfd",
          "clock_settime", "clock_adjtime", "settimeofday", "adjtimex", "swapon", "swapoff", "reboot", "acct",
          "lookup_dcookie", "uselib"]

# Entering namespaces and mounting: refused unless the container keeps CAP_SYS_ADMIN (unshare,
# clone and clone3 are refused by their flags, below).
MOUNT_CALLS = [c for c in ALLOWED["namespaces and mounts"][1] if c not in ("unshare", "clone3")]
NEW_NAMESPACE_FLAGS = {"CLONE_NEWNS": kernel.CLONE_NEWNS, "CLONE_NEWUTS": kernel.CLONE_NEWUTS,
                       "CLONE_NEWIPC": kernel.CLONE_NEWIPC, "CLONE_NEWUSER": kernel.CLONE_NEWUSER,
                       "CLONE_NEWPID": kernel.CLONE_NEWPID, "CLONE_NEWNET": kernel.CLONE_NEWNET,
                       "CLONE_NEWCGROUP": kernel.CLONE_NEWCGROUP, "CLONE_NEWTIME": kernel.CLONE_NEWTIME}

TIOCSTI = 0x5412    # push a byte into a terminal's input: type commands into the shell that owns it
TIOCLINUX = 0x541C  # the Linux console's subcommands, among them pasting its selection as input
INT_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class Rule:
    """One rule: `call` gets `errno` when `argument & mask == value` (or always, if argument is None)."""
    call: str
    errno: int
    argument: int | None = None
    mask: int = INT_MASK
    value: int = 0
    why: str = ""


def argument_rules(refuse_namespaces: bool) -> list[Rule]:
    """The second filter: ioctls that reach past the container, and, unless CAP_SYS_ADMIN is kept,
    namespaces and mounts."""
    rules = [Rule("ioctl", errno.EPERM, 1, INT_MASK, TIOCSTI, "TIOCSTI"),
             Rule("ioctl", errno.EPERM, 1, INT_MASK, TIOCLINUX, "TIOCLINUX")]
    if refuse_namespaces:
        for name, flag in NEW_NAMESPACE_FLAGS.items():
            rules.append(Rule("unshare", errno.EPERM, 0, flag, flag, name))
            if flag != kernel.CLONE_NEWTIME:  # in clone's flags that bit is part of the exit signal
                rules.append(Rule("clone", errno.EPERM, 0, flag, flag, name))
        rules.append(Rule("clone3", errno.ENOSYS, why="its flags are in memory, out of the filter's sight"))
        rules += [Rule(call, errno.EPERM, why="mounts and namespaces") for call in MOUNT_CALLS]
    return rules


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise LabError(f"seccomp profile {profile!r} is unknown", "the profiles are an allow-list and a deny-list",
                       f"use seccomp={PROFILES[0]!r} (the default), {PROFILES[1]!r}, or None (off)")


def allowed_calls() -> list[str]:
    return [call for _, calls in ALLOWED.values() for call in calls]


def check_names(names) -> None:
    """A clear error for a name libseccomp does not know, or one the namespace rules refuse anyway."""
    lib = libseccomp()
    unknown = [n for n in names if lib.resolve(n) == lib.NR_ERROR]
    if unknown:
        raise LabError(f"unknown system call(s): {', '.join(unknown)}", "libseccomp knows no call of that name",
                       "names are as in syscalls(2), without the sys_ prefix, e.g. io_uring_setup")
    by_rule = sorted({n for n in names if n in MOUNT_CALLS + ["unshare", "clone", "clone3"]})
    if by_rule:
        raise LabError(f"{', '.join(by_rule)}: refused by the namespace rule, not by the allow-list",
                       "making namespaces and mounting are refused unless the container keeps CAP_SYS_ADMIN",
                       "keep CAP_SYS_ADMIN (--cap-add sys_admin), or Security(new_namespaces=True)")


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: which argument, how to compare, and the two data words."""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class LibSeccomp:
    """The libseccomp calls used: make a filter, add rules, load it into the kernel, free it."""
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000       # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(0)
    CMP_MASKED_EQ = 7                           # SCMP_CMP_MASKED_EQ: (arg & datum_a) == datum_b
    FLTATR_CTL_NNP = 3                          # SCMP_FLTATR_CTL_NNP
    NR_ERROR = -1                               # __NR_SCMP_ERROR

    def __init__(self):
        try:  # by its usual name first: ctypes.util.find_library runs ldconfig, which costs a helper ~25 ms
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError:
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so", use_errno=True)
            except OSError:
                raise LabError("libseccomp is not installed", "the seccomp filter is compiled by libseccomp",
                               "apt-get install libseccomp2, or switch seccomp off in the spec") from None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.c_void_p]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.lib = lib

    def resolve(self, name: str) -> int:
        """The call's number on this architecture; negative if it has none here."""
        return self.lib.seccomp_syscall_resolve_name(name.encode())

    def build(self, default_errno: int | None, rules: list[tuple[int, Rule]]):
        """A filter context: default action ERRNO(default_errno), or ALLOW if None; then the rules,
        each (action, rule). The caller loads or exports it, then releases it."""
        ctx = self.lib.seccomp_init(self.ALLOW if default_errno is None else self.ERRNO | default_errno)
        if not ctx:
            raise LabError("seccomp_init failed", "libseccomp could not make a filter", "report it")
        # libseccomp would set no_new_privs itself: that is a defence of its own, switched separately.
        self.lib.seccomp_attr_set(ctx, self.FLTATR_CTL_NNP, 0)
        for action, rule in rules:
            number = self.resolve(rule.call)
            if number < 0:
                continue  # not a system call on this architecture
            if rule.argument is None:
                added = self.lib.seccomp_rule_add_array(ctx, action, number, 0, None)
            else:
                compare = _ArgCmp(rule.argument, self.CMP_MASKED_EQ, rule.mask, rule.value)
                added = self.lib.seccomp_rule_add_array(ctx, action, number, 1, ctypes.byref(compare))
            if added != 0:
                self.lib.seccomp_release(ctx)
                raise LabError(f"seccomp_rule_add({rule.call}) failed: {errno.errorcode.get(-added, added)}",
                               "libseccomp rejected the rule", "report it")
        return ctx

    def export(self, ctx) -> bytes:
        """The filter as the BPF program the kernel runs (struct sock_filter[]), and the context released."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            if self.lib.seccomp_export_bpf(ctx, fd) != 0:
                raise LabError("seccomp_export_bpf failed", "libseccomp could not compile the filter", "report it")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
            self.lib.seccomp_release(ctx)

    def load(self, ctx) -> None:
        try:
            if self.lib.seccomp_load(ctx) != 0:
                raise LabError("loading the seccomp filter failed",
                               "the kernel refused it (no CONFIG_SECCOMP_FILTER, or neither CAP_SYS_ADMIN nor "
                               "no_new_privs)", "switch seccomp off in the spec, or use a kernel with seccomp")
        finally:
            self.lib.seccomp_release(ctx)


@functools.lru_cache(maxsize=1)
def libseccomp() -> LibSeccomp:
    """Loaded once, before the root is switched: after pivot_root the host's library is out of reach."""
    return LibSeccomp()


def filters(profile: str, refuse_namespaces: bool, also_allowed: list[str] = ()) -> list[tuple]:
    """The two filters as (default errno or None for allow, [(action, rule)]), in loading order.
    also_allowed: calls added to the allow-list, and taken off the refused ones, in either profile."""
    check_profile(profile)
    lib = libseccomp()
    denied = [(lib.ERRNO | errno.EPERM, Rule(c, errno.EPERM)) for c in DENIED if c not in also_allowed]
    if profile == "allowlist":
        first = (errno.ENOSYS, [(lib.ALLOW, Rule(c, 0)) for c in allowed_calls() + list(also_allowed)] + denied)
    else:
        first = (None, denied)
    second = (None, [(lib.ERRNO | r.errno, r) for r in argument_rules(refuse_namespaces)])
    return [first, second]


@functools.lru_cache(maxsize=16)
def compiled(profile: str, refuse_namespaces: bool, also_allowed: tuple[str, ...] = ()) -> tuple[bytes, ...]:
    """Both filters as BPF programs, compiled by libseccomp once per distinct policy in this process, and so
    in each fork made after it: a helper compiles its container's before it forks PID 1, and the caller's
    shared helper the lab's default before it forks any helper (compiling is most of the step's time)."""
    lib = libseccomp()
    return tuple(lib.export(lib.build(default, rules)) for default, rules in
                 filters(profile, refuse_namespaces, list(also_allowed)))


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the number of instructions, and where they are."""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
BPF_INSTRUCTION = 8  # bytes in one struct sock_filter


def load_program(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog): the kernel checks the program and attaches it to
    this thread. Needs no_new_privs or CAP_SYS_ADMIN, which PID 1 still has at this step."""
    instructions = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // BPF_INSTRUCTION, ctypes.addressof(instructions))
    if kernel.libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        error = ctypes.get_errno()
        raise LabError(f"loading the seccomp filter failed: {os.strerror(error)}",
                       "the kernel refused it (no CONFIG_SECCOMP_FILTER, or neither CAP_SYS_ADMIN nor no_new_privs)",
                       "switch seccomp off in the spec, or use a kernel with seccomp")


def load(profile: str = "allowlist", refuse_namespaces: bool = True, also_allowed: list[str] = ()) -> None:
    """Load both filters into this process (and so into everything it will exec or fork)."""
    for program in compiled(profile, refuse_namespaces, tuple(also_allowed)):
        load_program(program)


# -- an OCI config's own profile (linux.seccomp), as engines send it --------------------------------

OCI_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
               "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
               "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the low 16 bits carry an errno, or a tracer's message
OCI_OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
                 "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
OCI_ARCHES = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32",
              "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_ARM": "arm"}


def oci_profile_problems(profile: dict) -> list[str]:
    """What in a linux.seccomp this runtime cannot compile, one entry each (empty: it can)."""
    problems = [f"linux.seccomp.{k}" for k in profile if k not in ("defaultAction", "defaultErrnoRet",
                                                                   "architectures", "syscalls")]
    actions = [profile.get("defaultAction")] + [s.get("action") for s in profile.get("syscalls", [])]
    problems += [f"seccomp action {a}" for a in sorted(set(map(str, actions))) if a not in OCI_ACTIONS]
    for call in profile.get("syscalls", []):
        problems += [f"seccomp operator {a.get('op')}" for a in call.get("args") or []
                     if a.get("op") not in OCI_OPERATORS]
    problems += [f"seccomp architecture {a}" for a in profile.get("architectures") or [] if a not in OCI_ARCHES]
    return problems


def _oci_action(name: str, errno_ret: int | None) -> int:
    code = OCI_ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        return code | (errno.EPERM if errno_ret is None else errno_ret)
    return code


def load_oci(profile: dict) -> None:
    """Compile an OCI config's profile with libseccomp and load it into this process."""
    lib = libseccomp().lib
    for name in ("seccomp_arch_add", "seccomp_arch_resolve_name"):
        getattr(lib, name).restype = ctypes.c_int
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    default = _oci_action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise LabError("seccomp_init failed", "libseccomp could not make a filter", "report it")
    try:
        lib.seccomp_attr_set(ctx, LibSeccomp.FLTATR_CTL_NNP, 0)  # no_new_privs is its own step
        for arch in profile.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(OCI_ARCHES[arch].encode())
            added = lib.seccomp_arch_add(ctx, token)
            if added not in (0, -errno.EEXIST):  # the native one is there already
                raise LabError(f"seccomp_arch_add({arch}) failed: {errno.errorcode.get(-added, added)}",
                               "libseccomp does not know this architecture", "drop it from the profile")
        added_rules = set()  # a profile may repeat a rule (Podman 5's repeats one for socket): add each once
        for call in profile.get("syscalls", []):
            action = _oci_action(call["action"], call.get("errnoRet"))
            if action == default:
                continue  # libseccomp refuses a rule that repeats the default; it changes nothing
            args = call.get("args") or []
            comparisons = [_ArgCmp(a["index"], OCI_OPERATORS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                           for a in args]
            indexes = [a["index"] for a in args]
            # Conditions on different arguments all hold together (one rule); several on the same argument
            # are alternatives (a rule each), as runc reads them.
            groups = [comparisons] if len(set(indexes)) == len(indexes) else [[c] for c in comparisons]
            for name in call.get("names", []):
                number = libseccomp().resolve(name)
                if number < 0:
                    continue  # no such call on this architecture
                for group in groups:
                    rule = (action, number, tuple((c.arg, c.op, c.datum_a, c.datum_b) for c in group))
                    if rule in added_rules:
                        continue  # libseccomp (2.6) refuses the same rule twice with EEXIST
                    added_rules.add(rule)
                    array = (_ArgCmp * len(group))(*group) if group else None
                    added = lib.seccomp_rule_add_array(ctx, action, number, len(group), array)
                    if added == -errno.EEXIST:
                        # libseccomp 2.6 says a rule exists already where an added architecture multiplexes
                        # the call (x86's socketcall for socket) and cannot tell two argument rules apart.
                        continue
                    if added != 0:
                        raise LabError(f"seccomp rule for {name} refused: {errno.errorcode.get(-added, added)}",
                                       "libseccomp rejected the profile's rule", "check the profile's args")
        if lib.seccomp_load(ctx) != 0:
            raise LabError("loading the config's seccomp filter failed", "the kernel refused it", "check the profile")
    finally:
        lib.seccomp_release(ctx)
