"""The container's init: the forked child that becomes PID 1 and execs the command.

It runs between fork and exec in a single-threaded helper, so it may unshare and
mount freely. Each step reports itself to the helper; a failure travels back as a
LabError carrying the step's name. The steps, in order:

    join cgroup -> unshare -> private mounts -> hostname -> overlay -> binds -> /proc
    -> /dev -> /sys -> pivot_root -> exec

The command is exec'd directly as PID 1 rather than under a reaping init: the
learner's own process is what `ps` shows as PID 1, and no extra interpreter sits in
the container's memory and pids accounting. The cost, which lessons show: PID 1
ignores signals it has no handler for (so stop ends with a kill of the cgroup),
and orphans are reaped only if the command waits for them (busybox sh does).
"""

from __future__ import annotations

import os
import resource
import signal

from .. import kernel, namespaces, rootfs, security
from ..errors import LabError
from ..spec import ContainerSpec
from ..terminal import take_controlling_terminal
from .channel import Channel

# unshare()d here, in PID 1; pid and time are made by the parent (they apply to children).
OWN_KINDS = ("mnt", "uts", "ipc", "net", "cgroup")


def die_with_parent(parent_pid: int) -> None:
    """PR_SET_PDEATHSIG: SIGKILL us when the parent (thread) that forked us exits."""
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Did the parent die before the prctl took effect? In a new PID namespace the
    # parent is outside it and getppid() says 0; there the channel tells (see step).
    if os.getppid() not in (parent_pid, 0):
        os._exit(1)


def join_cgroup(cgroup_dirs: list[str]) -> None:
    """Write "0" (= the writer) to cgroup.procs: this process and all it forks are now counted there."""
    for directory in cgroup_dirs:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write("0")


def setup_and_exec(spec: ContainerSpec, paths: dict, channel: Channel, in_user_ns: bool = False) -> None:
    """Everything PID 1 does before exec. Never returns: exec succeeds or a LabError rises."""
    def step(name: str, detail: str = "") -> None:
        if not channel.send(type="step", name=name, detail=detail):
            os._exit(1)  # the helper is gone: nobody would supervise this container

    kinds = [k for k in OWN_KINDS if k in spec.namespaces and k not in spec.join]
    step("unshare", kernel.flag_names(namespaces.flags_for(kinds)))
    namespaces.unshare(kinds)
    for kind, pid in spec.join.items():  # setns: share another container's namespace instead of a new one
        step("setns", f"join the {kind} namespace of process {pid}")
        namespaces.enter(namespaces.open_namespaces(pid, [kind]))
    if "mnt" in spec.namespaces:
        step("mounts private", "mount --make-rprivate /")
        rootfs.make_mounts_private()
    if spec.hostname:
        step("hostname", spec.hostname)
        kernel.sethostname(spec.hostname)
    if spec.network == "bridge":
        step("network", "asking the helper for a veth end in this namespace")
        channel.send(type="need_network")
        reply = channel.recv()
        if reply is None or reply.get("type") != "network":
            os._exit(1)  # the helper failed (it reports why) or is gone
        from .. import network
        step("network", f"eth0 {reply['lease']['address']}/{reply['lease']['prefix']}, "
                        f"default route via {reply['lease']['gateway']}")
        network.configure_inside(reply["lease"])
    if spec.rootfs:
        merged = paths["merged"]
        step("overlay", f"lower={spec.rootfs} upper={paths['upper']}")
        rootfs.mount_overlay(spec.rootfs, paths["upper"], paths["work"], merged)
        for source, target, read_only in spec.binds:
            step("bind", f"{source} -> {target}" + (" (read-only)" if read_only else ""))
            rootfs.bind_mount(merged, source, target, read_only)
        step("proc", "fresh procfs for the new PID namespace")
        rootfs.mount_proc(merged)
        step("dev", "tmpfs with null zero full random urandom tty, devpts, shm")
        rootfs.mount_dev(merged, use_bind=in_user_ns, shm_size=spec.security.tmpfs_size)
        if spec.security.tmpfs_size:
            step("tmp", f"tmpfs of {spec.security.tmpfs_size} on /tmp and /dev/shm")
            security.mount_tmp(merged, spec.security.tmpfs_size)
        if spec.tty:
            step("console", "the pty bind-mounted on /dev/console, so tools can name their terminal")
            rootfs.bind_console(merged, os.ttyname(0))
        step("sys", "sysfs read-only")
        rootfs.mount_sys(merged)
        for kind in spec.extra_mounts:
            step(kind, "mqueue on /dev/mqueue" if kind == "mqueue" else "cgroup2 read-only on /sys/fs/cgroup")
            rootfs.mount_extra(merged, kind)
        if spec.security.masked_paths:
            step("mask", "/proc/kcore, /proc/keys... under /dev/null; /proc/sys, /proc/sysrq-trigger read-only")
            security.mask_paths(merged)
            security.read_only_paths(merged)
        if spec.root_switch == "chroot":
            step("chroot", f"{merged} becomes / for this process only; the old root stays mounted")
            rootfs.chroot_into(merged)
        else:
            step("pivot_root", f"{merged} becomes /, old root detached")
            rootfs.pivot_into(merged)
        if spec.read_only_root:
            step("read-only root", "mount -o remount,ro /")
            kernel.mount(None, "/", None, kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY)
    elif spec.fresh_proc and "mnt" in spec.namespaces and "pid" in spec.namespaces:
        step("proc", "fresh procfs over /proc (in our private mount namespace)")
        kernel.mount("proc", "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
    os.chdir(spec.cwd)
    if spec.tty:
        step("terminal", "new session, the pty as controlling terminal")
        take_controlling_terminal(0)
    for name, (soft, hard) in spec.rlimits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    sec = spec.security
    step("security", f"capabilities {', '.join(sec.capabilities) if sec.capabilities is not None else 'all'} "
                     "(inheritable and ambient empty); "
                     f"seccomp {sec.seccomp or 'off'}"
                     + ("; namespaces and mounts refused" if sec.seccomp and sec.refuses_namespaces else "")
                     + f"; no_new_privs {'on' if sec.no_new_privs else 'off'}"
                     + (f"; user {spec.user}" if spec.user else ""))
    step("exec", " ".join(spec.command))
    security.apply_process_defences(sec, spec.user)
    try:
        os.execvpe(spec.command[0], spec.command, spec.env)
    except FileNotFoundError:
        raise LabError(f"command {spec.command[0]!r} not found in the container",
                       f"no such program on the container's PATH ({spec.env.get('PATH', '')})",
                       "check the name; busybox's applets are in /bin and /sbin") from None
    except PermissionError:
        raise LabError(f"command {spec.command[0]!r} is not executable", "it lacks the execute bit",
                       "chmod +x it in the image") from None


def run(spec: ContainerSpec, paths: dict, channel: Channel, parent_pid: int, cgroup_dirs: list[str],
        in_user_ns: bool = False) -> None:
    """Child-side entry after fork: report any failure, then exit (exec replaces us on success)."""
    try:
        die_with_parent(parent_pid)
        if cgroup_dirs:
            if not channel.send(type="step", name="cgroup", detail="joined " + ", ".join(cgroup_dirs)):
                os._exit(1)
            join_cgroup(cgroup_dirs)
        setup_and_exec(spec, paths, channel, in_user_ns)
    except LabError as e:
        channel.send_error(e)
    except BaseException as e:  # an unexpected failure still reaches the learner with its step
        channel.send_error(LabError(f"container init failed: {type(e).__name__}: {e}",
                                    "an unexpected error in minicontainer", "please report it"))
    os._exit(127)
