"""The helper: a fresh, single-threaded interpreter that creates and supervises one container.

    caller (CLI or Jupyter kernel)  --spawns-->  helper  --forks-->  init (PID 1)  --exec-->  command

The caller never unshares or forks itself (a Jupyter kernel is multithreaded).
The helper runs in its own session, so a kernel restart that kills the kernel's
process group spares it, and it owns the clean-up:

- container processes: when the caller's channel hits EOF (the caller died) the
  helper kills the cgroup; if the helper itself dies, the init gets
  PR_SET_PDEATHSIG SIGKILL, and when PID 1 dies the kernel kills the rest of its
  PID namespace;
- the cgroup: removed (rmdir) by the helper once the init is reaped;
- mounts and the network namespace: they exist only in the container's own mount
  and network namespaces, which the kernel frees with the last process in them;
- the state dir (overlay upper/work): removed by the helper; what a killed helper
  leaves, `minicontainer cleanup` removes.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from dataclasses import asdict

from .. import namespaces, seccomp, state
from ..cgroups import Cgroup
from ..errors import LabError
from ..spec import ContainerSpec
from . import init
from .channel import Channel

CHILD_KINDS = ("pid", "time")  # unshare() applies these to children made afterwards


def prepare_state(spec: ContainerSpec) -> dict:
    """The container's state dir and, with a rootfs, its overlay directories."""
    os.makedirs(state.STATE_ROOT, exist_ok=True)
    top = state.container_dir(spec.name)
    try:
        os.mkdir(top, 0o711)  # traversable: a user-namespaced root (an unprivileged uid) mounts from here
    except FileExistsError:
        raise LabError(f"a container named {spec.name!r} already exists",
                       "it is running, or a crashed run left its state", "pick another name, or run "
                       "`minicontainer cleanup`") from None
    paths = {"dir": top}
    if spec.rootfs:
        for sub in ("upper", "work", "merged"):
            paths[sub] = os.path.join(top, sub)
            os.mkdir(paths[sub], 0o755)
    return paths


def unshare_for_children(spec: ContainerSpec) -> None:
    """PID and time namespaces: the next fork lands in them (as PID 1, with the clock offsets)."""
    kinds = [k for k in CHILD_KINDS if k in spec.namespaces]
    if kinds:
        namespaces.unshare(kinds)
    if "time" in kinds and spec.time_offset:
        # Offsets can be written only before the namespace's first process exists.
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(f"monotonic {spec.time_offset} 0\nboottime {spec.time_offset} 0\n")


def write_id_maps(pid: int, uid_map: str) -> None:
    """/proc/PID/uid_map and gid_map: "inside outside count", written by the parent.

    Root may map any range. An unprivileged user may map only its own uid and gid, and
    must first deny setgroups (else dropping a group could grant access a deny-ACL forbade).
    """
    inside, outside, count = uid_map.split()
    gid_map = uid_map if os.geteuid() == 0 else f"{inside} {os.getegid()} {count}"
    if os.geteuid() != 0:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for name, mapping in (("uid_map", uid_map), ("gid_map", gid_map)):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(mapping.strip() + "\n")


def chown_for_user_ns(paths: dict, uid_map: str) -> None:
    """The overlay copies up with the mounter's ids: the mapped root must own upper and work."""
    outside = int(uid_map.split()[1])
    for key in ("upper", "work", "merged"):
        if key in paths:
            os.chown(paths[key], outside, outside)


def start_init(spec: ContainerSpec, paths: dict, cgroup: Cgroup, child: Channel) -> int:
    """Fork the container's init; with a user namespace, through an intermediate process.

    Without a user namespace: the helper unshares pid/time, forks, and the child is PID 1.
    With one, the PID namespace must be owned by the new user namespace (or the
    container could not mount its /proc), so an intermediate child joins the
    cgroup, unshares the user namespace, waits for the helper to write its id maps,
    then unshares pid/time and forks PID 1. Returns the helper's direct child.
    """
    helper_pid = os.getpid()
    if "user" not in spec.namespaces:
        ours = {k: os.open(f"/proc/self/ns/{k}", os.O_RDONLY) for k in CHILD_KINDS if k in spec.namespaces}
        unshare_for_children(spec)
        pid = os.fork()
        if pid == 0:
            init.run(spec, paths, child, helper_pid, cgroup.directories)
        # Back to our own PID (and time) namespace for any later child: once the container's
        # PID 1 exits, the kernel refuses every fork into its namespace (ENOMEM), and the
        # helper's own tools (nft) must not run inside the container's PID namespace anyway.
        namespaces.enter(list(ours.items()))
        return pid
    pid = os.fork()
    if pid == 0:
        try:
            init.die_with_parent(helper_pid)
            init.join_cgroup(cgroup.directories)
            namespaces.unshare(["user"])
            child.send(type="need_maps")
            if child.recv() is None:
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            unshare_for_children(spec)
            me = os.getpid()
            grandchild = os.fork()
            if grandchild == 0:
                init.run(spec, paths, child, me, [], in_user_ns=True)
            child.send(type="init_pid", pid=grandchild)
            child.close()
            _, status = os.waitpid(grandchild, 0)
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                os.kill(os.getpid(), -code)  # mirror the signal so the helper sees what PID 1 saw
            os._exit(code)
        except LabError as e:
            child.send_error(e)
        except BaseException as e:
            child.send_error(LabError(f"user namespace set-up failed: {e}", "the kernel refused the namespace or "
                                      "its id maps (unprivileged user namespaces restricted?)",
                                      "run `minicontainer doctor`"))
        os._exit(127)
    return pid


class Helper:
    def __init__(self, caller: Channel):
        self.caller = caller
        self.cgroup: Cgroup | None = None
        self.spec: ContainerSpec | None = None
        self.child_pid = 0   # the helper's direct child (init, or the intermediate)
        self.init_pid = 0    # PID 1 of the container, as the host sees it
        self.stop_deadline: float | None = None
        self.networked = False

    def step(self, name: str, detail: str = "") -> None:
        self.caller.send(type="step", name=name, detail=detail)

    def create(self, spec: ContainerSpec) -> None:
        self.spec = spec
        if not spec.rootless:
            self.step("cgroup", f"create {spec.name} (memory={spec.memory}, cpus={spec.cpus}, pids={spec.pids})")
        paths = prepare_state(spec)
        self.cgroup = Cgroup(spec.name, dirs={} if spec.rootless else None)
        state.write_state(spec.name, {"name": spec.name, "helper_pid": os.getpid(),
                                      "helper_start": state.start_time(os.getpid()),
                                      "cgroup": self.cgroup.dirs, "paths": paths, "spec": spec.to_dict(),
                                      "status": "creating"})
        if spec.rootless:
            # An unprivileged user may not make cgroups unless a subtree was delegated to it.
            limits = [f"{k}={v}" for k, v in (("memory", spec.memory), ("cpus", spec.cpus), ("pids", spec.pids)) if v]
            self.step("cgroup", "rootless: no cgroup, so no limits are applied"
                      + (f" (asked for {', '.join(limits)}: NOT applied)" if limits else "")
                      + "; no device cgroup either, nor one needed: mounts made in a user namespace are nodev, "
                        "and mknod of a device is refused there")
        else:
            self.cgroup.create()
            self.cgroup.set_limits(spec.memory, spec.cpus, spec.pids, spec.swap)
            if spec.security.devices:
                how = ("a BPF program on the cgroup" if self.cgroup.layout.version_of("devices") == 2
                       else "devices.deny a, devices.allow")
                self.step("devices", f"only null, zero, full, random, urandom, tty, ptmx, pts ({how})")
                self.cgroup.restrict_devices()
        if "user" in spec.namespaces and not spec.rootless:
            chown_for_user_ns(paths, spec.uid_map)
        if spec.security.seccomp:
            seccomp.libseccomp()  # loaded here, so the init has it after pivot_root
        parent_end, child_end = Channel.pair()
        self.child_pid = start_init(spec, paths, self.cgroup, child_end)
        child_end.close()
        self.init_pid = self.child_pid
        error, last_step, wants_network = None, "", False
        while (message := parent_end.recv()) is not None:  # EOF: init exec'd, or died
            if message["type"] == "need_network":
                wants_network = True
            if message["type"] == "step":
                last_step = message["name"]
                self.step(message["name"], message.get("detail", ""))
            elif message["type"] == "need_maps":
                write_id_maps(self.child_pid, spec.uid_map)
                parent_end.send(type="maps_written")
            elif message["type"] == "init_pid":
                self.init_pid = message["pid"]
            elif message["type"] == "error":
                error = LabError.from_dict(message["error"])
            if wants_network and (self.init_pid != self.child_pid or "user" not in spec.namespaces):
                wants_network = False  # with a user namespace, wait until the init's PID is known
                try:
                    lease = self.connect_network()
                except LabError as e:
                    error = e
                    parent_end.send(type="error")
                else:
                    parent_end.send(type="network", lease=lease)
        parent_end.close()
        if error is None and last_step != "exec":  # killed before it got to exec
            error = LabError("the container's init died before exec",
                             "it was killed, most likely by the memory limit (too small for start-up)",
                             "raise the memory limit (32M or more)")
        if error:
            raise error
        try:
            init_start = state.start_time(self.init_pid)
        except FileNotFoundError:
            init_start = None  # a quick command already exited (and was reaped by its parent)
        state.write_state(spec.name, {**state.read_state(spec.name), "init_pid": self.init_pid,
                                      "init_start": init_start, "status": "running"})
        self.caller.send(type="started", pid=self.init_pid, name=spec.name, cgroup=self.cgroup.dirs)

    def connect_network(self) -> dict:
        from .. import network
        self.step("network", f"veth pair on bridge {network.BRIDGE}, one end into the container")
        self.networked = True
        return asdict(network.connect(self.spec.name, self.init_pid, self.spec.publish))

    def supervise(self) -> int:
        """Relay the caller's requests until the container's init exits; return its exit code."""
        pidfd = os.pidfd_open(self.child_pid)
        caller_open = True
        while True:
            timeout = None if self.stop_deadline is None else max(0.0, self.stop_deadline - time.monotonic())
            if caller_open and self.caller.ready():  # a message already buffered
                ready = [self.caller.sock]
            else:
                watched = [pidfd] + ([self.caller.sock] if caller_open else [])
                ready = select.select(watched, [], [], timeout)[0]
            if pidfd in ready:
                _, status = os.waitpid(self.child_pid, 0)
                os.close(pidfd)
                return os.waitstatus_to_exitcode(status)
            if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                self.cgroup.kill_all()  # grace period over
                self.stop_deadline = None
            if caller_open and self.caller.sock in ready:
                message = self.caller.recv()
                if message is None:  # the caller is gone: nobody will ever stop this container
                    caller_open = False
                    self.cgroup.kill_all()
                elif message["type"] == "signal":
                    self._signal(message["signal"])
                elif message["type"] == "stop":
                    self._signal(signal.SIGTERM)
                    self.stop_deadline = time.monotonic() + float(message.get("grace", 5))

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.init_pid, sig)
        except ProcessLookupError:
            pass

    def final_stats(self) -> dict:
        """The cgroup's counters as the container ends (OOM kills, peak memory...), before rmdir loses them."""
        try:
            return self.cgroup.stats()
        except (OSError, LabError):
            return {}

    def cleanup(self) -> None:
        """Kill what is left, reap our child, remove the cgroup and the state dir."""
        if self.cgroup is not None:
            self.cgroup.kill_all()
        if self.child_pid:
            try:
                os.waitpid(self.child_pid, 0)
            except ChildProcessError:
                pass
        recorded = self.spec is not None and (state.read_state(self.spec.name) or {}).get("network")
        if self.networked or recorded:  # connected by us, or step by step from a notebook
            from .. import network
            try:
                network.disconnect(self.spec.name)
            except LabError as e:
                print(f"minicontainer: {e}", file=sys.stderr)
        if self.cgroup is not None:
            try:
                self.cgroup.remove()
            except LabError as e:
                print(f"minicontainer: {e}", file=sys.stderr)
        if self.spec is not None:
            state.remove_dir(self.spec.name)


def main() -> None:
    caller = Channel(socket.socket(fileno=int(sys.argv[1])))
    helper = Helper(caller)
    # Asked to go away (not by the caller, who uses the channel): take the container down too.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: helper.cgroup and helper.cgroup.kill_all())
    code = 127
    try:
        request = caller.recv()
        if request is None:
            return
        helper.create(ContainerSpec.from_dict(request["spec"]))
        code = helper.supervise()
        final = helper.final_stats()
        helper.cleanup()
        caller.send(type="exited", code=code, stats=final)
    except LabError as e:
        helper.cleanup()
        caller.send_error(e)
    except BaseException as e:
        helper.cleanup()
        caller.send_error(LabError(f"the helper failed: {type(e).__name__}: {e}", "an unexpected error",
                                   "please report it with the output of `minicontainer doctor`"))
    sys.exit(0 if code >= 0 else 1)


if __name__ == "__main__":
    main()
