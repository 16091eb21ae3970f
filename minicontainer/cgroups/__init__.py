"""cgroups: one interface over cgroup v2 (primary) and v1 (fallback).

Which version drives each controller is read once from /proc/cgroups,
/proc/self/mountinfo and /proc/self/cgroup, never guessed from paths: a hybrid
host can have memory on v1 and nothing useful on v2, or cpu and cpuacct in two
separate v1 hierarchies. Callers never branch on the version; Cgroup does.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import LabError
from . import v1, v2
from .files import read_file, write_file
from .limits import parse_cpus, parse_pids, parse_size

__all__ = ["Cgroup", "Controller", "Layout", "delegated_to_us", "detect", "layout_from", "parse_cpus", "parse_pids",
           "parse_size", "remove_base_if_unused"]

# The controllers the lab uses, by their v2 names ("io" is "blkio" on v1). v2 has no devices
# controller: there "devices" stands for the cgroup a BPF device program attaches to (devices.py).
WANTED = ("memory", "cpu", "cpuacct", "pids", "freezer", "io", "devices")
NOT_IN_SUBTREE_CONTROL = ("devices",)  # nothing to enable on v2 for it
V1_NAMES = {"blkio": "io"}
BASE_NAME = "minicontainer"  # the directory that holds every container's cgroup
# `--systemd-cgroup` (an engine with systemd's cgroup manager): a slice:prefix:name cgroupsPath is a scope.
USE_SYSTEMD = False


@dataclass(frozen=True)
class Controller:
    name: str
    version: int      # 1 or 2
    mount: str        # where its hierarchy is mounted
    own_dir: str      # the calling process's cgroup in that hierarchy, as a directory


@dataclass
class Layout:
    controllers: dict[str, Controller]
    v2_mount: str | None = None
    v2_own_dir: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # controller -> why

    @property
    def mode(self) -> str:
        versions = {c.version for c in self.controllers.values()}
        if versions == {2}:
            return "unified (cgroup v2)"
        if self.v2_mount:
            return "hybrid (v1 controllers, a cgroup2 tree beside them)"
        return "legacy (cgroup v1 only)"

    def version_of(self, controller: str) -> int | None:
        c = self.controllers.get(controller)
        return c.version if c else None


def _mountinfo(text: str):
    """(mount point, mount root, fstype, super options) for each line of a /proc/PID/mountinfo."""
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        yield fields[4], fields[3], rfields[0], rfields[2] if len(rfields) > 2 else ""


def _own_dir(mount: str, mount_root: str, own: str) -> str:
    rel = os.path.relpath(own, mount_root) if own.startswith(mount_root) else own.lstrip("/")
    return os.path.normpath(os.path.join(mount, "" if rel == "." else rel))


@lru_cache(maxsize=1)
def detect() -> Layout:
    """Read which cgroup version holds each controller on this host, and where we are in each."""
    mounts = read_file("/proc/self/mountinfo")
    v2_root = next((point for point, _, fstype, _ in _mountinfo(mounts) if fstype == "cgroup2"), None)
    controllers = read_file(os.path.join(v2_root, "cgroup.controllers")) if v2_root else ""
    return layout_from(read_file("/proc/cgroups"), read_file("/proc/self/cgroup"), mounts, controllers)


def layout_from(proc_cgroups: str, self_cgroup: str, mountinfo: str, v2_controllers: str) -> Layout:
    """The Layout that these files describe: /proc/cgroups, /proc/self/cgroup, /proc/self/mountinfo and the
    first cgroup2 mount's cgroup.controllers. Pure: the unit tests give it recorded v1, v2 and hybrid hosts."""
    enabled = {}
    for line in proc_cgroups.splitlines()[1:]:
        name, hierarchy, _, on = line.split()[:4]
        enabled[V1_NAMES.get(name, name)] = (int(hierarchy), on == "1")
    own = {}  # controller set (frozenset) or "" for v2 -> path
    for line in self_cgroup.splitlines():
        _, ctrls, path = line.split(":", 2)
        own[frozenset(V1_NAMES.get(c, c) for c in ctrls.split(",")) if ctrls else ""] = path

    layout = Layout({})
    v1_mounts = []
    for mount, root, fstype, opts in _mountinfo(mountinfo):
        if fstype == "cgroup2" and layout.v2_mount is None and "" in own:
            layout.v2_mount, layout.v2_own_dir = mount, _own_dir(mount, root, own[""])
        elif fstype == "cgroup":
            ctrls = frozenset(V1_NAMES.get(o, o) for o in opts.split(",")) & set(WANTED)
            if ctrls:
                v1_mounts.append((mount, root, ctrls))

    v2_ctrls = set(v2_controllers.split()) if layout.v2_mount else set()
    for name in WANTED:
        hierarchy, on = enabled.get(name, (0, False))
        if not on and name in enabled:
            layout.unavailable[name] = "disabled on the kernel command line (cgroup_disable=)"
        elif hierarchy == 0 and name in v2_ctrls:
            layout.controllers[name] = Controller(name, 2, layout.v2_mount, layout.v2_own_dir)
        elif hierarchy != 0:
            for mount, root, ctrls in v1_mounts:
                key = next((k for k in own if k and name in k), None)
                if name in ctrls and key is not None:
                    layout.controllers[name] = Controller(name, 1, mount, _own_dir(mount, root, own[key]))
                    break
            else:
                layout.unavailable[name] = "its v1 hierarchy is not mounted"
        elif name == "freezer" and layout.v2_mount and v2_ctrls:
            continue  # v2 freezes through cgroup.freeze in every cgroup; no controller needed
        elif name == "devices" and layout.v2_mount:
            layout.controllers[name] = Controller(name, 2, layout.v2_mount, layout.v2_own_dir)
        elif name == "cpuacct" and "cpu" in v2_ctrls:
            continue  # v2's cpu controller reports usage itself (cpu.stat usage_usec)
        else:
            layout.unavailable[name] = "not in /proc/cgroups or not enabled in this cgroup tree"
    return layout


def remove_base_if_unused(base: str) -> bool:
    """rmdir the directory that holds containers' cgroups once none is left in it; whether it was removed.
    Never a parent the user named (MINICONTAINER_CGROUP_PARENT), only the runtime's own."""
    if os.path.basename(base) != BASE_NAME:
        return False
    try:
        os.rmdir(base)
        return True
    except OSError:
        return False  # other containers still use it (or it is already gone)


def base_dir(layout: Layout, controller: Controller) -> str:
    """The directory under which container cgroups go, for one controller's hierarchy.

    v1: below our own cgroup (no rule stops a cgroup with processes having children).
    v2: controllers can only be enabled for children of a cgroup with no processes
    of its own, and ours holds us. So containers go beside us: in our parent, the
    delegated subtree of a systemd service (Delegate=yes, its processes in a leaf),
    or at the root if we sit at the root. MINICONTAINER_CGROUP_PARENT overrides.
    """
    override = os.environ.get("MINICONTAINER_CGROUP_PARENT")
    if override:
        return os.path.join(controller.mount, override.strip("/"))
    if controller.version == 1 or controller.own_dir == controller.mount:
        return os.path.join(controller.own_dir, BASE_NAME)
    return os.path.join(os.path.dirname(controller.own_dir), BASE_NAME)


def delegated_to_us(layout: Layout | None = None) -> str | None:
    """Where an unprivileged user may make containers' cgroups: the v2 cgroup the host delegated to it, or None.

    Delegation is ownership: systemd's Delegate=yes (a unit with User=, or a user's user@.service) chowns the
    unit's cgroup directory, its cgroup.procs, cgroup.subtree_control and cgroup.threads to that user. The user
    may then mkdir below it, enable controllers there, and move its own processes between those cgroups. On
    pure cgroup v2 only: no host delegates v1 hierarchies to users, and the rule that keeps processes out of a
    cgroup whose children have controllers makes containers go beside us (base_dir), in our parent."""
    layout = layout or detect()
    if not layout.v2_mount or not layout.controllers or any(c.version != 2 for c in layout.controllers.values()):
        return None
    base = base_dir(layout, Controller("memory", 2, layout.v2_mount, layout.v2_own_dir))
    # A process moves between two cgroups only with write access to cgroup.procs of their common ancestor.
    delegated = os.path.commonpath([base, layout.v2_own_dir])
    if delegated == layout.v2_mount:
        return None  # the root of the tree is never delegated
    made_in = base if os.path.isdir(base) else os.path.dirname(base)  # where our mkdir happens
    writable = [os.path.join(delegated, "cgroup.procs"), made_in, os.path.join(made_in, "cgroup.subtree_control")]
    return delegated if all(os.access(p, os.W_OK) for p in writable) else None


class Cgroup:
    """A container's cgroup: one directory per hierarchy it spans (one on v2)."""

    def __init__(self, name: str, dirs: dict[str, str] | None = None, layout: Layout | None = None,
                 systemd_unit: str | None = None):
        self.name = name
        self.systemd_unit = systemd_unit  # a scope systemd made for it (cgroups/systemd.py), else None
        self.systemd_slice = ""
        self.left_for_scope: str | None = None  # our own cgroup, to return to once the container is forked
        self.layout = layout or detect()
        if dirs is None:
            dirs = {c.name: os.path.join(base_dir(self.layout, c), name)
                    for c in self.layout.controllers.values()}
        self.dirs = dirs  # controller -> directory
        self.engine_path = False  # at an OCI config's cgroupsPath (at_path), not below our base dir

    @classmethod
    def at_path(cls, name: str, path: str, layout: Layout | None = None) -> Cgroup:
        """An OCI config's linux.cgroupsPath: absolute, from each hierarchy's root (an engine's choice, e.g.
        Podman's /libpod_parent/libpod-ID); relative, below the runtime's own cgroup, as runc reads it."""
        layout = layout or detect()
        if ":" in path:
            if USE_SYSTEMD:
                return cls.at_systemd(name, path, layout)
            raise LabError(f"cgroupsPath {path!r} is in systemd's slice:prefix:name form", "that form asks systemd "
                           "for a scope, which the runtime does only when the engine passes --systemd-cgroup",
                           "configure the engine for cgroupfs (podman --cgroup-manager cgroupfs), or pass "
                           "--systemd-cgroup where systemd runs the machine")
        dirs = {}
        for controller in layout.controllers.values():
            top = controller.mount if path.startswith("/") else controller.own_dir
            directory = os.path.normpath(os.path.join(top, path.lstrip("/")))
            if directory == controller.mount or not directory.startswith(controller.mount + "/"):
                raise LabError(f"cgroupsPath {path!r} leads out of the cgroup tree", "it names the root or "
                               "climbs out with ..", "give a path below the hierarchy's root")
            dirs[controller.name] = directory
        made = cls(name, dirs=dirs, layout=layout)
        made.engine_path = True
        return made

    @classmethod
    def at_systemd(cls, name: str, path: str, layout: Layout | None = None) -> Cgroup:
        """A systemd scope (cgroups/systemd.py) for a slice:prefix:name cgroupsPath, on cgroup v2."""
        from . import systemd
        systemd.refuse_unless_available()
        layout = layout or detect()
        if not layout.v2_mount or any(c.version != 2 for c in layout.controllers.values()):
            raise LabError("--systemd-cgroup is supported on cgroup v2 alone", f"this host's cgroups are "
                           f"{layout.mode}", "boot with systemd.unified_cgroup_hierarchy=1, or use cgroupfs")
        slice_, unit = systemd.parse(path)
        directory = os.path.join(layout.v2_mount, systemd.slice_dir(slice_), unit)
        made = cls(name, dirs={c: directory for c in layout.controllers}, layout=layout, systemd_unit=unit)
        made.systemd_slice, made.engine_path = slice_, True
        return made

    # -- where things are -------------------------------------------------
    @property
    def directories(self) -> list[str]:
        return sorted(set(self.dirs.values()))

    def _dir(self, controller: str, purpose: str) -> str:
        if controller not in self.dirs:
            why = self.layout.unavailable.get(controller, "not found on this host")
            raise LabError(f"cannot {purpose}: no {controller} cgroup controller ({why})",
                           "the kernel or the host's cgroup set-up does not provide it here",
                           "run `minicontainer doctor`; on a v2 host, enable it in the parent's "
                           "cgroup.subtree_control (delegate it)")
        return self.dirs[controller]

    def _module(self, controller: str):
        return v2 if self.layout.version_of(controller) == 2 else v1

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.directories)

    # -- lifecycle ----------------------------------------------------------
    def create(self) -> Cgroup:
        """mkdir the cgroup in each hierarchy; on v2 first enable the controllers down to it. A systemd
        scope instead: systemd makes it with us inside (we leave once the container is forked: leave_scope)."""
        if self.systemd_unit:
            from . import systemd
            with open("/proc/self/cgroup") as f:  # where we are now (the layout may have been read elsewhere)
                own = next(line.strip()[3:] for line in f if line.startswith("0::"))
            self.left_for_scope = os.path.join(self.layout.v2_mount, own.lstrip("/"))
            systemd.start_scope(self.systemd_unit, self.systemd_slice, os.getpid(), self.directories[0])
            return self
        v2_ctrls = [n for n, c in self.layout.controllers.items()
                    if c.version == 2 and n in self.dirs and n not in NOT_IN_SUBTREE_CONTROL]
        created = []
        for _attempt in range(5):
            try:
                for directory in self.directories:
                    if directory in created:
                        continue
                    base = os.path.dirname(directory)
                    os.makedirs(base, exist_ok=True)
                    if v2_ctrls and base.startswith(self.layout.v2_mount or "\0"):
                        self._delegate_down_to(base, v2_ctrls)
                    os.mkdir(directory)
                    created.append(directory)
                return self
            except FileExistsError:
                for directory in created:  # ours; the one that was there is not
                    os.rmdir(directory)
                raise LabError(f"cgroup {self.name} already exists", "a container with this name runs, "
                               "or a crashed run left its cgroup", "run `minicontainer cleanup`") from None
            except FileNotFoundError:
                continue  # another container's cleanup removed the shared base dir just now; retry
            except OSError as e:
                self.remove()
                raise LabError(f"cannot create cgroup {self.name}: {os.strerror(e.errno)}",
                               "not root, or cgroupfs is mounted read-only here",
                               "run as root on a host with writable cgroupfs (`minicontainer doctor`)") from None
        raise LabError(f"cannot create cgroup {self.name}", "its parent kept disappearing", "try again")

    def leave_scope(self) -> None:
        """Back to our own cgroup, out of the scope systemd made with us in it (its only process then is the
        container's, forked inside)."""
        if self.left_for_scope:
            write_file(os.path.join(self.left_for_scope, "cgroup.procs"), str(os.getpid()))
            self.left_for_scope = None

    def _delegate_down_to(self, base: str, controllers: list[str]) -> None:
        """An engine's cgroupsPath may sit several levels below the last cgroup that has the controllers:
        enable them in each cgroup from there down to `base`, as runc does. Our own default path keeps the
        one-level check, with its advice on delegation."""
        if not self.engine_path:
            return self._delegate(base, controllers)
        chain = [base]
        while chain[-1] != self.layout.v2_mount and not set(controllers) <= v2.available(chain[-1]):
            chain.append(os.path.dirname(chain[-1]))
        for directory in reversed(chain):
            v2.enable_controllers(directory, controllers)

    def _delegate(self, base: str, controllers: list[str]) -> None:
        parent = os.path.dirname(base)
        missing = [c for c in controllers if c not in v2.available(parent)]
        if missing:
            raise LabError(f"controller(s) {', '.join(missing)} not available in {parent}",
                           "they are not enabled in the cgroup.subtree_control of the cgroups above",
                           "delegate them (systemd: Delegate=yes on the lab's service) or set "
                           "MINICONTAINER_CGROUP_PARENT to a delegated cgroup")
        try:
            v2.enable_controllers(parent, controllers)
        except LabError as e:
            e.fix = (f"{parent} holds processes; run them in a leaf cgroup below it (as a systemd "
                     "service with Delegate=yes does) or set MINICONTAINER_CGROUP_PARENT")
            raise
        v2.enable_controllers(base, controllers)

    def add(self, pid: int | str) -> None:
        """Move a process in: write its PID to cgroup.procs in every hierarchy ("0" = the writer)."""
        for directory in self.directories:
            write_file(os.path.join(directory, "cgroup.procs"), str(pid))

    def procs(self) -> list[int]:
        for directory in self.directories:
            try:
                return [int(p) for p in read_file(os.path.join(directory, "cgroup.procs")).split()]
            except FileNotFoundError:
                continue
        return []

    def set_limits(self, memory=None, cpus=None, pids=None, swap: bool | int = False) -> None:
        """Apply limits given as text or numbers ("64M", 0.5, 32); None leaves a limit alone. A systemd scope
        gets them as its unit's properties first (cgroups/systemd.py), then in its files like any cgroup."""
        if self.systemd_unit:
            from . import systemd
            pid_limit = parse_pids(pids) if pids is not None else None
            systemd.set_limits(self.systemd_unit, None if memory is None else parse_size(memory), swap,
                               None if cpus is None else parse_cpus(cpus),
                               pid_limit if isinstance(pid_limit, int) else None)
        if memory is not None:
            self._module("memory").set_memory(self._dir("memory", "limit memory"), parse_size(memory), swap)
        if cpus is not None:
            self._module("cpu").set_cpu(self._dir("cpu", "limit CPU"), parse_cpus(cpus))
        if pids is not None:
            self._module("pids").set_pids(self._dir("pids", "limit processes"), parse_pids(pids))

    def restrict_devices(self, rules=None) -> None:
        """Refuse every device but the standard few (devices.ALLOWED), or those `rules` allow (an OCI
        config's): v1's devices controller, or a BPF program attached to the v2 cgroup."""
        from .. import devices  # devices.py uses cgroups.files: imported here, not at the top
        if "devices" not in self.dirs:
            why = self.layout.unavailable.get("devices", "no devices controller and no cgroup2 tree")
            raise LabError(f"this host has no device cgroup ({why})",
                           "neither cgroup v1's devices controller nor a cgroup2 tree to attach a BPF device "
                           "program to is mounted",
                           "mount one (the lab VM has cgroup v2), or run without it: "
                           "Security(devices=False) and drop mknod from the capabilities")
        rules = devices.ALLOWED if rules is None else rules
        if self.layout.version_of("devices") == 2:
            devices.attach_program(self.dirs["devices"], rules)
        else:
            devices.write_v1_rules(self.dirs["devices"], rules)

    def set_cpu_shares(self, shares: int) -> None:
        """A relative weight against the sibling cgroups (OCI's cpu.shares, v1's number, 2 to 262144): v2's
        cpu.weight (1 to 10000) gets it converted as runc converts it."""
        if self.layout.version_of("cpu") == 2:
            write_file(os.path.join(self._dir("cpu", "weigh CPU"), "cpu.weight"),
                       str(1 + ((shares - 2) * 9999) // 262142))
        else:
            write_file(os.path.join(self._dir("cpu", "weigh CPU"), "cpu.shares"), str(shares))

    def set_io(self, device: str, **rates) -> None:
        """Throttle a block device ("MAJ:MIN") with rbps/wbps/riops/wiops."""
        self._module("io").set_io(self._dir("io", "limit io"), device, **rates)

    def stats(self) -> dict:
        """Memory (current, peak, limit, OOM kills), CPU (usage, throttling, limit), pids; None if absent."""
        result = {k: None for k in ("memory_current", "memory_peak", "memory_limit", "oom_kills", "cpu_usage_usec",
                                    "cpu_periods", "cpu_throttled", "cpu_throttled_usec", "cpu_limit",
                                    "pids_current", "pids_limit", "pids_refused")}
        readers = [("memory", self._module("memory").memory_stats), ("cpu", self._module("cpu").cpu_stats),
                   ("pids", self._module("pids").pids_stats), ("cpuacct", v1.cpuacct_stats)]
        for controller, reader in readers:
            if controller not in self.dirs:
                continue
            try:
                result.update(reader(self.dirs[controller]))
            except FileNotFoundError:
                if not os.path.isdir(self.dirs[controller]):
                    raise  # the cgroup is gone
                # a root cgroup has no limit files (memory.max, pids.max): leave those None
        result["frozen"] = self.frozen()
        return result

    # -- freezing and killing -------------------------------------------------
    def _freezer(self) -> tuple:
        v2_dir = next((d for n, d in self.dirs.items() if self.layout.version_of(n) == 2), None)
        if v2_dir:
            return v2, v2_dir
        return v1, self._dir("freezer", "freeze")

    def frozen(self) -> bool | None:
        try:
            module, directory = self._freezer()
            return module.frozen(directory)
        except (LabError, FileNotFoundError):
            return None

    def freeze(self) -> None:
        module, directory = self._freezer()
        module.freeze(directory, True)

    def thaw(self) -> None:
        module, directory = self._freezer()
        module.freeze(directory, False)

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup."""
        if not self.exists():
            return
        v2_dir = next((d for n, d in self.dirs.items() if self.layout.version_of(n) == 2), None)
        if v2_dir:
            v2.kill_all(v2_dir)
        else:
            freezer = self.dirs.get("freezer")
            v1.kill_all(self.directories[0], freezer)

    def remove(self, timeout: float = 3.0) -> list[str]:
        """Kill what is left, rmdir each directory (the kernel never removes a cgroup by itself),
        then the shared base directory if no other container uses it. Returns what was removed."""
        removed = []
        deadline = time.monotonic() + timeout
        if self.systemd_unit:
            from . import systemd
            self.kill_all()  # now, not after StopUnit's SIGTERM and its grace
            systemd.stop_scope(self.systemd_unit)
            while self.exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # systemd removes a stopped scope's cgroup itself
            if not self.exists():
                return [f"{self.directories[0]} (systemd scope {self.systemd_unit})"]
        for directory in self.directories:
            while os.path.isdir(directory):
                try:
                    os.rmdir(directory)
                    removed.append(directory)
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise LabError(f"cannot remove cgroup {directory}: {os.strerror(e.errno)}",
                                       "processes are still in it", "run `minicontainer cleanup`") from None
                    self.kill_all()
                    time.sleep(0.02)
            remove_base_if_unused(os.path.dirname(directory))
        return removed
