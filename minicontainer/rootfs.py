"""The root filesystem: build the busybox image, validate it, and switch a container into it.

The mount steps (make_mounts_private .. pivot_into) run in the container's init,
inside its own mount namespace, before exec: the host's mount table never sees them.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

from . import kernel
from .errors import LabError
from .paths import path_in


def default_rootfs() -> str:
    """Root's image is shared, in /var/lib. A user without root gets a copy of its own: that user is root in
    its rootless containers and owns every file of the copy, where the host root's files would be nobody's
    inside, and read-only."""
    if "MINICONTAINER_ROOTFS" in os.environ:
        return os.environ["MINICONTAINER_ROOTFS"]
    if os.geteuid() == 0:
        return "/var/lib/minicontainer/rootfs/busybox"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "minicontainer", "rootfs", "busybox")


DEFAULT_ROOTFS = default_rootfs()
PACKAGE_CACHE = "/var/cache/minicontainer"


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"=> {message}", flush=True)


# -- building the default image ------------------------------------------------------

def is_static_elf(path: str) -> bool:
    """True if the ELF file has no PT_INTERP program header, i.e. needs no dynamic loader."""
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))  # 3 = PT_INTERP


def find_static_busybox(quiet: bool = False) -> str:
    """A statically linked busybox: the host's (package busybox-static) or one unpacked from
    Debian's busybox-static package, downloaded with apt from the distribution's mirror."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.isfile(path) and is_static_elf(path):
            return path
    unpacked = os.path.join(PACKAGE_CACHE, "busybox-static", "bin", "busybox")
    if os.path.isfile(unpacked):
        return unpacked
    if not shutil.which("apt-get"):
        raise LabError("no static busybox found", "this host has neither busybox-static nor apt-get",
                       "install your distribution's busybox-static package, or pass a rootfs directory")
    say("downloading Debian's busybox-static package with apt-get (not installed on the host)", quiet)
    os.makedirs(PACKAGE_CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=PACKAGE_CACHE) as tmp:
        got = subprocess.run(["apt-get", "download", "busybox-static"], cwd=tmp, capture_output=True, text=True)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if got.returncode != 0 or not debs:
            raise LabError("apt-get download busybox-static failed: " + got.stderr.strip()[-300:],
                           "the package lists are missing or the mirror is unreachable",
                           "run `apt-get update`, or `apt-get install busybox-static`")
        subprocess.run(["dpkg-deb", "-x", os.path.join(tmp, debs[0]), os.path.join(PACKAGE_CACHE, "busybox-static")],
                       check=True)
    return unpacked


def build_rootfs(directory: str = DEFAULT_ROOTFS, quiet: bool = False) -> str:
    """Build a minimal root filesystem: a static busybox, its applet links, /etc basics."""
    directory = os.path.abspath(directory)
    if os.path.realpath(directory) == "/":
        raise LabError("refusing to build a rootfs at /", "that is the host's root", "give an empty directory")
    busybox = find_static_busybox(quiet)
    say(f"building rootfs in {directory} from {busybox}", quiet)
    staging = directory + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "tmp", "var/run"):
        os.makedirs(os.path.join(staging, sub), exist_ok=True)
    os.chmod(os.path.join(staging, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(staging, "bin/busybox"))
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:  # e.g. "usr/bin/awk": a symlink to /bin/busybox, which runs as awk
        link = os.path.join(staging, applet)
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/bin/busybox", link)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "etc/group": "root:x:0:\nnogroup:x:65534:\n",
        "etc/hostname": "minicontainer\n",
        "etc/hosts": "127.0.0.1 localhost\n",
        "etc/os-release": 'NAME="minicontainer busybox"\nID=minicontainer\n',
    }
    for name, text in files.items():
        with open(os.path.join(staging, name), "w") as f:
            f.write(text)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    os.rename(staging, directory)  # a half-built image is never left at the final path
    say(f"rootfs ready: {len(applets)} busybox applets", quiet)
    return directory


# -- checking an image ------------------------------------------------------------

def _inside(rootfs: str, path: str) -> str:
    """Resolve a path the way the container will see it (absolute symlinks stay inside)."""
    full = os.path.join(rootfs, path.lstrip("/"))
    for _ in range(10):
        if not os.path.islink(full):
            return full
        target = os.readlink(full)
        full = os.path.join(rootfs, target.lstrip("/")) if target.startswith("/") else \
            os.path.join(os.path.dirname(full), target)
    return full


def validate_rootfs(rootfs: str) -> str:
    """Check that a directory can be a container's root; return its absolute path."""
    if rootfs is None or not os.path.isdir(rootfs):
        raise LabError(f"rootfs {rootfs!r} is not a directory", "the path is wrong or the image is not built yet",
                       "build the default one with `minicontainer rootfs build` or give an existing directory")
    path = os.path.realpath(rootfs)
    if path == "/":
        raise LabError("rootfs is the host's / ", "a container on the host's own root isolates nothing "
                       "and its writes would change the host", "give an image directory, e.g. " + DEFAULT_ROOTFS)
    if any(c in path for c in ",:"):
        raise LabError(f"rootfs path {path!r} contains ',' or ':'", "overlayfs uses them to separate options",
                       "move the image to a path without them")
    sh = _inside(path, "/bin/sh")
    if not os.path.isfile(sh) or not os.access(sh, os.X_OK):
        raise LabError(f"rootfs {path} has no /bin/sh", "the image is incomplete or not a root filesystem",
                       "rebuild it with `minicontainer rootfs build " + path + "`")
    for mount_point in ("proc", "dev", "sys"):
        if os.path.islink(os.path.join(path, mount_point)):
            raise LabError(f"rootfs {path}: /{mount_point} is a symlink",
                           "mounting onto it would follow the link, possibly out of the container",
                           f"replace {path}/{mount_point} with an empty directory")
    return path


# -- inside the container's mount namespace ------------------------------------------

def make_mounts_private() -> None:
    """mount --make-rprivate /: stop our mounts propagating to the host, and theirs to us.

    On systemd hosts / is shared: without this, pivot_root fails with EINVAL and
    every mount we make would appear on the host too.
    """
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)


def mount_overlay(lower: str, upper: str, work: str, merged: str) -> None:
    """overlayfs: the image stays read-only below; writes land in this container's upper dir."""
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if not in_initial_user_namespace():
        # Here overlayfs cannot read trusted.* xattrs (they need CAP_SYS_ADMIN on the host): with userxattr it
        # keeps and reads its marks (opaque directories) as user.overlay.* instead.
        options += ",userxattr"
    try:
        kernel.mount("overlay", merged, "overlay", 0, options)
    except LabError:
        if filesystem_of(upper) != "overlay":
            raise
        # As inside a Docker container, or where / is itself an overlay: the kernel refuses (EINVAL).
        raise LabError(f"the container's upper dir {upper} is on an overlayfs, which cannot be the writable "
                       "layer of another overlay", "the state directory is on a filesystem that is itself an "
                       "overlay (a / made by a container engine or a live system)",
                       "point MINICONTAINER_STATE (or, rootless, XDG_RUNTIME_DIR) at a tmpfs or disk "
                       "filesystem, e.g. a directory under /run or /dev/shm") from None


def in_initial_user_namespace() -> bool:
    """Is this process in the host's own user namespace (uid_map "0 0 4294967295", every id as itself)?"""
    with open("/proc/self/uid_map") as f:
        return f.read().split() == ["0", "0", "4294967295"]


def filesystem_of(path: str) -> str:
    """The type of the filesystem mounted at, or nearest above, path (the last such mount wins)."""
    from . import inspect
    path = os.path.realpath(path)
    under = [m for m in inspect.mounts("self")
             if path == m.mount_point or path.startswith(m.mount_point.rstrip("/") + "/")]
    return max(reversed(under), key=lambda m: len(m.mount_point)).fstype if under else ""


def _mount_point(root: str, name: str) -> str:
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)  # in the overlay: created in the upper dir, not the image
    return path


def mount_proc(root: str) -> None:
    """A fresh procfs: it shows the processes of the mounting process's PID namespace only."""
    kernel.mount("proc", _mount_point(root, "proc"), "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)


DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


def mount_dev(root: str, use_bind: bool = False, shm_size: int | None = None) -> None:
    """A minimal /dev on tmpfs: six character devices, a private devpts, /dev/shm.

    Not the host's /dev: that would hand the container every disk and the kernel log.
    In a user namespace mknod is refused, so the host's nodes are bind-mounted instead.
    """
    dev = _mount_point(root, "dev")
    kernel.mount("tmpfs", dev, "tmpfs", kernel.MS_NOSUID, "mode=755,size=65536k")
    for name, (major, minor) in DEVICES.items():
        node = os.path.join(dev, name)
        if not use_bind:
            try:
                os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, minor))
                os.chmod(node, 0o666)  # mknod applies the umask
                continue
            except PermissionError:
                # A device program above ours (an engine's pod cgroup) may refuse mknod, where opening the
                # same standard device is allowed: bind the host's node instead, as runc does.
                pass
            except OSError as e:
                raise kernel.syscall_error("mknod", repr(node), e.errno) from None
        open(node, "w").close()
        kernel.mount(f"/dev/{name}", node, None, kernel.MS_BIND)
    kernel.mount("devpts", _mount_point(dev, "pts"), "devpts", kernel.MS_NOSUID | kernel.MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    kernel.mount("shm", _mount_point(dev, "shm"), "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
                 "mode=1777" + (f",size={shm_size}" if shm_size else ""))
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", os.path.join(dev, name))
    os.symlink("/proc/self/fd", os.path.join(dev, "fd"))


BIND_FLAGS = {"nosuid": kernel.MS_NOSUID, "nodev": kernel.MS_NODEV, "noexec": kernel.MS_NOEXEC}


def bind_mount(root: str, source: str, target: str, read_only: bool = True, options=()) -> None:
    """Make a host file or directory appear at target inside the container (a volume, a payload);
    options: any of nosuid, nodev, noexec, as an OCI config's mounts[] give them."""
    path = path_in(root, target)
    if os.path.isdir(source):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    kernel.mount(source, path, None, kernel.MS_BIND | kernel.MS_REC)
    flags = (kernel.MS_RDONLY if read_only else 0) | sum(BIND_FLAGS[o] for o in options if o in BIND_FLAGS)
    if flags:  # a bind mount takes its flags only from a second, remounting call
        kernel.remount_bind(path, flags)


TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks")


def mount_tmpfs(root: str, target: str, options=()) -> None:
    """A tmpfs at target (an engine's --tmpfs, or the writable /run of a --read-only container): options
    are mount flags (ro, nosuid, nodev, noexec) and tmpfs's own settings (size=, mode=, uid=, gid=).
    tmpcopyup (Podman's, for /run of a read-only root): the image's files there are copied in."""
    path = path_in(root, target)
    os.makedirs(path, exist_ok=True)
    flags = sum(BIND_FLAGS[o] for o in options if o in BIND_FLAGS)
    data = ",".join(o for o in options if o.split("=", 1)[0] in TMPFS_DATA)
    below = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # still reaches what the tmpfs covers
    try:
        kernel.mount("tmpfs", path, "tmpfs", flags, data or None)
        if "tmpcopyup" in options:
            shutil.copytree(f"/proc/self/fd/{below}", path, symlinks=True, dirs_exist_ok=True)
    finally:
        os.close(below)
    if "ro" in options:  # after the copy: a remount makes it read-only
        kernel.mount(None, path, None, kernel.MS_REMOUNT | kernel.MS_RDONLY | flags, data or None)


def chroot_into(new_root: str) -> None:
    """chroot(2): change only this process's idea of /. The old root stays mounted and reachable:
    a root process can climb out (see the lesson on the double-chroot escape)."""
    os.chroot(new_root)
    os.chdir("/")


def bind_console(root: str, pty_path: str) -> None:
    """/dev/console is the container's terminal: its pty comes from the host's devpts,
    which the container cannot see, so it is bind-mounted in (as runc does)."""
    console = os.path.join(root, "dev/console")
    open(console, "w").close()
    kernel.mount(pty_path, console, None, kernel.MS_BIND)


def mount_sys(root: str) -> None:
    """/sys read-only: a container may read device info but never change the host's settings."""
    target = _mount_point(root, "sys")
    flags = kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
    try:
        kernel.mount("sysfs", target, "sysfs", flags)
    except LabError:  # sysfs needs a network namespace we own; fall back to a read-only bind
        kernel.mount("/sys", target, None, kernel.MS_BIND | kernel.MS_REC)
        kernel.remount_bind(target, kernel.MS_RDONLY)


def mount_extra(root: str, kind: str, cgroup_namespace_of_its_own: bool = True) -> None:
    """Mounts an OCI bundle may ask for: POSIX message queues, and the container's own cgroups read-only at
    /sys/fs/cgroup (cgroup2 where the host is pure v2; one group per v1 hierarchy where it is not)."""
    flags = kernel.MS_NOSUID | kernel.MS_NOEXEC | kernel.MS_NODEV
    if kind == "mqueue":
        kernel.mount("mqueue", _mount_point(root, "dev/mqueue"), "mqueue", flags)
    elif "cgroup2" in open("/proc/filesystems").read() and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        target = os.path.join(root, "sys/fs/cgroup")
        if filesystem_of(target) == "cgroup2":
            # The host's cgroup2 is there already (a bundle bound the host's /sys in, as runc spec --rootless asks),
            # and the kernel refuses the same filesystem on the same mount point (EBUSY): cover it first.
            kernel.mount("tmpfs", target, "tmpfs", flags | kernel.MS_RDONLY, "mode=755")
        if in_initial_user_namespace() or cgroup_namespace_of_its_own:
            # With a cgroup namespace its root is the container's own group; without, the whole tree, read-only.
            kernel.mount("cgroup2", target, "cgroup2", flags | kernel.MS_RDONLY)
            return
        # In a user namespace the kernel mounts cgroup2 only for a cgroup namespace that namespace owns: without
        # one, bind the container's own group from the host's tree instead, read-only (as runc does).
        own = next(line.split("::", 1)[1].strip() for line in open("/proc/self/cgroup") if line.startswith("0::"))
        kernel.mount(os.path.join("/sys/fs/cgroup", own.lstrip("/")), target, None, kernel.MS_BIND)
        kernel.remount_bind(target, kernel.MS_RDONLY | flags)
    else:
        mount_cgroup_v1(root, flags)


def _v1_hierarchies() -> list[tuple[str, str, list[str]]]:
    """(mount point, mount root, options naming the hierarchy) of each cgroup v1 mount under /sys/fs/cgroup."""
    found = []
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if rfields[0] == "cgroup" and os.path.dirname(fields[4]) == "/sys/fs/cgroup":
            named = [o for o in rfields[2].split(",") if o not in ("rw", "ro") and "=" not in o or
                     o.startswith("name=")]
            found.append((fields[4], fields[3], named))
    return found


def mount_cgroup_v1(root: str, flags: int) -> None:
    """A v1 or hybrid host: a tmpfs at /sys/fs/cgroup and, per v1 hierarchy, only the container's own group,
    read-only (as runc mounts it). In its own cgroup namespace a fresh mount of the hierarchy is rooted at
    that group by the kernel; without one, the group's directory is bound in from the host's mount."""
    top = os.path.join(root, "sys/fs/cgroup")
    kernel.mount("tmpfs", top, "tmpfs", flags, "mode=755")
    own = {}  # the hierarchy's controllers (or name=) -> this process's group in it
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        if controllers:
            own[frozenset(controllers.split(","))] = path
    for mount_point, mount_root, named in _v1_hierarchies():
        key = next((k for k in own if k <= set(named)), None)
        if key is None:
            continue
        target = os.path.join(top, os.path.basename(mount_point))
        os.mkdir(target)
        if mount_root.startswith("/.."):  # we are in a cgroup namespace: the mount's root lies above ours
            kernel.mount("cgroup", target, "cgroup", flags | kernel.MS_RDONLY, ",".join(named))
            continue
        relative = os.path.relpath(own[key], mount_root)
        kernel.mount(os.path.normpath(os.path.join(mount_point, relative)), target, None, kernel.MS_BIND)
        kernel.remount_bind(target, kernel.MS_RDONLY | flags)
    for name in os.listdir("/sys/fs/cgroup"):  # the host's aliases of co-mounted ones (cpu -> cpu,cpuacct)
        link = os.path.join("/sys/fs/cgroup", name)
        if os.path.islink(link) and not os.path.lexists(os.path.join(top, name)):
            os.symlink(os.readlink(link), os.path.join(top, name))
    kernel.mount(None, top, None, kernel.MS_REMOUNT | kernel.MS_RDONLY | flags, "mode=755")


def pivot_into(new_root: str) -> None:
    """pivot_root into new_root, then detach the old root so no path leads back to the host.

    Unlike chroot, which only changes one process's view of /, pivot_root swaps
    the namespace's root mount; after the detach the host's tree is unreachable.
    """
    put_old = os.path.join(new_root, ".oldroot")
    os.makedirs(put_old, exist_ok=True)
    kernel.pivot_root(new_root, put_old)
    os.chdir("/")
    kernel.umount2("/.oldroot", kernel.MNT_DETACH)
    os.rmdir("/.oldroot")
