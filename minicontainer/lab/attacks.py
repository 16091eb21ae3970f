"""Attacks from inside a container, each with the one defence that stops it.

Every attack runs as the container's own payload (payloads/attacks.c, static), after every
default start-up step, never from host-side Python. `run_attack(a)` runs it with the defaults;
`run_attack(a, defended=False)` switches off only a.defence. Attacks whose undefended form
would harm the host run a harmless form instead (signal 0, writing back the value already
there, opening without writing) and say so.

Each outcome is one of three verdicts:
- "ESCAPED": it reached something of the host's (a file, a process, a device, an fd, a service,
  a machine-wide setting or keyring);
- "allowed": the kernel let it through, but what it made or changed is the container's own (a
  mount in its own namespace, a user namespace, an io_uring, forks, memory): not an escape, but
  the room a kernel exploit needs, or a resource the host shares;
- "contained": the kernel refused it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .. import kernel, namespaces, rootfs
from ..container import Container, run
from ..doctor import read_if_there
from ..errors import LabError
from ..security import DEFAULT_CAPABILITIES, Security
from ..spec import ContainerSpec
from . import payloads

ALL_KINDS = ("mnt", "uts", "ipc", "pid", "net", "cgroup")


@dataclass
class Attack:
    name: str
    what: str                      # the attack, in a few words
    defence: str                   # the one defence that stops it
    args: list[str]                # payload arguments ({marker}, {pid}... filled in at run time)
    undefended: dict               # ContainerSpec changes that switch off only that defence
    spec: dict = field(default_factory=dict)   # spec fields the attack needs either way (limits...)
    also: str = ""                 # what else would still block it, if anything
    also_off: dict = field(default_factory=dict)  # spec changes that switch that off too (it then gets through)
    harmless_form: str = ""        # why the undefended run is a harmless variant
    host_defence: Callable[[], str] | None = None  # what on this host blocks it anyway ("" if nothing)

    def blocked_by_host(self) -> str:
        return self.host_defence() if self.host_defence else ""


def _caps_plus(*names: str, **security) -> Security:
    return Security(capabilities=DEFAULT_CAPABILITIES + list(names), **security)


def host_block_device() -> tuple[int, int] | None:
    """A block device this host's root may open: the disk holding the image first, then any other.
    (Some hosts, sandboxes among them, refuse even their own root some of their disks.)"""
    image = os.stat(rootfs.DEFAULT_ROOTFS if os.path.isdir(rootfs.DEFAULT_ROOTFS) else "/").st_dev
    numbers = [(os.major(image), os.minor(image))] if os.major(image) else []
    for name in sorted(os.listdir("/sys/block")) if os.path.isdir("/sys/block") else []:
        major, _, minor = (read_if_there(f"/sys/block/{name}/dev") or "0:0").partition(":")
        numbers.append((int(major), int(minor)))
    for major, minor in numbers:
        uevent = read_if_there(f"/sys/dev/block/{major}:{minor}/uevent") or ""
        name = next((line[8:] for line in uevent.splitlines() if line.startswith("DEVNAME=")), "")
        try:
            os.close(os.open(f"/dev/{name}", os.O_RDONLY | os.O_NONBLOCK))
            return major, minor
        except OSError:
            continue
    return None


def _no_openable_disk() -> str:
    return "" if host_block_device() else "this host lets not even its own root open one of its block devices"


def _no_user_namespaces(proc_sys: str = "/proc/sys") -> str:
    """What on this host refuses a user namespace to the container's root, which lacks CAP_SYS_ADMIN in
    the host's user namespace: the last two settings spare only callers that have it."""
    if read_if_there(f"{proc_sys}/user/max_user_namespaces") == "0":
        return "user.max_user_namespaces=0 on this host"
    if read_if_there(f"{proc_sys}/kernel/unprivileged_userns_clone") == "0":  # Debian's kernel adds it
        return "kernel.unprivileged_userns_clone=0 on this host"
    if read_if_there(f"{proc_sys}/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return "AppArmor's restriction of user namespaces on this host"
    return ""


def _no_legacy_tiocsti() -> str:
    return "dev.tty.legacy_tiocsti=0 on this host" if read_if_there("/proc/sys/dev/tty/legacy_tiocsti") == "0" else ""


def _no_io_uring() -> str:
    disabled = read_if_there("/proc/sys/kernel/io_uring_disabled")
    return f"kernel.io_uring_disabled={disabled} on this host" if disabled not in (None, "0") else ""


def _payload_not_on_ext4() -> str:
    path = payloads.CACHE if os.path.isdir(payloads.CACHE) else "/"
    return "" if _fs_magic(path) == 0xEF53 else "the payload's filesystem is not ext4, whose handles it forges"


def _fs_magic(path: str) -> int:
    """statfs(2)'s f_type (os.statvfs lacks it): the filesystem's magic number."""
    buf = ctypes.create_string_buffer(120)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(os.fsencode(path), buf) != 0:
        return 0
    return int.from_bytes(buf.raw[:8], "little")  # struct statfs starts with f_type (a long)


ATTACKS = [
    Attack("chroot-escape", "double-chroot escape to the host's /", "pivot_root (old root detached)",
           ["chroot-escape", "{marker}"], {"root_switch": "chroot"}),
    Attack("write-sysctl", "open /proc/sys/kernel/core_pattern for writing", "/proc/sys read-only",
           ["write-sysctl"], {"security": Security(masked_paths=False)},
           harmless_form="opened, never written: core_pattern is global to the machine"),
    Attack("read-timer-list", "read /proc/timer_list (the host's timers and task names)", "masked /proc paths",
           ["read-proc", "/proc/timer_list"], {"security": Security(masked_paths=False)}),
    Attack("mknod-disk", "mknod a node for a host block device, then open it (CAP_MKNOD is kept)",
           "device cgroup", ["mknod-disk", "{disk_major}", "{disk_minor}"], {"security": Security(devices=False)},
           harmless_form="opened read-only, nothing read", host_defence=_no_openable_disk),
    Attack("mount", "mount a filesystem (the first step to mounting the host's disk)", "no CAP_SYS_ADMIN",
           ["mount"], {"security": _caps_plus("sys_admin")}),
    Attack("release-agent", "mount cgroup v1 and open release_agent for writing", "no CAP_SYS_ADMIN",
           ["release-agent", "net_cls"], {"security": _caps_plus("sys_admin")},
           also="the cgroup namespace (from inside one the kernel makes no new v1 hierarchy)",
           also_off={"namespaces": tuple(k for k in ALL_KINDS if k != "cgroup")},
           harmless_form="opened, never written"),
    Attack("signal-host-pid", "see and signal a host process", "PID namespace",
           ["signal-host-pid", "{host_pid}"], {"namespaces": tuple(k for k in ALL_KINDS if k != "pid")},
           harmless_form="signal 0: checks only"),
    Attack("kill-all", "kill -9 -1 (every process it can see)", "PID namespace", ["kill-all", "9"],
           {"namespaces": tuple(k for k in ALL_KINDS if k != "pid"), "args": ["kill-all", "0"]},
           harmless_form="without the PID namespace it would kill every process on the host: signal 0 instead"),
    Attack("inherited-fd", "read a host file through an fd the runtime passed down", "only fds 0-2 inherited",
           ["inherited-fd", "{secret_fd}"], {"security": Security(close_fds=False)}),
    Attack("runtime-exe", "open the host's binary through /proc/PID/exe of the runtime's process while `exec` "
           "enters", "non-dumpable runtime", ["runtime-exe"], {"security": Security(non_dumpable=False)},
           harmless_form="its ELF header is read; runc's CVE-2019-5736 then overwrote the binary, never done here"),
    Attack("fork-bomb", "fork 64 processes under a limit of 32", "pids limit", ["fork-many", "64"],
           {"pids": None}, spec={"pids": 32}),
    Attack("memory-4x", "allocate 4x the memory limit", "memory limit", ["allocate", str(4 * 64 << 20)],
           {"memory": None}, spec={"memory": "64M"}),
    Attack("fill-shm", "write 128 MiB into /dev/shm", "size-limited tmpfs",
           ["fill", "/dev/shm/fill", str(128 << 20)], {"security": Security(tmpfs_size=None)},
           spec={"memory": "512M"}),
    Attack("host-loopback", "connect to a service on the host's 127.0.0.1", "network namespace",
           ["connect-loopback", "{port}"], {"namespaces": tuple(k for k in ALL_KINDS if k != "net")}),
    Attack("hostname", "set the hostname the host has", "UTS namespace", ["hostname"],
           {"namespaces": tuple(k for k in ALL_KINDS if k != "uts"), "hostname": None},
           also="no CAP_SYS_ADMIN (sethostname needs it)", also_off={"security": _caps_plus("sys_admin")},
           harmless_form="writes back the hostname already there"),
    Attack("sysv-queue", "make a SysV message queue the host sees", "IPC namespace", ["sysv-queue"],
           {"namespaces": tuple(k for k in ALL_KINDS if k != "ipc")},
           harmless_form="the queue is removed at once"),
    Attack("setuid", "run a setuid-root program as an unprivileged user", "no_new_privs",
           ["/attacks-setuid", "euid"], {"security": Security(no_new_privs=False)}, spec={"user": "1000:1000"}),
    Attack("keyctl", "reach uid 0's keyring (only a user namespace separates keyrings)", "seccomp", ["keyctl"],
           {"security": Security(seccomp=False)}),
    Attack("userns-mount", "unshare a user namespace to regain every capability, then mount",
           "seccomp: no new namespaces", ["userns-mount"], {"security": Security(new_namespaces=True)},
           host_defence=_no_user_namespaces),
    Attack("clone3-userns", "the same through clone3, whose flags a filter cannot read",
           "seccomp: clone3 -> ENOSYS", ["clone3-userns-mount"], {"security": Security(new_namespaces=True)},
           host_defence=_no_user_namespaces),
    Attack("tiocsti-high-bits", "TIOCSTI | 1 << 32: push a byte into a terminal's input",
           "seccomp (32-bit mask)", ["tiocsti-high-bits"], {"security": Security(seccomp=False)},
           host_defence=_no_legacy_tiocsti),
    Attack("io-uring", "io_uring_setup, a call a deny-list did not foresee", "seccomp allow-list",
           ["io-uring"], {"security": Security(seccomp="denylist")}, host_defence=_no_io_uring),
    Attack("open-by-handle", "open_by_handle_at the host filesystem's root, with CAP_DAC_READ_SEARCH",
           "seccomp", ["open-by-handle", "/attacks"], {"security": _caps_plus("dac_read_search", seccomp=False)},
           spec={"security": _caps_plus("dac_read_search")}, host_defence=_payload_not_on_ext4),
]
BY_NAME = {a.name: a for a in ATTACKS}


@dataclass
class Outcome:
    attack: Attack
    defended: bool
    verdict: str        # "ESCAPED", "allowed" or "contained"; "not run" (rootless only: run_rootless says why)
    evidence: str

    @property
    def escaped(self) -> bool:
        return self.verdict == "ESCAPED"

    @property
    def got_through(self) -> bool:
        return self.verdict != "contained"


@contextlib.contextmanager
def host_fixtures():
    """What some attacks aim at on the host: a host-only file, a secret fd, a loopback service.
    Nothing here outlives the process, even if it is killed: the marker is this very file, the
    secret an unlinked temporary file, the service a socket."""
    secret = tempfile.TemporaryFile()
    secret.write(b"host secret\n")
    secret.flush()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield {"marker": os.path.abspath(__file__), "secret": secret, "server": server,
               "port": server.getsockname()[1]}
    finally:
        server.close()
        secret.close()


def run_attack(attack: Attack, defended: bool = True, fixtures: dict | None = None, **fields) -> Outcome:
    """Run one attack in a container with every default defence, or with only its own switched off.
    `fields` are ContainerSpec fields set on top, e.g. security=Security(seccomp=None): a lesson
    switches a defence off by hand this way, to see the check that relies on it fail."""
    unknown = sorted(set(fields) - set(ContainerSpec.__dataclass_fields__))
    if unknown:
        raise LabError(f"run_attack: no ContainerSpec field {', '.join(unknown)}", "the keyword arguments "
                       "after the attack are spec fields", "e.g. security=Security(seccomp=None) or pids=None")
    with contextlib.ExitStack() as stack:
        fx = fixtures or stack.enter_context(host_fixtures())
        disk = host_block_device() or (0, 0)
        values = {"marker": fx["marker"], "host_pid": str(os.getpid()), "port": str(fx["port"]),
                  "secret_fd": str(fx["secret"].fileno()), "disk_major": str(disk[0]), "disk_minor": str(disk[1])}
        changes = ({} if defended else dict(attack.undefended)) | fields
        args = changes.pop("args", attack.args)
        command = [a if a.startswith("/") else a.format(**values) for a in args]
        if not command[0].startswith("/"):
            command = ["/attacks"] + command
        binds = [(payloads.build("attacks"), "/attacks", True)]
        if "/attacks-setuid" in command:  # only root can make it: bound only where the command runs it
            binds.append((payloads.build_setuid("attacks"), "/attacks-setuid", True))
        spec = replace(ContainerSpec(rootfs.DEFAULT_ROOTFS, command, binds=binds, **attack.spec), **changes)
        if attack.name == "kill-all" and "pid" not in spec.namespaces:
            # In the host's PID namespace kill -9 -1 would kill every process of the host: whoever
            # switched the namespace off, and however, only signal 0 is sent.
            spec.command = ["/attacks", "kill-all", "0"]
        if attack.name == "inherited-fd":
            spec.security.keep_fds = []  # asked for nothing: the default must close it
            return _judge(attack, defended, _run_passing_fd(spec, fx["secret"].fileno()))
        if attack.name == "runtime-exe":
            return _judge(attack, defended, _run_during_execs(spec))
        result = run(spec, timeout=60)
        return _judge(attack, defended, result.stdout + result.stderr, result.code, result.stats)


def _run_passing_fd(spec: ContainerSpec, fd: int) -> str:
    os.set_inheritable(fd, True)
    with tempfile.TemporaryFile("w+") as out:
        container = Container.start(spec, stdout=out, stderr=subprocess.STDOUT, pass_fds=(fd,))
        container.wait(60)
        out.seek(0)
        return out.read()


def _run_during_execs(spec: ContainerSpec, execs: int = 10) -> str:
    """The payload watches /proc while the host runs `minicontainer exec NAME -- true` up to `execs`
    times (or until it gets through); then SIGTERM ends its watch and it says what it saw."""
    # The container writes through this same open file, so its offset is shared: said() reads with pread,
    # which leaves the offset alone. (Seeking to read would move where the next line lands, over the start.
    # tempfile's "a+" does not help: it opens the fd itself, and Python sets no O_APPEND on a given fd.)
    with tempfile.TemporaryFile() as out, Container.start(spec, stdout=out, stderr=subprocess.STDOUT) as box:
        def said() -> str:
            size = os.fstat(out.fileno()).st_size
            return os.pread(out.fileno(), size, 0).decode(errors="replace")
        deadline = time.monotonic() + 30
        while "watching" not in said() and box.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(execs):
            if "ESCAPED" in said() or not box.running():
                break
            box.exec(["true"], timeout=30)
        box.signal(signal.SIGTERM)  # its handler ends the watch
        box.wait(30)
        return said()


def _host_keyring() -> int:
    """The id of uid 0's user keyring as the host sees it (keyctl KEYCTL_GET_KEYRING_ID, no create)."""
    number = kernel.syscall_number("keyctl")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(number, 0, -4, 0)


def _judge(attack: Attack, defended: bool, output: str, code: int = 0, stats: dict | None = None) -> Outcome:
    lines = [line for line in output.splitlines()
             if line.split(":")[0] in ("ESCAPED", "ALLOWED", "CONTAINED", "INFO")]
    line = lines[-1] if lines else output.strip()[-200:]
    ooms = (stats or {}).get("oom_kills") or 0
    if ooms or (attack.name == "memory-4x" and code == -9):
        return Outcome(attack, defended, "contained", f"killed by the OOM killer (oom_kill count {ooms})")
    if attack.name == "fork-bomb":
        forked = int(line.split()[-1]) if line.startswith("INFO") else 0
        return Outcome(attack, defended, "allowed" if forked >= 64 else "contained", f"{forked} of 64 forks succeeded")
    if attack.name in ("hostname", "sysv-queue"):
        kind = "uts" if attack.name == "hostname" else "ipc"
        shared = f"{kind}:[{namespaces.identities('self')[kind]}]" in line
        return Outcome(attack, defended, "allowed" if shared and "accepted" in line else "contained",
                       line + (f" (the host's {kind} namespace)" if shared else f" (its own {kind} namespace)"))
    if attack.name == "keyctl" and line.startswith("ESCAPED"):
        theirs, ours = line.split(", id ")[1].split()[0], _host_keyring()
        if int(theirs) != ours:
            return Outcome(attack, defended, "allowed", line + f"; not the host's (id {ours})")
        return Outcome(attack, defended, "ESCAPED", line + "; the host root's too")
    verdict = {"ESCAPED": "ESCAPED", "ALLOWED": "allowed"}.get(line.split(":")[0], "contained")
    return Outcome(attack, defended, verdict, line)


# -- rootless: the same attacks against a learner's containers (lesson 05 run without root) ------------

LIMITS_NEED_A_CGROUP = {"fork-bomb", "memory-4x"}


def why_not_rootless(attack: Attack, defended: bool) -> str:
    """Why this attack cannot run in a rootless container at all ("" where it can). A user namespace made by
    an unprivileged user maps one id, its own, as root inside; and the host's PID namespace, whose /proc a
    container without a PID namespace would mount, belongs to the host's user namespace."""
    user = attack.spec.get("user")
    if user and user.split(":")[0] != "0":  # read from the spec, so that the two cannot drift apart
        return ("a rootless container maps one id, root inside: there is no other user inside to start a "
                "setuid program as" if "setuid" in attack.args[0] else
                f"a rootless container maps one id, root inside: there is no user {user} inside to run it as")
    fields = {**attack.spec, **({} if defended else attack.undefended)}
    if "pid" not in fields.get("namespaces", ("pid",)):
        return ("without a PID namespace of its own, the container would mount the host's PID namespace's /proc, "
                "which only the host's root may: the user namespace refuses the container outright")
    return ""


def run_rootless(attack: Attack, defended: bool, fixtures: dict) -> Outcome:
    """run_attack, for a user without root (every container is rootless): what cannot run says why, as an
    Outcome "not run"; a limit where no cgroup is delegated to the user (nothing holds one) says so too."""
    from ..cgroups import delegated_to_us
    reason = why_not_rootless(attack, defended)
    if reason:
        return Outcome(attack, defended, "not run", reason)
    if defended and attack.name in LIMITS_NEED_A_CGROUP and delegated_to_us() is None:
        return Outcome(attack, defended, "not run", "no cgroup is delegated to you here, so no limit can hold a "
                       "container of yours (minicontainer doctor says so; a class host delegates one)")
    return run_attack(attack, defended=defended, fixtures=fixtures)


def table(outcomes: list[Outcome]) -> str:
    """attack | defence | with it | without it, as text."""
    rows = [f"{'attack':<18} {'defence':<32} {'with defence':<14} without"]
    by_name: dict[str, dict[bool, Outcome]] = {}
    for o in outcomes:
        by_name.setdefault(o.attack.name, {})[o.defended] = o
    for name, pair in by_name.items():
        attack = BY_NAME[name]

        def word(o):
            return "-" if o is None else o.verdict
        host = attack.blocked_by_host()
        notes = [n for n in (attack.also and f"also blocked by {attack.also}", host and f"here also {host}",
                             attack.harmless_form if False in pair else "") if n]
        rows.append(f"{name:<18} {attack.defence:<32} {word(pair.get(True)):<14} {word(pair.get(False))}"
                    + (f"  ({'; '.join(notes)})" if notes else ""))
    return "\n".join(rows)
