"""Run pytest inside a small qemu VM that has cgroup v2 only, and bring the results back.

The guest boots Debian's own kernel (the linux-image-amd64 package, downloaded and unpacked,
never installed here) with a tiny initramfs: busybox, the modules it needs, and init.sh. It
sees this machine's / through 9p, read-only, under a tmpfs overlay, so it runs the same Python,
venv and checkout at the same paths with nothing to build. A second 9p share, a temp dir here,
carries the run's arguments in and the JUnit XML and pytest's exit status out.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from minicontainer import kernel as syscalls

CACHE = os.environ.get("MINICONTAINER_VM_CACHE", "/var/cache/minicontainer/vm")
INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.sh")
BUSYBOX = "/bin/busybox"  # busybox-static: runs with no libraries in the initramfs
# What Debian's kernel has as modules but the guest needs before its root exists; loop, so that
# the guest (whose root is a 9p share) has block devices for the device cgroup's tests; and what
# the lab's network needs (veth pairs on a bridge, NAT in an nftables table, a dummy uplink).
# crc32c_generic before the rest: libcrc32c (under nf_tables) asks the crypto API for crc32c at
# load time, a soft dependency that no depends= line names.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "loop", "veth", "bridge", "dummy",
           "crc32c_generic", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct")
# TCG: this CI's /dev/kvm cannot run guests. MINICONTAINER_VM_ACCEL=kvm where it can.
ACCEL = os.environ.get("MINICONTAINER_VM_ACCEL", "tcg")


class Unavailable(Exception):
    """The VM cannot run on this machine at all (the reason says why): a skip, not a failure."""


@dataclass
class Kernel:
    version: str    # e.g. 6.1.0-56-amd64
    vmlinuz: str
    modules: list   # .ko paths, each after the modules it depends on


@dataclass
class Result:
    status: int | None   # pytest's exit status in the guest; None if it never got that far
    junit: str | None    # the JUnit XML text, if any
    log: str             # the serial console and qemu's own output
    seconds: float


def _run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def check_host() -> None:
    if platform.machine() != "x86_64":
        raise Unavailable(f"the VM boots Debian's amd64 kernel with qemu-system-x86_64; this is {platform.machine()}")
    if not shutil.which("apt-get"):
        raise Unavailable("no apt-get here: the VM's kernel and qemu come from Debian's packages")
    if not os.access(BUSYBOX, os.X_OK):
        # A broken set-up, not a machine that cannot run the VM: fail, do not skip.
        raise RuntimeError(f"{BUSYBOX} missing: apt-get install busybox-static (./lab setup does)")


def apt_get(*args: str, cwd: str | None = None) -> None:
    out = _run("apt-get", "-q", "-o", "APT::Sandbox::User=root", *args, cwd=cwd, timeout=900,
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if out.returncode != 0:
        raise RuntimeError(f"apt-get {' '.join(args)} failed:\n{out.stdout[-1500:]}{out.stderr[-1500:]}")


def ensure_qemu() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        apt_get("update", "-qq")
        apt_get("install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86")
        qemu = shutil.which("qemu-system-x86_64")
    return qemu


def kernel_package() -> str:
    """linux-image-amd64's current dependency, e.g. linux-image-6.1.0-56-amd64, from apt's metadata."""
    for attempt in range(2):
        out = _run("apt-cache", "depends", "linux-image-amd64").stdout
        found = re.search(r"Depends: (linux-image-[\w.+-]+)", out)
        if found:
            return found.group(1)
        if attempt == 0:
            apt_get("update", "-qq")  # no package lists yet (a fresh machine)
    raise RuntimeError("apt knows no linux-image-amd64 package (is this Debian?)")


def module_order(moddir: str, wanted) -> list[str]:
    """The .ko files of the wanted modules and what they depend on (from each file's depends=), deps first."""
    files = {}
    for top, _, names in os.walk(os.path.join(moddir, "kernel")):
        for name in names:
            if name.endswith(".ko"):  # Debian 12 ships them uncompressed (CONFIG_MODULE_COMPRESS_NONE)
                files[name[:-3].replace("-", "_")] = os.path.join(top, name)
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {os.path.basename(line.strip())[:-3].replace("-", "_") for line in f}
    order = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in builtin or files.get(name) in order:
            return
        if name not in files:
            raise RuntimeError(f"kernel module {name} not found in {moddir}")
        with open(files[name], "rb") as f:
            depends = re.search(rb"depends=([^\0]*)\0", f.read())
        for dep in filter(None, depends.group(1).decode().split(",") if depends else []):
            visit(dep)
        order.append(files[name])

    for name in wanted:
        visit(name)
    return order


def unpack_kernel(package: str) -> None:
    """apt-get download the package, dpkg-deb -x it, keep only vmlinuz and the modules the VM needs."""
    version = package.removeprefix("linux-image-")
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".download-", dir=CACHE)
    try:
        apt_get("download", package, cwd=work)
        deb = next(os.path.join(work, n) for n in os.listdir(work) if n.endswith(".deb"))
        tree, keep = os.path.join(work, "tree"), os.path.join(work, "keep")
        out = _run("dpkg-deb", "-x", deb, tree)
        if out.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {deb} failed: {out.stderr}")
        os.makedirs(os.path.join(keep, "modules"))
        for i, path in enumerate(module_order(os.path.join(tree, "lib/modules", version), MODULES)):
            shutil.copy(path, os.path.join(keep, "modules", f"{i:02d}-{os.path.basename(path)}"))
        shutil.copy(os.path.join(tree, "boot", f"vmlinuz-{version}"), os.path.join(keep, "vmlinuz"))
        try:
            os.rename(keep, os.path.join(CACHE, package))
        except OSError:
            pass  # another run cached it first
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in os.listdir(CACHE):  # kernels the mirror has moved on from
        if old.startswith("linux-image-") and old != package:
            shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)


def fetch_kernel() -> Kernel:
    """The current Debian kernel, unpacked into the cache on first use."""
    package = kernel_package()
    if not os.path.isdir(os.path.join(CACHE, package)):
        try:
            unpack_kernel(package)
        except RuntimeError:  # old package lists name a version the mirror no longer has
            apt_get("update", "-qq")
            package = kernel_package()
            if not os.path.isdir(os.path.join(CACHE, package)):
                unpack_kernel(package)
    home = os.path.join(CACHE, package)
    if not has_modules(home):  # cached before MODULES grew
        shutil.rmtree(home)
        unpack_kernel(package)
    modules = sorted(os.path.join(home, "modules", n) for n in os.listdir(os.path.join(home, "modules")))
    return Kernel(package.removeprefix("linux-image-"), os.path.join(home, "vmlinuz"), modules)


def has_modules(home: str) -> bool:
    """Whether the cached kernel holds every module in MODULES (files are NN-name.ko)."""
    cached = {name.split("-", 1)[1][:-3].replace("-", "_") for name in os.listdir(os.path.join(home, "modules"))}
    return set(MODULES) <= cached


def cpio(entries) -> bytes:
    """A newc cpio archive (what the kernel unpacks as initramfs) of (path, mode, data, rdev) entries."""
    out = bytearray()
    for ino, (path, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", (0, 0))], 1):
        name = path.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0)
        out += b"070701" + "".join(f"{v:08x}" for v in fields).encode() + name
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def initramfs(kernel: Kernel) -> bytes:
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    dirs = [(d, 0o40755, b"", (0, 0)) for d in ("bin", "dev", "proc", "sys", "modules")]
    files = [("init", 0o100755, read(INIT), (0, 0)), ("bin/busybox", 0o100755, read(BUSYBOX), (0, 0)),
             ("dev/console", 0o20600, b"", (5, 1))]  # init's stdio before devtmpfs is mounted
    modules = [(f"modules/{os.path.basename(p)}", 0o100644, read(p), (0, 0)) for p in kernel.modules]
    return cpio(dirs + files + modules)


def qemu_command(qemu: str, kernel: Kernel, initrd: str, share: str, log: str, cpus: int, memory: str) -> list:
    virtfs = "local,security_model=none,multidevs=remap"
    return [qemu, "-accel", ACCEL, "-cpu", "max", "-smp", str(cpus), "-m", memory,
            "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
            "-kernel", kernel.vmlinuz, "-initrd", initrd,
            # quiet: the console is a log file shown only on failure; panic=-1: a dying init ends qemu.
            "-append", "console=ttyS0 quiet loglevel=3 panic=-1",
            "-virtfs", f"{virtfs},path=/,mount_tag=hostroot,readonly=on",
            "-virtfs", f"{virtfs},path={share},mount_tag=results"]


def sweep() -> None:
    """Remove the temp dirs of runs whose process was killed outright (their qemu died with them: PDEATHSIG)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "minicontainer-vm-*-*")):
        pid = os.path.basename(path).split("-")[2]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(path, ignore_errors=True)


def run_pytest(args: list[str], repo: str, python: str, timeout: float, cpus: int = 2,
               memory: str = "2048M") -> Result:
    """Boot the VM, run `python -m pytest ARGS` in repo inside it, and return what came back."""
    check_host()
    qemu = ensure_qemu()
    kernel = fetch_kernel()
    sweep()
    work = tempfile.mkdtemp(prefix=f"minicontainer-vm-{os.getpid()}-")
    try:
        share, log, initrd = (os.path.join(work, n) for n in ("share", "console.log", "initrd"))
        os.mkdir(share)
        with open(initrd, "wb") as f:
            f.write(initramfs(kernel))
        with open(os.path.join(share, "env"), "w") as f:
            f.write(f"REPO={shlex.quote(repo)}\nPYTHON={shlex.quote(python)}\nDEADLINE={int(timeout) - 30}\n"
                    f"set -- {shlex.join(args)}\n")
        start = time.monotonic()
        # Its own session, so a timeout can kill qemu's whole process group; PDEATHSIG, so qemu
        # dies with this process even if it is killed outright (./lab test's timeout, a Ctrl-C'd CI).
        vm = subprocess.Popen(qemu_command(qemu, kernel, initrd, share, log, cpus, memory),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True,
                              preexec_fn=lambda: syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL))
        try:
            qemu_output = vm.communicate(timeout=timeout)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(vm.pid, signal.SIGKILL)
            qemu_output = vm.communicate()[0].decode(errors="replace") + f"\n[killed after {timeout:.0f} s]"
        except BaseException:  # interrupted: still leave no qemu behind
            os.killpg(vm.pid, signal.SIGKILL)
            vm.wait()
            raise
        seconds = time.monotonic() - start

        def read(path):
            if not os.path.exists(path):
                return None
            with open(path, errors="replace") as f:
                return f.read()
        status = read(os.path.join(share, "status"))
        return Result(int(status) if status and status.strip().isdigit() else None,
                      read(os.path.join(share, "junit.xml")), (read(log) or "") + qemu_output, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def problems(junit: str) -> tuple[int, list[str]]:
    """(how many tests ran, "name: message" for each that failed, errored or was skipped)."""
    found, count = [], 0
    for case in ET.fromstring(junit).iter("testcase"):
        count += 1
        name = f"{case.get('classname', '')}::{case.get('name')}"
        for outcome in ("failure", "error", "skipped"):
            for element in case.findall(outcome):
                detail = (element.text or "").strip().splitlines()
                found.append(f"{name} {outcome.upper()}: {element.get('message', '')}\n" + "\n".join(detail[-15:]))
    return count, found
