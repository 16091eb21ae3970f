"""Host checks: does this machine have what the lab needs, and if not, what to do.

Each check is tried for real where that is cheap (a namespace is unshared in a
throwaway child, a cgroup is made and removed), not inferred from file names.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from . import devices, namespaces, rootfs, seccomp
from .cgroups import Cgroup, delegated_to_us, detect
from .errors import LabError
from .process import spawn


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocker: bool = True   # a failure here stops containers from starting at all


def _in_child(attempt) -> str:
    """Run attempt() in a forked child (what it changes dies with the child): "" on success, else why."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            attempt()
            message = ""
        except LabError as e:
            message = e.what
        except Exception as e:  # noqa: BLE001  the probe reports whatever went wrong
            message = f"{type(e).__name__}: {e}"
        os.write(write_end, message.encode() or b"ok")
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 4096).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    return "" if answer == "ok" else answer


def probe_namespaces() -> dict[str, str]:
    """In a fresh process: for each kind, a child that unshares it; and one that loads the seccomp filters."""
    results = {kind: _in_child(lambda kind=kind: namespaces.unshare([kind])) for kind in namespaces.KINDS}
    results["seccomp"] = _in_child(seccomp.load)
    return results


def read_if_there(path: str) -> str | None:
    """A /proc or /sys file's text, stripped; None if it is not there (an older kernel, another host)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def check_namespaces() -> list[Check]:
    out = spawn.run("minicontainer.doctor", "--probe", capture_output=True, text=True, timeout=30)
    try:
        probe = json.loads(out.stdout)
    except json.JSONDecodeError:
        return [Check("namespaces", False, "the probe failed: " + out.stderr.strip()[-200:], "run as root")]
    seccomp_error = probe.pop("seccomp", "not probed")
    checks = [Check("seccomp", not seccomp_error, seccomp_error or "the allow-list and argument filters load",
                    "apt-get install libseccomp2 and use a kernel with CONFIG_SECCOMP_FILTER (the lab VM has both)")]
    for kind, error in probe.items():
        info = namespaces.KINDS[kind]
        fix = "use a kernel with this namespace kind (the lab VM has one)"
        if kind == "user":
            fix = "check /proc/sys/user/max_user_namespaces (must be > 0)"
        elif kind == "time":
            fix = "use Linux 5.6 or later, which brought time namespaces (the lab VM has one)"
        checks.append(Check(f"{kind} namespace", not error, error or f"isolates {info.isolates}", fix,
                            blocker=kind in namespaces.DEFAULT_KINDS))
    if read_if_there("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        checks.append(check_userns_profile())
    return checks


# Where AppArmor restricts user namespaces (Ubuntu 23.10+), vagrant/userns-profile.sh allows them to this copy
# of the distribution's Python, and to nothing else on the host.
USERNS_PYTHON = "/opt/minicontainer/userns/python3"


def unprivileged_python() -> str:
    """The interpreter an ordinary user runs the runtime with (the rootless lesson): the lab's copy that
    AppArmor's profile lets make user namespaces, where provisioning installed one, else the distribution's."""
    return USERNS_PYTHON if os.access(USERNS_PYTHON, os.X_OK) else "/usr/bin/python3"


def check_userns_profile() -> Check:
    """On a host whose AppArmor refuses user namespaces to unprivileged processes: is the lab's profile there?"""
    name = "unprivileged user namespaces"
    profiles = read_if_there("/sys/kernel/security/apparmor/profiles") or ""
    fix = "run vagrant/userns-profile.sh as root (provisioning does): it allows them to the lab's interpreter only"
    if not any(line.startswith("minicontainer-userns ") for line in profiles.splitlines()):
        return Check(name, False, "AppArmor restricts them and the lab's profile (minicontainer-userns) is not "
                     "loaded: the rootless lesson cannot start its container", fix, blocker=False)
    if not os.access(USERNS_PYTHON, os.X_OK):
        return Check(name, False, f"the lab's profile is loaded but {USERNS_PYTHON} is missing", fix, blocker=False)
    if not filecmp.cmp(USERNS_PYTHON, "/usr/bin/python3", shallow=False):  # Python was upgraded since the copy
        return Check(name, False, f"{USERNS_PYTHON} is older than /usr/bin/python3", fix, blocker=False)
    return Check(name, True,
                 f"AppArmor restricts them; its profile minicontainer-userns allows them to {USERNS_PYTHON}")


def check_cgroups() -> list[Check]:
    layout = detect()
    checks = [Check("cgroup mode", bool(layout.controllers), layout.mode,
                    "mount cgroup2 at /sys/fs/cgroup (or the v1 hierarchies)")]
    if layout.mode.startswith("hybrid"):
        checks[0].detail += ": limits work through v1 here; the lab VM and most current distributions use v2"
    for name in ("memory", "cpu", "pids", "io", "freezer"):
        c = layout.controllers.get(name)
        if c:
            checks.append(Check(f"cgroup {name}", True, f"v{c.version} at {c.mount}", blocker=False))
        elif name == "freezer" and layout.mode.startswith("unified"):
            checks.append(Check("cgroup freeze", True, "v2 cgroup.freeze", blocker=False))
        else:
            checks.append(Check(f"cgroup {name}", False, layout.unavailable.get(name, "missing"),
                                f"enable the {name} controller (delegate it on v2); lessons that limit {name} "
                                "will not work", blocker=False))
    if os.geteuid() == 0 and layout.controllers:
        probe = Cgroup(f"doctor-{os.getpid()}")
        try:
            probe.create()
            checks.append(Check("cgroup create", True, "made and removed " + ", ".join(probe.directories)))
        except LabError as e:
            checks.append(Check("cgroup create", False, e.what, e.fix))
        finally:
            try:
                probe.remove()
            except LabError:
                pass
    return checks


def check_devices() -> list[Check]:
    """The device cgroup: v1's devices controller, or on v2 a BPF device program the kernel accepts."""
    layout = detect()
    controller = layout.controllers.get("devices")
    fix = ("use a kernel with CONFIG_CGROUP_BPF on cgroup v2 (the lab VM), or mount the v1 devices controller; "
           "without it, start containers with Security(devices=False) and no mknod capability")
    if controller is None:
        return [Check("device cgroup", False, layout.unavailable.get("devices", "missing"), fix)]
    if controller.version == 1:
        return [Check("device cgroup", True, f"v1 devices controller at {controller.mount}")]
    if os.geteuid() != 0:
        return [Check("device cgroup", True, "v2: a BPF device program (not loaded: doctor is not root)",
                      blocker=False)]
    try:
        os.close(devices.load_program())
    except LabError as e:
        return [Check("device cgroup", False, f"v2, but {e.what}", fix)]
    return [Check("device cgroup", True, "v2: the kernel accepts the BPF device program")]


def check_userns_clone(path: str = "/proc/sys/kernel/unprivileged_userns_clone") -> list[Check]:
    """Debian's kernel (and a few others) adds kernel.unprivileged_userns_clone. At 0, unshare or clone
    with CLONE_NEWUSER fails with EPERM unless the caller has CAP_SYS_ADMIN in the host's user namespace.
    That refuses the rootless lesson's user, and the root of 05's containers, which lacks CAP_SYS_ADMIN."""
    if read_if_there(path) != "0":
        return []  # 1, or a kernel without the sysctl: nothing in the way
    return [Check("unprivileged_userns_clone", False,
                  "kernel.unprivileged_userns_clone=0: only a process with CAP_SYS_ADMIN in the host's user "
                  "namespace may make a user namespace; rootless mode fails, and 05's attacks through a user "
                  "namespace are refused even with their defence switched off",
                  "for the rootless lesson: sysctl -w kernel.unprivileged_userns_clone=1 (for every user of the "
                  "host; set it back to 0 after the lesson)", blocker=False)]


def check_selinux(path: str = "/sys/fs/selinux/enforce") -> list[Check]:
    """An enforcing SELinux refuses what its policy denies with EACCES or EPERM, which the lab's messages
    put down to the causes they know (no root, a missing capability, a seccomp rule)."""
    if read_if_there(path) != "1":
        return []  # not enforcing (0), or no SELinux
    return [Check("selinux", False,
                  "SELinux is enforcing: a call its policy denies fails with EACCES or EPERM, and the lab's "
                  "message may name another cause",
                  "after such a failure, look for a denial: ausearch -m avc -ts recent (or grep avc "
                  "/var/log/audit/audit.log)", blocker=False)]


def check_tiocsti() -> list[Check]:
    value = read_if_there("/proc/sys/dev/tty/legacy_tiocsti")
    if value == "0":
        return [Check("legacy_tiocsti", True, "0: TIOCSTI needs CAP_SYS_ADMIN on this host", blocker=False)]
    detail = ("1: any process may push input into its controlling terminal with TIOCSTI; containers' seccomp filter "
              "refuses it" if value == "1" else "no dev.tty.legacy_tiocsti (before Linux 6.2): TIOCSTI always "
              "works on a process's controlling terminal; containers' seccomp filter refuses it")
    fix = ("for the whole host, also: sysctl -w dev.tty.legacy_tiocsti=0" if value == "1"
           else "a newer kernel can switch TIOCSTI off (dev.tty.legacy_tiocsti=0)")
    return [Check("legacy_tiocsti", False, detail, fix, blocker=False)]


def check_user() -> list[Check]:
    """Root, as the lab VM runs the lab; or a class host's learner (MINICONTAINER_LAB=class), who runs
    containers rootless, with limits where the host delegated a cgroup to their server."""
    if os.geteuid() == 0:
        return [Check("root", True, "euid 0")]
    if os.environ.get("MINICONTAINER_LAB") != "class":
        return [Check("root", False, f"euid {os.geteuid()}", "run as root (sudo), or in the lab VM")]
    delegated = delegated_to_us()
    return [Check("root", False, f"euid {os.geteuid()}, a class host's learner: containers run rootless, in a "
                  "user namespace where root is you", "the lessons' cells that need root say so where they come "
                  "(docs/class-host.md)", blocker=False),
            Check("delegated cgroup", delegated is not None, delegated or "none: rootless containers get no cgroup "
                  "and no limits", "the class host delegates one to each learner's server (systemd Delegate=yes): "
                  "ask the instructor"),
            check_user_mode_network()]


def check_user_mode_network() -> Check:
    """Lesson 04's network for a user without root: slirp4netns, which opens /dev/net/tun as that user."""
    name = "user-mode network"
    if shutil.which("slirp4netns") is None:
        return Check(name, False, "slirp4netns is not installed", "apt-get install slirp4netns (the class host's "
                     "provisioning does)", blocker=False)
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))  # opening it makes no device: TUNSETIFF would
    except OSError as e:
        return Check(name, False, f"/dev/net/tun: {e.strerror}", "the machine's admin: chmod 0666 /dev/net/tun, as "
                     "udev's rule makes it", blocker=False)
    return Check(name, True, "slirp4netns, and /dev/net/tun open to you")


def check_host() -> list[Check]:
    checks = [*check_user(),
              Check("python", sys.version_info >= (3, 10), sys.version.split()[0], "use Python 3.10 or newer")]
    filesystems = read_if_there("/proc/filesystems") or ""
    overlay = "overlay" in filesystems
    if not overlay and os.geteuid() == 0:
        overlay = subprocess.run(["modprobe", "overlay"], capture_output=True).returncode == 0
    checks.append(Check("overlayfs", overlay, "in /proc/filesystems" if overlay else "missing",
                        "modprobe overlay, or use a kernel with CONFIG_OVERLAY_FS"))
    checks.append(Check("pidfd_open", hasattr(os, "pidfd_open"), "the helper waits on a pidfd",
                        "use Linux 5.3+ and Python 3.9+"))
    built = os.path.isfile(os.path.join(rootfs.DEFAULT_ROOTFS, "bin/busybox"))
    checks.append(Check("default rootfs", built, rootfs.DEFAULT_ROOTFS if built else "not built yet",
                        "run `minicontainer rootfs build` (it takes busybox-static from apt)", blocker=False))
    root = next((m for m in read_if_there("/proc/self/mountinfo").splitlines() if m.split()[4] == "/"), "")
    shared = "shared:" in root
    checks.append(Check("/ propagation", True, "shared (as on systemd hosts): containers make their copy rprivate"
                        if shared else "private", blocker=False))
    return checks


def run_checks() -> list[Check]:
    checks = check_host()
    if os.geteuid() == 0:
        checks += check_namespaces()
    checks += check_userns_clone() + check_selinux()
    checks += check_cgroups() + check_devices() + check_tiocsti()
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    """A table of the checks and the exit code: 1 if any blocker failed."""
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.blocker else "warn")
        lines.append(f"  {mark}  {c.name:<22} {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"        {'':<22} -> {c.fix}")
    failed = [c for c in checks if not c.ok and c.blocker]
    lines.append("doctor: " + ("all blockers pass" if not failed else f"{len(failed)} blocker(s) failed"))
    return "\n".join(lines), 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe_namespaces()))
