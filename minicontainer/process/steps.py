"""The start sequence: one ordered list of named steps. This list is what a container is.

A container is an ordinary process that, before it execs its command, is put in a cgroup (what
it may use), in new namespaces (what it can see), on a root filesystem of its own (which files),
and stripped of privileges (what it may do). Each step below is one of those moves, made by one
of three processes:

    helper        the supervisor, a fresh single-threaded interpreter (process/helper.py)
    intermediate  only with a user namespace: owns it, so that PID 1's namespaces belong to it
                  (process/intermediate.py)
    init          the container's PID 1 until it execs the command (process/init.py)

The helper walks the list: it runs its own steps, and sends every other step by name to the
process at the other end of its channel, which runs it and answers. `run -v`, Result.steps, the
staged container (stage.py) and docs/architecture.md all come from this list.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import kernel, namespaces, rootfs, security, terminal
from ..cgroups.limits import format_size
from ..errors import LabError
from ..spec import ContainerSpec
from . import mcinit, messages

HELPER, INTERMEDIATE, INIT = "helper", "intermediate", "init"
UNSHARED_BY_INIT = ("mnt", "uts", "ipc", "net", "cgroup")  # pid and time apply to children: see "pid namespace"


@dataclass
class Context:
    """What the steps share in the process that runs them."""
    spec: ContainerSpec
    paths: dict = field(default_factory=dict)   # the state dir; with a rootfs, the overlay's upper, work, merged
    cgroup: object = None                       # the helper's Cgroup
    channel: object = None                      # init and intermediate: their channel to the helper
    in_user_ns: bool = False
    done: list[str] = field(default_factory=list)
    detached: bool = False                      # to outlive its parent: OCI create's PID 1, exec --detach
    gate_fd: int | None = None                  # OCI create: an O_PATH fd of the exec gate (state.GATE), and the
                                                # container outlives its creator (detached); None: supervised
    hands_over: bool = False                    # its helper hands it to the caller's shared helper once it runs
    born_in_cgroup: bool = False                # forked into its cgroup (clone3 CLONE_INTO_CGROUP): no join to do
    parent_supervises: bool = False             # born a child of the shared helper that will supervise it
    stays_dumpable: bool = False                # a notebook's staged rootless container of an unprivileged user:
                                                # PID 1 stays dumpable until exec (helper.py, security.py)

    @property
    def dies_with_parent(self) -> bool:
        """PR_SET_PDEATHSIG towards the parent that forked it? Not when it is to outlive that parent: OCI create
        (the engine's monitor reaps it), exec --detach, or a helper that hands it over (process/shared.py) to a
        shared helper that is not its parent (born a sibling of the helper, it is: then it dies with that one)."""
        return not self.detached and (not self.hands_over or self.parent_supervises)

    @property
    def root(self) -> str:
        """Where the container's / is assembled (the overlay's merged dir); "/" once it is the root."""
        return "/" if {"pivot_root", "chroot"} & set(self.done) else self.paths.get("merged", "")


@dataclass(frozen=True)
class Step:
    name: str
    process: str                                 # HELPER, INTERMEDIATE or INIT
    what: str                                    # what it does, in a sentence
    wanted: Callable[[ContainerSpec], bool]      # does this spec ask for it?
    when: str                                    # the same, in words
    run: Callable[[Context], None] | None        # None: the helper's machinery does it (forks, exec)
    detail: Callable[[Context], str] = lambda ctx: ""
    after: tuple[str, ...] = ()                  # must have run first, also when run out of order
    movable: bool = False                        # may a stage run it out of order (see MOVABLE)?


def _always(spec: ContainerSpec) -> bool:
    return True


def _user(spec: ContainerSpec) -> bool:
    """A user namespace, of its own or (a rootless pod) joined."""
    return "user" in spec.namespaces or "user" in spec.join


def _own_user(spec: ContainerSpec) -> bool:
    return "user" in spec.namespaces


def has_cgroup(spec: ContainerSpec) -> bool:
    """Root's containers have one; a rootless one where the host delegated a cgroup to its user."""
    return not spec.rootless or bool(spec.rootless_cgroup)



def _rootfs(spec: ContainerSpec) -> bool:
    return spec.rootfs is not None


def _unshared(kind: str) -> Callable[[ContainerSpec], bool]:
    return lambda spec: kind in spec.namespaces and kind not in spec.join


# -- helper steps -------------------------------------------------------------------------

def create_cgroup(ctx: Context) -> None:
    ctx.cgroup.create()


def set_limits(ctx: Context) -> None:
    spec = ctx.spec
    ctx.cgroup.set_limits(spec.memory, spec.cpus, spec.pids, spec.swap)
    if spec.cpu_shares is not None:
        ctx.cgroup.set_cpu_shares(spec.cpu_shares)


def restrict_devices(ctx: Context) -> None:
    from ..devices import DeviceRule
    rules = ctx.spec.device_rules
    ctx.cgroup.restrict_devices(None if rules is None else [DeviceRule(*r[:4], "asked for by the config", *r[4:])
                                                            for r in rules])


def write_id_maps(ctx: Context) -> None:
    """/proc/PID/uid_map and gid_map of the intermediate: "inside outside count", written from outside.

    Root may map any range. An unprivileged user may map only its own uid and gid, and must
    first deny setgroups (else dropping a group could grant access a deny-ACL forbade).
    """
    pid = ctx.paths["intermediate_pid"]
    if os.geteuid() != 0:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    uid_line, gid_line = id_map_lines(ctx.spec.uid_map, os.geteuid(), os.getegid())
    for name, line in (("uid_map", uid_line), ("gid_map", gid_line)):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(line + "\n")


def id_map_lines(uid_map: str, euid: int, egid: int) -> tuple[str, str]:
    """The uid_map and gid_map lines for a spec's uid_map: the same range for both as root; an
    unprivileged user maps its own gid where its uid is."""
    inside, _, count = uid_map.split()
    return uid_map.strip(), uid_map.strip() if euid == 0 else f"{inside} {egid} {count}"


def unshare_for_children(ctx: Context) -> None:
    """PID and time namespaces apply to the children made afterwards: the next fork is PID 1 (of a new PID
    namespace; or, joining another container's, a further process of that one)."""
    kinds = [k for k in ("pid", "time") if k in ctx.spec.namespaces and k not in ctx.spec.join]
    namespaces.unshare(kinds)
    if "pid" in ctx.spec.join:
        where = ctx.spec.join["pid"]
        path = where if isinstance(where, str) else f"/proc/{where}/ns/pid"
        namespaces.enter([("pid", os.open(path, os.O_RDONLY | os.O_CLOEXEC))])
    if "time" in kinds and ctx.spec.time_offset:
        # Offsets can be written only before the namespace's first process exists.
        with _own_proc_file("timens_offsets") as f:
            f.write(f"monotonic {ctx.spec.time_offset} 0\nboottime {ctx.spec.time_offset} 0\n")


@contextlib.contextmanager
def _dumpable():
    """Dumpable for the block only (as it was after). A non-dumpable process's /proc files belong to the host's
    root, so an unprivileged user's runtime (rootless) cannot open its own, nor can anything it starts."""
    was_dumpable = kernel.is_dumpable()
    kernel.prctl(kernel.PR_SET_DUMPABLE, 1)
    try:
        yield
    finally:
        if not was_dumpable:
            kernel.prctl(kernel.PR_SET_DUMPABLE, 0)


@contextlib.contextmanager
def _own_proc_file(name: str):
    """Open /proc/self/NAME for writing, dumpable for the open only: no process of the container exists yet."""
    with _dumpable():
        f = open(f"/proc/self/{name}", "w")
    with f:
        yield f


# -- init (or intermediate) steps -----------------------------------------------------------

def join_cgroup(ctx: Context) -> None:
    """Write "0" (the writer) to cgroup.procs: this process and everything it forks count there."""
    if ctx.born_in_cgroup:
        return  # the helper's clone3 put us there at birth
    for directory in ctx.paths["cgroup_dirs"]:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write("0")


def _how_joined(ctx: Context) -> str:
    if ctx.born_in_cgroup:
        return "nothing to write: it was born there (the helper forked it with clone3 and CLONE_INTO_CGROUP)"
    return ""


def unshare_user(ctx: Context) -> None:
    namespaces.unshare(["user"])


def join_user_namespace(ctx: Context) -> None:
    """setns into the user namespace of the container whose namespaces this one joins (rootless): its owner is
    our uid, so we hold every right in it, and in it over the namespaces it owns."""
    where = ctx.spec.join["user"]
    namespaces.enter([("user", os.open(where if isinstance(where, str) else f"/proc/{where}/ns/user",
                                       os.O_RDONLY | os.O_CLOEXEC))])


def become_root_in_user_ns(ctx: Context) -> None:
    """After the maps exist, uid 0 inside is a real uid: take it before making PID 1."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    rearm_after_credentials_change(ctx.spec, die_with_parent=ctx.dies_with_parent, stays_dumpable=ctx.stays_dumpable)


def rearm_after_credentials_change(spec: ContainerSpec, die_with_parent: bool = True, stays_dumpable: bool = False
                                   ) -> None:
    """A change of uid or gid clears PR_SET_PDEATHSIG and resets dumpable to fs.suid_dumpable (which
    may be 1): set both again, so the helper's death still ends us and the container still cannot
    reach into us. die_with_parent=False where the process is to outlive its parent (OCI create, exec -d)."""
    if die_with_parent:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, 9)  # SIGKILL
    if spec.security.non_dumpable and not stays_dumpable:
        security.make_non_dumpable()


def unshare_kind(kind: str) -> Callable[[Context], None]:
    def unshare(ctx: Context) -> None:
        namespaces.unshare([kind])
    unshare.__name__ = f"unshare_{kind}"
    return unshare


def join_namespaces(ctx: Context) -> None:
    """setns into another container's namespaces (as the containers of a pod share net, ipc, uts)."""
    for kind, where in ctx.spec.join.items():
        if kind in ("pid", "user"):
            continue  # entered before the fork: a PID namespace applies to children, the user one holds the rights
        if isinstance(where, str):  # a namespace's path: /proc/PID/ns/KIND, or a bind of it (/run/netns/NAME)
            namespaces.enter([(kind, os.open(where, os.O_RDONLY | os.O_CLOEXEC))])
        else:
            namespaces.enter(namespaces.open_namespaces(where, [kind]))


def mounts_private(ctx: Context) -> None:
    rootfs.make_mounts_private()


def set_hostname(ctx: Context) -> None:
    kernel.sethostname(ctx.spec.hostname)


def loopback_up(ctx: Context) -> None:
    kernel.set_link_up("lo")


def ask_helper(ctx: Context, request, answer_type):
    """From init: ask the helper for what only the host side can do, and wait for its answer."""
    ctx.channel.send(request)
    reply = ctx.channel.recv()
    if isinstance(reply, messages.Error):
        raise reply.exception()
    if not isinstance(reply, answer_type):
        os._exit(1)  # the helper is gone: nobody would finish this container
    return reply


def connect_network(ctx: Context) -> None:
    """Ask the helper for a veth end in this namespace (it creates the pair on the host), then
    configure it from inside."""
    from .. import network  # pyroute2, only for containers on the bridge
    reply = ask_helper(ctx, messages.NeedNetwork(), messages.Network)
    ctx.paths["lease"] = reply.lease
    network.configure_inside(reply.lease)


def connect_user_network(ctx: Context) -> None:
    """Ask the helper to start slirp4netns on this network namespace; it configures tap0 itself."""
    # slirp4netns opens our /proc/PID/ns files from outside, which a non-dumpable process's owner cannot
    # (they are root's): dumpable for that only, before any process of the container exists to look at us.
    with _dumpable():
        reply = ask_helper(ctx, messages.NeedNetwork(), messages.Network)
    ctx.paths["lease"] = reply.lease


def mount_overlay(ctx: Context) -> None:
    rootfs.mount_overlay(ctx.spec.rootfs, ctx.paths["upper"], ctx.paths["work"], ctx.root)


def put_init_first(ctx: Context) -> None:
    """With init=True: the built init, read-only at /dev/minicontainer-init, runs the command as its child.

    In /dev, the tmpfs the runtime has just made: the image's directories may belong to a uid a user
    namespace does not map, where nothing can be created.

    Only this process's copy of the spec changes: the helper, ps and the caller keep the command as given.
    """
    path = ctx.paths.get("init_program") or mcinit.binary()
    if ctx.spec.rootfs is not None:
        rootfs.bind_mount(ctx.root, path, mcinit.TARGET, read_only=True)
        path = mcinit.TARGET
    ctx.spec.command = [path, "--", *ctx.spec.command]
    # Blocked from now on, and so across execve, until the init waits for them: one that came between
    # its execve and its own sigprocmask would find a PID 1 without a handler, and be dropped.
    signal.pthread_sigmask(signal.SIG_BLOCK, mcinit.FORWARDED)


def bind_mounts(ctx: Context) -> None:
    for source, target, read_only in ctx.spec.binds:
        rootfs.bind_mount(ctx.root, source, target, read_only, ctx.spec.bind_options.get(target, ()))


def mount_proc(ctx: Context) -> None:
    rootfs.mount_proc(ctx.root)


def mount_dev(ctx: Context) -> None:
    rootfs.mount_dev(ctx.root, use_bind=ctx.in_user_ns, shm_size=ctx.spec.security.tmpfs_size)


def mount_tmp(ctx: Context) -> None:
    security.mount_tmp(ctx.root, ctx.spec.security.tmpfs_size)


def console_to_engine(ctx: Context) -> None:
    """The container's terminal, made in its own devpts: the slave becomes its stdio, the master goes to
    the engine through the console socket."""
    master, slave, ctx.paths["pty"] = terminal.open_pty_in(os.path.join(ctx.root, "dev", "pts"))
    terminal.send_console(ctx.spec.console_fd, master)
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def bind_console(ctx: Context) -> None:
    # ttyname(3) finds only a pty of the host's devpts; ours is the container's.
    rootfs.bind_console(ctx.root, ctx.paths.get("pty") or os.ttyname(0))


def mount_sys(ctx: Context) -> None:
    rootfs.mount_sys(ctx.root)


def extra_mounts(ctx: Context) -> None:
    own_cgroup_namespace = "cgroup" in ctx.spec.namespaces and "cgroup" not in ctx.spec.join
    for kind in ctx.spec.extra_mounts:
        rootfs.mount_extra(ctx.root, kind, own_cgroup_namespace)


def run_create_hooks(ctx: Context) -> None:
    """The helper runs createRuntime (and prestart) on the host; then createContainer here, inside."""
    from .. import hooks
    reply = ask_helper(ctx, messages.NeedHooks(), messages.HookState)
    ctx.paths["hook_state"] = reply.state
    hooks.run("createContainer", ctx.spec.hooks, reply.state)


def mount_tmpfs(ctx: Context) -> None:
    for target, options in ctx.spec.tmpfs.items():
        rootfs.mount_tmpfs(ctx.root, target, options)


def set_sysctls(ctx: Context) -> None:
    security.set_sysctls(ctx.spec.sysctl)


def set_umask(ctx: Context) -> None:
    os.umask(ctx.spec.umask)


def adjust_oom_score(ctx: Context) -> None:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(ctx.spec.oom_score_adj))


def mask_paths(ctx: Context) -> None:
    security.mask_paths(ctx.root, ctx.spec.masked)
    security.read_only_paths(ctx.root, ctx.spec.read_only_paths)


def pivot_root(ctx: Context) -> None:
    rootfs.pivot_into(ctx.root)


def chroot(ctx: Context) -> None:
    rootfs.chroot_into(ctx.root)


def read_only_root(ctx: Context) -> None:
    kernel.remount_bind("/", kernel.MS_RDONLY)


def fresh_proc(ctx: Context) -> None:
    kernel.mount("proc", "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)


def change_dir(ctx: Context) -> None:
    os.chdir(ctx.spec.cwd)


def controlling_terminal(ctx: Context) -> None:
    terminal.take_controlling_terminal(0)


def set_rlimits(ctx: Context) -> None:
    for name, (soft, hard) in ctx.spec.rlimits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))


def drop_bounding_set(ctx: Context) -> None:
    security.drop_bounding_set(ctx.spec.security.kept)


def apparmor_profile(ctx: Context) -> None:
    security.apply_apparmor_profile(ctx.spec.security.apparmor_profile)


def load_seccomp(ctx: Context) -> None:
    security.load_seccomp(ctx.spec.security)


def switch_user(ctx: Context) -> None:
    security.switch_user(ctx.spec.user, ctx.spec.groups)
    rearm_after_credentials_change(ctx.spec, die_with_parent=ctx.dies_with_parent, stays_dumpable=ctx.stays_dumpable)


def set_capabilities(ctx: Context) -> None:
    security.set_capabilities(ctx.spec.security.kept)


def no_new_privs(ctx: Context) -> None:
    security.set_no_new_privs()


def close_fds(ctx: Context) -> None:
    security.close_inherited_fds(ctx.spec.security.keep_fds)


# -- what -v prints -------------------------------------------------------------------------

def _limits(ctx: Context) -> str:
    s = ctx.spec
    given = (("memory", s.memory and format_size(s.memory)), ("cpus", s.cpus), ("pids", s.pids))
    return ", ".join(f"{k}={v}" for k, v in given if v)


def _devices(ctx: Context) -> str:
    v2 = ctx.cgroup is not None and ctx.cgroup.layout.version_of("devices") == 2
    how = "a BPF program attached to the cgroup" if v2 else "devices.deny a, then devices.allow"
    from .. import devices
    opened = [r.name.split(":")[0].removeprefix("/dev/") for r in devices.ALLOWED if r.access != "m"]
    return f"only {', '.join(opened)} may be opened ({how})"


def _security(ctx: Context) -> str:
    sec = ctx.spec.security
    return ", ".join(sec.capabilities) if sec.capabilities is not None else "all"


def _seccomp(ctx: Context) -> str:
    sec = ctx.spec.security
    if sec.oci_seccomp is not None:
        return f"the config's own profile: {len(sec.oci_seccomp.get('syscalls', []))} rules, default " \
               f"{sec.oci_seccomp['defaultAction']}"
    return sec.seccomp + ("; namespaces and mounts refused" if sec.refuses_namespaces else "")


STEPS: list[Step] = [
    Step("cgroup", HELPER, "make the container's cgroup, one directory per hierarchy (on v2, enable the "
         "controllers down to it)", has_cgroup, "unless rootless with no cgroup delegated", create_cgroup,
         lambda ctx: ", ".join(ctx.cgroup.directories) if ctx.cgroup else ""),
    Step("limits", HELPER, "write its limits: memory.max, cpu.max, pids.max (v1: their v1 names)",
         lambda s: has_cgroup(s) and bool(s.memory or s.cpus or s.pids or s.cpu_shares), "with memory, cpus, pids "
         "or cpu shares", set_limits,
         _limits, after=("cgroup",)),
    # Rootless, never: attaching a BPF program needs CAP_SYS_ADMIN on the host, and none is needed (a user
    # namespace's mknod of a device is refused, its mounts are nodev).
    Step("devices", HELPER, "the device cgroup: which device nodes may be opened", lambda s: not s.rootless and
         s.security.devices, "unless rootless or switched off", restrict_devices, _devices, after=("cgroup",)),
    Step("fork intermediate", HELPER, "fork the process that will own the user namespace", _user,
         "with a user namespace", None),
    Step("join cgroup", INTERMEDIATE, "move itself into the container's group: it and all it forks are counted "
         "there",
         lambda s: _user(s) and has_cgroup(s), "with a user namespace and a cgroup", join_cgroup, _how_joined,
         after=("fork intermediate", "cgroup")),
    Step("user namespace", INTERMEDIATE, "unshare(CLONE_NEWUSER): uids and capabilities of its own", _own_user,
         "with a user namespace of its own", unshare_user, after=("fork intermediate",)),
    Step("join user namespace", INTERMEDIATE, "setns into the user namespace of the container it joins (rootless: "
         "only there are rights over that one's namespaces)", lambda s: "user" in s.join, "rootless, when joining",
         join_user_namespace, lambda ctx: f"of {ctx.spec.join['user']}", after=("fork intermediate", "join cgroup")),
    Step("id maps", HELPER, "write uid_map and gid_map from outside: which host uids the inside ones are",
         _own_user, "with a user namespace of its own", write_id_maps, lambda ctx: ctx.spec.uid_map,
         after=("user namespace",)),
    Step("root in the user namespace", INTERMEDIATE, "setresuid(0) and setresgid(0) now that 0 is mapped",
         _user, "with a user namespace", become_root_in_user_ns, after=("id maps", "join cgroup",
                                                                         "join user namespace")),
    Step("pid namespace", HELPER, "unshare(CLONE_NEWPID, CLONE_NEWTIME): they apply to the next child",
         lambda s: not _user(s) and bool({"pid", "time"} & (set(s.namespaces) | set(s.join))),
         "with pid or time (new or joined), no user",
         unshare_for_children, lambda ctx: kernel.flag_names(namespaces.flags_for(
             [k for k in ("pid", "time") if k in ctx.spec.namespaces]))),
    Step("pid namespace", INTERMEDIATE, "the same, inside the user namespace, so that it owns them",
         lambda s: _user(s) and bool({"pid", "time"} & (set(s.namespaces) | set(s.join))),
         "with pid or time (new or joined) and user",
         unshare_for_children, after=("root in the user namespace",)),
    Step("fork PID 1", HELPER, "fork the container's first process: PID 1 of the new PID namespace",
         lambda s: not _user(s), "without a user namespace", None, after=("cgroup", "devices", "pid namespace")),
    Step("fork PID 1", INTERMEDIATE, "fork the container's first process, inside the user namespace",
         _user, "with a user namespace", None, after=("root in the user namespace", "pid namespace")),
    Step("join cgroup", INIT, "move itself into the container's group: it and all it forks are counted "
         "there",
         lambda s: not _user(s) and has_cgroup(s), "without a user namespace, with a cgroup", join_cgroup,
         _how_joined, after=("fork PID 1", "cgroup")),
    *[Step(f"unshare {kind}", INIT, f"unshare({kernel.flag_names(namespaces.flags_for([kind]))}): its own "
           f"{namespaces.KINDS[kind].isolates}", _unshared(kind), f"with {kind}", unshare_kind(kind),
           after=("fork PID 1", "join cgroup"), movable=True) for kind in UNSHARED_BY_INIT],
    Step("join namespaces", INIT, "setns into another container's namespaces, as a pod's containers share them",
         lambda s: bool(s.join), "when joining", join_namespaces,
         lambda ctx: ", ".join(f"{k} of {p}" for k, p in ctx.spec.join.items()), after=("fork PID 1",),
         movable=True),
    Step("mounts private", INIT, "mount --make-rprivate /: no mount propagates to or from the host",
         lambda s: "mnt" in s.namespaces, "with mnt", mounts_private, after=("unshare mnt",)),
    Step("hostname", INIT, "sethostname in its own UTS namespace", lambda s: bool(s.hostname), "with a hostname",
         set_hostname, lambda ctx: ctx.spec.hostname, after=("unshare uts",), movable=True),
    Step("network", INIT, "the helper makes a veth pair and moves one end in; init names it eth0, gives it its "
         "address and a default route", lambda s: s.network == "bridge", "with network='bridge'",
         connect_network, after=("unshare net",)),
    Step("user-mode network", INIT, "the helper starts slirp4netns, which opens tap0 in this namespace, configures "
         "it and relays its packets through the host's sockets (no root needed)",
         lambda s: s.network == "slirp4netns", "with network='slirp4netns'", connect_user_network,
         after=("unshare net",)),
    Step("loopback up", INIT, "ip link set lo up in its own network namespace: 127.0.0.1 works, nothing else",
         lambda s: s.network == "loopback", "with network='loopback'", loopback_up, after=("unshare net",)),
    Step("sysctl", INIT, "write the namespaced sysctls asked for (net.*, ipc's kernel.*) into its own namespaces",
         lambda s: bool(s.sysctl), "with sysctl", set_sysctls, lambda ctx: ", ".join(ctx.spec.sysctl),
         after=("unshare net", "unshare ipc", "unshare uts", "join namespaces")),
    Step("overlay", INIT, "mount the image read-only below and the container's own upper dir above",
         _rootfs, "with a rootfs", mount_overlay,
         lambda ctx: f"lower={ctx.spec.rootfs} upper={ctx.paths.get('upper')}", after=("mounts private",)),
    Step("proc", INIT, "a fresh procfs: the processes of its own PID namespace", _rootfs, "with a rootfs",
         mount_proc, after=("overlay",)),
    Step("dev", INIT, "a tmpfs /dev with null zero full random urandom tty, its own devpts, /dev/shm",
         _rootfs, "with a rootfs", mount_dev, after=("overlay",)),
    Step("init program", INIT, "bind the small init in, read-only, and make it PID 1: it runs the command as its "
         "child, passes signals on, reaps orphans", lambda s: s.init, "with init", put_init_first,
         lambda ctx: f"{ctx.spec.command[0]} runs {ctx.spec.command[2]}", after=("dev",)),
    Step("tmp", INIT, "a size-limited tmpfs on /tmp (and /dev/shm)", lambda s: _rootfs(s) and
         bool(s.security.tmpfs_size), "with a rootfs and tmpfs_size", mount_tmp,
         lambda ctx: format_size(ctx.spec.security.tmpfs_size), after=("dev",)),
    Step("pty", INIT, "a pty from its own devpts: the slave its stdio, the master to the engine's console socket",
         lambda s: _rootfs(s) and s.console_fd is not None, "with a console socket (OCI)", console_to_engine,
         after=("dev",)),
    Step("console", INIT, "bind its pty on /dev/console", lambda s: _rootfs(s) and s.tty, "with a terminal",
         bind_console, after=("dev",)),
    Step("sys", INIT, "sysfs read-only", _rootfs, "with a rootfs", mount_sys, after=("overlay",)),
    Step("tmpfs mounts", INIT, "a tmpfs at each place asked for (an engine's --tmpfs; /run of a read-only root)",
         lambda s: _rootfs(s) and bool(s.tmpfs), "with tmpfs", mount_tmpfs, lambda ctx: ", ".join(ctx.spec.tmpfs),
         after=("overlay", "dev", "sys")),
    Step("binds", INIT, "bind-mount host files or directories in (volumes, payloads)",
         lambda s: _rootfs(s) and bool(s.binds), "with binds", bind_mounts,
         lambda ctx: ", ".join(f"{s} -> {t}" for s, t, _ in ctx.spec.binds), after=("overlay", "dev", "sys")),
    # After the binds, as a config lists them: a bind of the host's /sys (runc spec --rootless) must not cover these.
    Step("extra mounts", INIT, "mqueue on /dev/mqueue; its own cgroups read-only on /sys/fs/cgroup",
         lambda s: _rootfs(s) and bool(s.extra_mounts), "when asked", extra_mounts,
         lambda ctx: ", ".join(ctx.spec.extra_mounts), after=("overlay", "binds")),
    Step("create hooks", INIT, "the config's createRuntime hooks on the host, then its createContainer hooks in "
         "here: the namespaces exist, / has not moved yet", lambda s: bool(s.hooks), "with hooks (OCI create)",
         run_create_hooks, lambda ctx: ", ".join(k for k in ctx.spec.hooks if ctx.spec.hooks[k])),
    Step("mask paths", INIT, "/proc/kcore, /proc/keys... under /dev/null; /proc/sys and others read-only",
         lambda s: _rootfs(s) and s.security.masked_paths, "with a rootfs and masked_paths", mask_paths,
         after=("proc", "dev", "sys")),
    Step("pivot_root", INIT, "make the overlay the root of its mount namespace and detach the old root: no path "
         "leads back to the host", lambda s: _rootfs(s) and s.root_switch == "pivot_root", "with a rootfs",
         pivot_root, after=("overlay",)),
    Step("chroot", INIT, "change only this process's /: the old root stays mounted and reachable",
         lambda s: _rootfs(s) and s.root_switch == "chroot", "with root_switch='chroot'", chroot,
         after=("overlay",)),
    Step("read-only root", INIT, "mount -o remount,ro /", lambda s: _rootfs(s) and s.read_only_root,
         "with read_only_root", read_only_root, after=("pivot_root", "chroot")),
    Step("fresh proc", INIT, "a fresh procfs over the host's /proc, in its own mount namespace",
         lambda s: not _rootfs(s) and s.fresh_proc and {"mnt", "pid"} <= set(s.namespaces),
         "without a rootfs, with mnt and pid", fresh_proc, after=("mounts private",)),
    Step("cwd", INIT, "chdir to the working directory", _always, "always", change_dir,
         lambda ctx: ctx.spec.cwd),
    Step("umask", INIT, "umask: the mode bits new files lose", lambda s: s.umask is not None, "with umask",
         set_umask, lambda ctx: f"{ctx.spec.umask:04o}"),
    Step("oom score", INIT, "oom_score_adj: how readily the OOM killer picks it", lambda s: s.oom_score_adj is not None,
         "with oomScoreAdj", adjust_oom_score, lambda ctx: str(ctx.spec.oom_score_adj)),
    Step("terminal", INIT, "a new session with its pty as the controlling terminal", lambda s: s.tty,
         "with a terminal", controlling_terminal),
    Step("rlimits", INIT, "setrlimit", lambda s: bool(s.rlimits), "with rlimits", set_rlimits,
         lambda ctx: ", ".join(ctx.spec.rlimits), after=("fork PID 1",), movable=True),
    Step("apparmor", INIT, "ask AppArmor to confine the command in a profile (attr/exec): it takes effect at execve",
         lambda s: bool(s.security.apparmor_profile), "with an AppArmor profile (OCI)", apparmor_profile,
         lambda ctx: ctx.spec.security.apparmor_profile),
    Step("bounding set", INIT, "drop from the bounding set every capability not kept: no setuid or file-capability "
         "program can add it back (the capabilities step empties the inheritable and ambient sets)",
         lambda s: s.security.capabilities is not None, "unless every capability is kept", drop_bounding_set,
         _security),
    Step("seccomp", INIT, "load the system call filters", lambda s: bool(s.security.seccomp) or
         s.security.oci_seccomp is not None, "unless off",
         load_seccomp, _seccomp),
    Step("user", INIT, "setgroups, setgid, setuid to the user asked for", lambda s: bool(s.user) or
         s.groups is not None, "with a user or groups", switch_user,
         lambda ctx: " ".join(filter(None, (ctx.spec.user, ctx.spec.groups is not None and
                                             f"groups {','.join(map(str, ctx.spec.groups))}")))),
    Step("capabilities", INIT, "capset: effective and permitted the kept list, inheritable and ambient empty",
         _always, "always", set_capabilities, _security),
    Step("no_new_privs", INIT, "PR_SET_NO_NEW_PRIVS: execve never adds privileges again",
         lambda s: s.security.no_new_privs, "unless off", no_new_privs),
    Step("close fds", INIT, "close every inherited fd but 0-2", lambda s: s.security.close_fds, "unless off",
         close_fds),
    Step("exec", INIT, "execve the command: the container's PID 1 is now the command", _always, "always", None,
         lambda ctx: " ".join(ctx.spec.command)),
]

# The defences `minicontainer exec` applies to the command it runs in a container, in this order.
PROCESS_DEFENCES = ("apparmor", "bounding set", "seccomp", "user", "capabilities", "no_new_privs", "close fds")


def plan(spec: ContainerSpec) -> list[Step]:
    """The steps this spec asks for, in order (names are unique within a plan)."""
    return [step for step in STEPS if step.wanted(spec)]


def find(spec: ContainerSpec, name: str) -> Step:
    steps = {s.name: s for s in plan(spec)}
    if name not in steps:
        known = ", ".join(steps)
        raise LabError(f"no step {name!r} for this container", "the name is wrong, or this spec does not ask "
                       "for that step", f"the steps, in order: {known}")
    return steps[name]


def report(step: Step, ctx: Context) -> str:
    """What a step tells as it is done: its detail for this container, or else what it does."""
    return step.detail(ctx) or step.what


def run_and_report(ctx: Context, name: str, process: str) -> bool:
    """In init or the intermediate: run the step the helper named, and answer StepDone or Error; whether
    it ran."""
    try:
        step = find(ctx.spec, name)
        run_step(step, ctx)
    except LabError as e:
        ctx.channel.send_error(e)
        return False
    ctx.channel.send(messages.StepDone(step.name, report(step, ctx), process))
    return True


def run_step(step: Step, ctx: Context) -> None:
    """Run one step here; a failure comes back as a LabError naming the step."""
    try:
        step.run(ctx)
    except LabError as e:
        e.step = e.step or step.name
        raise
    except OSError as e:
        raise LabError(f"{e.strerror or e} ({e.filename or ''})".replace(" ()", ""),
                       f"the kernel refused a call of step {step.name!r}", "see the step's function in "
                       "minicontainer/process/steps.py", step=step.name) from None
    ctx.done.append(step.name)


def table() -> str:
    """The start sequence as a Markdown table (docs/architecture.md)."""
    rows = ["| step | process | when | what |", "|---|---|---|---|"]
    rows += [f"| {s.name} | {s.process} | {s.when} | {s.what} |" for s in STEPS]
    return "\n".join(rows)
