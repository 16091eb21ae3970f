"""Run pytest inside a small qemu VM and bring the results back; one harness for two guests.

Each guest boots Debian's own kernel (unpacked from its .deb, never installed here) with a tiny
initramfs: a static busybox, the modules it needs, and init.sh. It sees its root through 9p,
read-only, under a tmpfs overlay, so a run changes nothing on the host. A second 9p share, a
temp dir here, carries the run's arguments in and the JUnit XML and pytest's exit status out.

- AMD64, the cgroup v2 VM: the root is this machine's own /, so it runs the same Python, venv and
  checkout at the same paths with nothing to build (the kernel comes from linux-image-amd64).
- ARM64: an arm64 Debian 12 root that cannot be this machine's, built once into CACHE from Debian's
  packages (debootstrap --foreign here, its second stage and a venv inside the guest: no binfmt
  handler, no foreign dpkg architecture on this host) and rebuilt when its recipe changes. The
  checkout under test is a third share, mounted at its host path under an overlay of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import lzma
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from minicontainer import kernel as syscalls

CACHE = os.environ.get("MINICONTAINER_VM_CACHE", "/var/cache/minicontainer/vm")
HERE = os.path.dirname(os.path.abspath(__file__))
INIT = os.path.join(HERE, "init.sh")
HOST_BUSYBOX = "/bin/busybox"  # busybox-static: runs with no libraries in the initramfs
# What Debian's kernel has as modules but the guest needs before its root exists; loop, so that
# the guest (whose root is a 9p share) has block devices for the device cgroup's tests; and what
# the lab's network needs (veth pairs on a bridge, NAT in an nftables table, a dummy uplink; tun, whose
# /dev/net/tun lesson 04's user-mode network opens: on a distribution udev's static nodes make it exist).
# crc32c_generic before the rest: libcrc32c (under nf_tables) asks the crypto API for crc32c at
# load time, a soft dependency that no depends= line names. Those built into a kernel are skipped.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "loop", "veth", "bridge", "dummy", "tun",
           "crc32c_generic", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct")
# TCG: this CI's /dev/kvm cannot run guests. MINICONTAINER_VM_ACCEL=kvm where it can (same-arch guests only).
ACCEL = os.environ.get("MINICONTAINER_VM_ACCEL", "tcg")
DEBIAN_MIRROR = "http://deb.debian.org/debian"


class Unavailable(Exception):
    """The VM cannot run on this machine at all (the reason says why): a skip, not a failure."""


@dataclass
class Boot:
    """What one boot is made of, all on this machine."""
    vmlinuz: str
    modules: list   # .ko paths, each after the modules it depends on
    busybox: str    # a static busybox of the guest's architecture
    root: str       # the directory shared as the guest's /


@dataclass
class Result:
    status: int | None   # the guest command's exit status; None if it never got that far
    junit: str | None    # the JUnit XML text, if any
    log: str             # the serial console and qemu's own output
    seconds: float

    def booted(self) -> tuple[str, str] | None:
        """(machine, kernel release) as the guest's init reported them (uname -m, uname -r), if it got that far."""
        found = re.search(r"vm init: (\S+), Linux (\S+), up", self.log)
        return (found.group(1), found.group(2)) if found else None


def _run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def _read(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        return f.read()


def apt_get(*args: str, cwd: str | None = None) -> None:
    out = _run("apt-get", "-q", "-o", "APT::Sandbox::User=root", *args, cwd=cwd, timeout=900,
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if out.returncode != 0:
        raise RuntimeError(f"apt-get {' '.join(args)} failed:\n{out.stdout[-1500:]}{out.stderr[-1500:]}")


def ensure_command(command: str, package: str) -> str:
    """The command's path, installing its Debian package first if it is missing."""
    path = shutil.which(command)
    if not path:
        if not shutil.which("apt-get"):
            raise Unavailable(f"no {command} and no apt-get to install {package} with")
        apt_get("update", "-qq")
        apt_get("install", "-y", "-qq", "--no-install-recommends", package)
        path = shutil.which(command)
        if not path:
            raise RuntimeError(f"apt-get installed {package} but there is still no {command}")
    return path


def module_name(filename: str) -> str:
    """The module's name as the kernel knows it: nf-tables.ko.xz -> nf_tables."""
    return filename.split(".ko")[0].replace("-", "_")


def read_module(path: str) -> bytes:
    """A module's ELF, uncompressed: busybox's insmod hands the kernel the file as it is."""
    with open(path, "rb") as f:
        data = f.read()
    return lzma.decompress(data) if path.endswith(".xz") else data


def module_order(moddir: str, wanted) -> list[str]:
    """The .ko files of the wanted modules and what they depend on (from each file's depends=), deps first."""
    files = {}
    for top, _, names in os.walk(os.path.join(moddir, "kernel")):
        for name in names:
            # Debian 12 ships them as .ko, Debian 13 as .ko.xz.
            if name.endswith((".ko", ".ko.xz")):
                files[module_name(name)] = os.path.join(top, name)
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {module_name(os.path.basename(line.strip())) for line in f}
    order = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in builtin or files.get(name) in order:
            return
        if name not in files:
            raise RuntimeError(f"kernel module {name} not found in {moddir}")
        depends = re.search(rb"depends=([^\0]*)\0", read_module(files[name]))
        for dep in filter(None, depends.group(1).decode().split(",") if depends else []):
            visit(dep)
        order.append(files[name])

    for name in wanted:
        visit(name)
    return order


def unpack_kernel(deb: str, keep: str, wanted) -> None:
    """dpkg-deb -x a linux-image .deb and keep only its vmlinuz, as keep/vmlinuz, and the wanted modules
    with what they depend on, as keep/modules/NN-name.ko in load order."""
    work = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(keep))
    try:
        out = _run("dpkg-deb", "-x", deb, work)
        if out.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {deb} failed: {out.stderr}")
        # Debian 13's package puts them under usr/ (merged /usr), Debian 12's not.
        moddirs = glob.glob(os.path.join(work, "lib/modules/*")) + glob.glob(os.path.join(work, "usr/lib/modules/*"))
        if len(moddirs) != 1:
            raise RuntimeError(f"{deb} holds {len(moddirs)} module trees, not one")
        version = os.path.basename(moddirs[0])
        os.makedirs(os.path.join(keep, "modules"))
        for i, path in enumerate(module_order(moddirs[0], wanted)):
            with open(os.path.join(keep, "modules", f"{i:02d}-{module_name(os.path.basename(path))}.ko"), "wb") as f:
                f.write(read_module(path))
        shutil.copy(os.path.join(work, "boot", f"vmlinuz-{version}"), os.path.join(keep, "vmlinuz"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def maintainer_script(deb: str, name: str) -> str:
    """A package's maintainer script (postinst, ...) as text; "" if it has none."""
    out = subprocess.run(f"dpkg-deb --ctrl-tarfile {shlex.quote(deb)} | tar -xOf - ./{name}", shell=True,
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def cached_modules(home: str) -> list[str]:
    return sorted(glob.glob(os.path.join(home, "modules", "*.ko")))


def has_modules(home: str, wanted) -> bool:
    """Whether the cached kernel holds every wanted module (files are NN-name.ko)."""
    cached = {module_name(os.path.basename(p).split("-", 1)[1]) for p in cached_modules(home)}
    return set(wanted) <= cached


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


def initramfs(boot: Boot) -> bytes:
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    dirs = [(d, 0o40755, b"", (0, 0)) for d in ("bin", "dev", "proc", "sys", "modules")]
    files = [("init", 0o100755, read(INIT), (0, 0)), ("bin/busybox", 0o100755, read(boot.busybox), (0, 0)),
             ("dev/console", 0o20600, b"", (5, 1))]  # init's stdio before devtmpfs is mounted
    modules = [(f"modules/{os.path.basename(p)}", 0o100644, read(p), (0, 0)) for p in boot.modules]
    return cpio(dirs + files + modules)


class Guest:
    """A kind of VM: which qemu, board and console, and how its kernel, busybox and root are had."""
    qemu: str             # the qemu binary
    qemu_package: str     # Debian's package that has it
    board: tuple          # qemu's options for the machine and its CPU
    console: str          # the serial port's device in the guest
    modules: tuple = MODULES
    python: str | None = None      # the guest's Python; None: the caller's own, at the same path
    shares_checkout = False        # the checkout is a share of its own (the guest's root is not this /)
    apparmor = False               # the root has AppArmor's tools: init mounts securityfs, so the LSM shows

    def check_host(self) -> None:
        """Raise Unavailable where this machine cannot run the guest, RuntimeError where its set-up is broken."""
        if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
            raise Unavailable("no apt-get and dpkg-deb here: the VM's kernel and qemu come from Debian's packages")

    def boot(self, repo: str) -> Boot:
        raise NotImplementedError


class HostRootGuest(Guest):
    """The cgroup v2 VM: this x86_64 machine's own / as the root, Debian's current amd64 kernel."""
    qemu, qemu_package = "qemu-system-x86_64", "qemu-system-x86"
    board = ("-cpu", "max")
    console = "ttyS0"

    def check_host(self) -> None:
        if platform.machine() != "x86_64":
            raise Unavailable(f"the VM boots Debian's amd64 kernel over this machine's /; this is {platform.machine()}")
        super().check_host()
        if not os.access(HOST_BUSYBOX, os.X_OK):
            # A broken set-up, not a machine that cannot run the VM: fail, do not skip.
            raise RuntimeError(f"{HOST_BUSYBOX} missing: apt-get install busybox-static (./lab setup does)")

    def kernel_package(self) -> str:
        """linux-image-amd64's current dependency, e.g. linux-image-6.1.0-56-amd64, from apt's metadata."""
        for attempt in range(2):
            out = _run("apt-cache", "depends", "linux-image-amd64").stdout
            found = re.search(r"Depends: (linux-image-[\w.+-]+)", out)
            if found:
                return found.group(1)
            if attempt == 0:
                apt_get("update", "-qq")  # no package lists yet (a fresh machine)
        raise RuntimeError("apt knows no linux-image-amd64 package (is this Debian?)")

    def download_kernel(self, package: str) -> None:
        os.makedirs(CACHE, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".download-", dir=CACHE)
        try:
            apt_get("download", package, cwd=work)
            deb = next(os.path.join(work, n) for n in os.listdir(work) if n.endswith(".deb"))
            unpack_kernel(deb, os.path.join(work, "keep"), self.modules)
            with contextlib.suppress(OSError):  # another run cached it first
                os.rename(os.path.join(work, "keep"), os.path.join(CACHE, package))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for old in os.listdir(CACHE):  # kernels the mirror has moved on from
            if old.startswith("linux-image-") and old != package:
                shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)

    def boot(self, repo: str) -> Boot:
        """The current Debian kernel, unpacked into the cache on first use."""
        package = self.kernel_package()
        if not os.path.isdir(os.path.join(CACHE, package)):
            try:
                self.download_kernel(package)
            except RuntimeError:  # old package lists name a version the mirror no longer has
                apt_get("update", "-qq")
                package = self.kernel_package()
                if not os.path.isdir(os.path.join(CACHE, package)):
                    self.download_kernel(package)
        home = os.path.join(CACHE, package)
        if not has_modules(home, self.modules):  # cached before MODULES grew
            shutil.rmtree(home)
            self.download_kernel(package)
        return Boot(os.path.join(home, "vmlinuz"), cached_modules(home), HOST_BUSYBOX, "/")


class DebianRootGuest(Guest):
    """A Debian root other than this machine's (another architecture or release), built into the cache from
    Debian's packages (see build_into) and rebuilt when its recipe changes."""
    shares_checkout = True

    def __init__(self, arch: str, suite: str, qemu: str, qemu_package: str, board: tuple, console: str,
                 extra_packages: tuple, modules: tuple = MODULES, venv: str = "/opt/minicontainer/venv",
                 build_timeout: float = 1800, apparmor: bool = False):
        self.arch, self.suite, self.apparmor = arch, suite, apparmor
        self.qemu, self.qemu_package, self.board, self.console = qemu, qemu_package, board, console
        self.modules = modules
        self.extra_packages, self.venv = extra_packages, venv
        # About a minute here: mostly debootstrap's downloads (some 250 MB), then unpacking and pip.
        self.build_timeout = build_timeout
        self.python = os.path.join(venv, "bin", "python")
        self.home = os.path.join(CACHE, f"{arch}-{suite}")

    def packages(self, repo: str) -> list[str]:
        """packages.apt (what a learner's machine installs) and what this guest needs besides."""
        with open(os.path.join(repo, "packages.apt")) as f:
            listed = [line.split("#")[0].strip() for line in f]
        return sorted({*filter(None, listed), *self.extra_packages})

    def requirements(self, repo: str) -> list[str]:
        """The project's Python dependencies, its lab's and its notebook tests' (not the linter's nor the
        browser driver's: the host runs those), without the project itself: the checkout is on sys.path."""
        import tomllib  # Python 3.11+, as Debian 12 has; the lab itself still runs on 3.10

        with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
            project = tomllib.load(f)["project"]
        wanted = [*project["dependencies"], *project["optional-dependencies"]["lab"],
                  *project["optional-dependencies"]["notebooks"]]
        return sorted({r for r in wanted if not r.startswith(project["name"])})

    def recipe(self, repo: str) -> str:
        """Everything the built root depends on: a change in any of it (this class's code included) makes a new root."""
        import inspect

        with open(os.path.join(repo, "constraints.txt")) as g:
            parts = [f"{self.arch} {self.suite} {DEBIAN_MIRROR}", " ".join(self.packages(repo)),
                     " ".join(self.modules), self.venv, " ".join(self.requirements(repo)), g.read(),
                     inspect.getsource(DebianRootGuest)]
        return "\n".join(parts)

    def check_host(self) -> None:
        super().check_host()
        ensure_command("debootstrap", "debootstrap")
        ensure_command("depmod", "kmod")

    def boot(self, repo: str) -> Boot:
        digest = hashlib.sha256(self.recipe(repo).encode()).hexdigest()
        os.makedirs(CACHE, exist_ok=True)
        with open(self.home + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second run waits for it and uses it
            if (_read(os.path.join(self.home, "ready")) or "").strip() != digest:
                self.build(repo, digest)
        kept = os.path.join(self.home, "boot")
        return Boot(os.path.join(kept, "vmlinuz"), cached_modules(kept), os.path.join(kept, "busybox"),
                    os.path.join(self.home, "root"))

    def build(self, repo: str, digest: str) -> None:
        """Build the root beside the old one and swap it in only once all of it succeeded."""
        new = self.home + ".new"
        shutil.rmtree(new, ignore_errors=True)
        os.makedirs(new)
        try:
            started = time.monotonic()
            self.build_into(new, repo)
            with open(os.path.join(new, "ready"), "w") as f:
                f.write(digest + "\n")
            print(f"[{self.arch} {self.suite} guest] root ready after {time.monotonic() - started:.0f} s", flush=True)
        except BaseException:  # a half-built root is no use to the next run, which starts again anyway
            shutil.rmtree(new, ignore_errors=True)
            raise
        shutil.rmtree(self.home, ignore_errors=True)
        os.rename(new, self.home)

    def build_into(self, new: str, repo: str) -> None:
        """debootstrap --foreign downloads the packages and unpacks the essential ones; every other package is
        unpacked here too, and what their maintainer scripts would have done that the guest needs is done
        here by hand. Nothing of the root's architecture runs on this machine, so no binfmt handler is
        needed, and nothing runs under emulation: debootstrap's second stage inside the guest took over an
        hour under TCG, which no CI run can afford. The price: no maintainer script has run, so the root has
        no dpkg database and no services set up; the tests need neither."""
        root = os.path.join(new, "root")
        print(f"[{self.arch} {self.suite} guest] debootstrap --foreign {self.suite} into {root}", flush=True)
        out = _run("debootstrap", "--foreign", f"--arch={self.arch}", "--variant=minbase",
                   f"--include={','.join(self.packages(repo))}", self.suite, root, DEBIAN_MIRROR, timeout=1800)
        if out.returncode != 0:
            details = (_read(os.path.join(root, "debootstrap/debootstrap.log")) or "")[-2000:]
            raise RuntimeError(f"debootstrap --foreign failed ({out.returncode}):\n{out.stdout[-2000:]}"
                               f"{out.stderr[-2000:]}\n{details}")
        archives = os.path.join(root, "var/cache/apt/archives")
        debs = sorted(os.path.join(archives, n) for n in os.listdir(archives) if n.endswith(".deb"))
        for deb in debs:
            # As debootstrap unpacks: tar keeps the merged-/usr links (bin -> usr/bin) and fills their targets.
            unpack = (f"dpkg-deb --fsys-tarfile {shlex.quote(deb)} | "
                      f"tar --keep-directory-symlink -C {shlex.quote(root)} -xf -")
            out = subprocess.run(unpack, shell=True, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"unpacking {os.path.basename(deb)} failed: {out.stderr}")
        kernel = self.one_deb(archives, rf"linux-image-\d[\w.+-]*-{self.arch}_")
        unpack_kernel(kernel, os.path.join(new, "boot"), self.modules)
        shutil.copy(os.path.join(root, "bin", "busybox"), os.path.join(new, "boot", "busybox"))  # busybox-static
        self.configure(root, debs)
        self.install_wheels(root, repo)
        for path in (archives, os.path.join(root, "debootstrap")):
            shutil.rmtree(path)
        os.makedirs(archives)

    @staticmethod
    def configure(root: str, debs: list) -> None:
        """What the maintainer scripts would have done that the guest needs."""
        # The first stage links proc to this machine's /proc, for a chroot here; the guest mounts its own.
        proc = os.path.join(root, "proc")
        if os.path.islink(proc):
            os.unlink(proc)
            os.mkdir(proc, 0o555)
        # base-files' postinst: the directories it makes rather than ships (/mnt, /srv, /media, /usr/local/...).
        postinst = maintainer_script(DebianRootGuest.one_deb(os.path.dirname(debs[0]), r"base-files_"), "postinst")
        for directory, mode in re.findall(r"^\s*install_directory\s+(\S+)\s+(\d+)", postinst, re.M):
            os.makedirs(os.path.join(root, directory), exist_ok=True)
            os.chmod(os.path.join(root, directory), int(mode, 8))
        for directory in re.findall(r"^\s*install_local_dir\s+(\S+)", postinst, re.M):
            os.makedirs(root + directory, exist_ok=True)
        # base-passwd's postinst: the system's users and groups.
        for name in ("passwd", "group"):
            shutil.copy(os.path.join(root, f"usr/share/base-passwd/{name}.master"), os.path.join(root, "etc", name))
        # update-alternatives: awk (mawk), cc (gcc), iptables (nft) and the like, each to its highest-priority
        # choice, with the links that follow it (--slave: iptables-save goes with iptables).
        best = {}
        for deb in debs:
            script = maintainer_script(deb, "postinst").replace("\\\n", " ")
            for call in script.split("update-alternatives")[1:]:
                found = re.search(r"--install\s+(/[\w/.+-]+)\s+([\w.+-]+)\s+(/[\w/.+-]+)\s+(\d+)", call.split("\n")[0])
                if not found or not os.path.lexists(root + found.group(3)):
                    continue
                link, name, path, priority = found.groups()
                if int(priority) >= best.get(name, ((), -1))[1]:
                    slaves = re.findall(r"--slave\s+(/[\w/.+-]+)\s+([\w.+-]+)\s+(/[\w/.+-]+)", call.split("\n")[0])
                    best[name] = (((link, name, path), *slaves), int(priority))
        os.makedirs(os.path.join(root, "etc/alternatives"), exist_ok=True)
        for links, _ in best.values():
            for link, name, path in links:
                via = os.path.join(root, "etc/alternatives", name)
                for source, target in ((via, path), (root + link, f"/etc/alternatives/{name}")):
                    if not os.path.lexists(source):
                        os.symlink(target, source)
        with open(os.path.join(root, "etc/hostname"), "w") as f:
            f.write("lab-vm\n")
        # depmod: the guest loads any of its kernel's modules on demand (modprobe needs modules.dep).
        for moddir in glob.glob(os.path.join(root, "lib/modules/*")):
            out = _run("depmod", "-b", root, os.path.basename(moddir))
            if out.returncode != 0:
                raise RuntimeError(f"depmod for {moddir} failed: {out.stderr}")

    def install_wheels(self, root: str, repo: str) -> None:
        """A venv in the root with the project's dependencies, installed here from wheels built for the root's
        architecture, Python and glibc (pip's --platform), pinned by constraints.txt: no pip runs in the guest."""
        python = os.readlink(os.path.join(root, "usr/bin/python3"))  # e.g. python3.11
        version = python.removeprefix("python")
        glibc = re.search(r"libc6_2\.(\d+)", " ".join(os.listdir(os.path.join(root, "var/cache/apt/archives"))))
        machine = {"arm64": "aarch64", "amd64": "x86_64"}[self.arch]
        platforms = ["linux_" + machine, f"manylinux2014_{machine}",
                     *(f"manylinux_2_{minor}_{machine}" for minor in range(17, int(glibc.group(1)) + 1))]
        venv = root + self.venv
        site = os.path.join(venv, "lib", python, "site-packages")
        os.makedirs(os.path.join(venv, "bin"))
        for name in ("python", "python3", python):
            os.symlink(f"/usr/bin/{python}", os.path.join(venv, "bin", name))
        with open(os.path.join(venv, "pyvenv.cfg"), "w") as f:
            f.write(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")
        tag = "cp" + version.replace(".", "")
        out = _run(sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                   "--target", site, *(f"--platform={p}" for p in platforms), "--implementation=cp",
                   f"--python-version={version}", f"--abi={tag}", "--abi=abi3", "--abi=none",
                   "--only-binary=:all:", "-c", os.path.join(repo, "constraints.txt"), *self.requirements(repo),
                   timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"pip install for the {self.arch} {self.suite} guest failed:\n"
                               f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
        shutil.rmtree(os.path.join(site, "bin"), ignore_errors=True)  # scripts with this machine's interpreter
        # The project's own commands, as its install would make them: the engines call bin/minicontainer.
        import tomllib

        with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
            scripts = tomllib.load(f)["project"]["scripts"]
        for name, entry in scripts.items():
            module, function = entry.split(":")
            with open(os.path.join(venv, "bin", name), "w") as f:
                f.write(f"#!{self.venv}/bin/python\nimport sys\n"
                        f"from {module} import {function}\nsys.exit({function}())\n")
            os.chmod(os.path.join(venv, "bin", name), 0o755)

    @staticmethod
    def one_deb(archives: str, pattern: str) -> str:
        found = [n for n in os.listdir(archives) if re.match(pattern, n) and n.endswith(".deb")]
        if len(found) != 1:
            raise RuntimeError(f"expected one .deb matching {pattern} in {archives}, found {found}")
        return os.path.join(archives, found[0])


AMD64 = HostRootGuest()
ARM64 = DebianRootGuest(
    "arm64", "bookworm", "qemu-system-aarch64", "qemu-system-arm",
    # pauth-impdef: the CPU's pointer authentication with QEMU's cheap hash, not the architected QARMA
    # cipher, whose emulation costs every function return of a kernel and libc built with it.
    board=("-M", "virt", "-cpu", "max,pauth-impdef=on"), console="ttyAMA0",
    # The kernel installed too (its /lib/modules lets the guest load any module on demand); kmod for modprobe.
    # e2fsprogs: test_claims makes an ext4 whose page cache can be dropped (the guest's own files are on 9p and tmpfs).
    extra_packages=("linux-image-arm64", "kmod", "e2fsprogs"))
# Debian 13 as it is today: kernel 6.12, glibc 2.41, Python 3.13, Podman 5, libseccomp 2.6. AppArmor, which
# Debian turns on by default, with its parser: the lab's own profile is loaded and tried there.
TRIXIE = DebianRootGuest(
    "amd64", "trixie", "qemu-system-x86_64", "qemu-system-x86", board=("-cpu", "max"), console="ttyS0",
    # docker.io (in Debian 13, docker-cli apart), iptables: the engine tests' dockerd (./lab test installs them).
    # e2fsprogs, as for arm64.
    extra_packages=("linux-image-amd64", "kmod", "apparmor", "docker.io", "docker-cli", "iptables", "e2fsprogs"),
    apparmor=True)


def qemu_command(guest: Guest, boot: Boot, initrd: str, share: str, log: str, cpus: int, memory: str,
                 checkout: str | None) -> list:
    qemu = shutil.which(guest.qemu) or guest.qemu
    virtfs = "local,security_model=none,multidevs=remap"
    # quiet: the console is a log file shown only on failure; panic=-1: a dying init ends qemu.
    append = f"console={guest.console} quiet loglevel=3 panic=-1"
    command = [qemu, "-accel", ACCEL, *guest.board, "-smp", str(cpus), "-m", memory,
               "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
               "-kernel", boot.vmlinuz, "-initrd", initrd, "-append", append,
               "-virtfs", f"{virtfs},path={boot.root},mount_tag=root,readonly=on",
               "-virtfs", f"{virtfs},path={share},mount_tag=results"]
    if checkout:
        command += ["-virtfs", f"{virtfs},path={checkout},mount_tag=checkout,readonly=on"]
    return command


def sweep() -> None:
    """Remove the temp dirs of runs whose process was killed outright (their qemu died with them: PDEATHSIG)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "minicontainer-vm-*-*")):
        pid = os.path.basename(path).split("-")[2]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(path, ignore_errors=True)


def boot_guest(guest: Guest, boot: Boot, env: str, timeout: float, checkout: str | None = None, cpus: int = 2,
               memory: str = "2048M") -> Result:
    """Boot the guest with env (shell lines init.sh sources) on the results share, wait for it to power off,
    and return what it left there."""
    sweep()
    work = tempfile.mkdtemp(prefix=f"minicontainer-vm-{os.getpid()}-")
    try:
        share, log, initrd = (os.path.join(work, n) for n in ("share", "console.log", "initrd"))
        os.mkdir(share)
        with open(initrd, "wb") as f:
            f.write(initramfs(boot))
        with open(os.path.join(share, "env"), "w") as f:
            f.write(f"DEADLINE={int(timeout) - 30}\n{env}")
        start = time.monotonic()
        # Its own session, so a timeout can kill qemu's whole process group; PDEATHSIG, so qemu
        # dies with this process even if it is killed outright (./lab test's timeout, a Ctrl-C'd CI).
        vm = subprocess.Popen(qemu_command(guest, boot, initrd, share, log, cpus, memory, checkout),
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
        status = _read(os.path.join(share, "status"))
        return Result(int(status) if status and status.strip().isdigit() else None,
                      _read(os.path.join(share, "junit.xml")), (_read(log) or "") + qemu_output, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_pytest(args: list[str], repo: str, python: str | None, timeout: float, cpus: int = 2,
               memory: str = "2048M", guest: Guest = AMD64) -> Result:
    """Boot the guest, run `python -m pytest ARGS` in repo inside it, and return what came back. python
    None: the guest's own (a guest whose root is this machine's runs the caller's)."""
    guest.check_host()
    ensure_command(guest.qemu, guest.qemu_package)
    boot = guest.boot(repo)
    env = (f"REPO={shlex.quote(repo)}\nPYTHON={shlex.quote(python or guest.python)}\n"
           f"CHECKOUT={'1' if guest.shares_checkout else ''}\nSECURITYFS={'1' if guest.apparmor else ''}\n"
           f"set -- {shlex.join(args)}\n")
    return boot_guest(guest, boot, env, timeout, checkout=repo if guest.shares_checkout else None,
                      cpus=cpus, memory=memory)


def verdict(result: Result, what: str) -> str | None:
    """Why the run failed ("what" names the guest in the message), or None if every inner test passed. A
    skipped inner test counts as failed: the VM is there to run it."""
    tail = "\n".join(result.log.splitlines()[-60:])
    if not result.junit:
        return (f"the VM produced no test results (pytest exit status {result.status}, {result.seconds:.0f} s); "
                f"its console ends with:\n{tail}")
    count, found = problems(result.junit)
    if found:  # the first ones in full, the rest by name
        more = [p.split(" ", 1)[0] for p in found[8:]]
        return (f"{len(found)} of {count} tests failed {what} (pytest exit status {result.status}, "
                f"{result.seconds:.0f} s):\n\n" + "\n\n".join(found[:8])
                + (f"\n\nand {len(more)} more: {', '.join(more)}" if more else ""))
    if result.status != 0 or not count:
        return f"pytest in the VM ran {count} tests and exited {result.status}; its console ends with:\n{tail}"
    return None


def judge(result: Result, name: str, machine: str, kernel: str) -> str | None:
    """verdict(), after checking that the guest that ran is the one meant: its init's uname -m is machine and
    its uname -r starts with kernel (a guest that silently ran another kernel or architecture proves nothing)."""
    booted = result.booted()
    if not booted or booted[0] != machine or not booted[1].startswith(kernel):
        tail = "\n".join(result.log.splitlines()[-60:])
        return (f"the {name} guest was to run {machine} with Linux {kernel}*; its init reported "
                f"{booted or 'nothing'}; its console ends with:\n{tail}")
    return verdict(result, f"in the {name} guest")


# MINICONTAINER_GUEST_FULL=1: a guest test runs its whole set (by hand, before an issue is resolved), not CI's.
FULL = os.environ.get("MINICONTAINER_GUEST_FULL") == "1"
INNER_TEST_TIMEOUT = 600  # per inner test: a lesson takes minutes under TCG


def run_set(guest: Guest, tests: list, repo: str, timeout: float, name: str, machine: str, kernel: str) -> None:
    """A guest test's body: the tests in the guest; skipped where this machine cannot run the guest, failed
    with judge()'s reason where anything inside did not pass."""
    import pytest

    try:
        result = run_pytest(["-p", "no:cacheprovider", "-q", "-rfEs", f"--timeout={INNER_TEST_TIMEOUT}", *tests],
                            repo, None, timeout=timeout, guest=guest)
    except Unavailable as e:
        pytest.skip(str(e))
    failed = judge(result, name, machine, kernel)
    if failed:
        pytest.fail(failed, pytrace=False)


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
