"""The start sequence, with no lifetime policy: one container's steps walked in order, in the process that
runs them and in the ones it forks.

    caller  <--reports--  Sequence (here)  --forks-->  [intermediate -->] init  --exec-->  command

A Sequence prepares the state dir and cgroup, runs its own steps of the step list (steps.py) and names
each other one to the process at the other end of its child channel, which answers. It knows how to undo
what it made (cleanup), but not when: that is the policy of whoever drives it.

- `minicontainer create` (lifecycle.py) drives one in the CLI's own process, detached: every step but
  exec, then PID 1 waits at the exec gate and the Sequence lets go; the container outlives it.
- The helper (helper.py) drives one for a notebook or `run`: a Supervisor (supervisor.py) that dies with
  its caller, and a StageServer (stage_server.py) that runs the steps one by one on request.

Who removes what: container processes die with PID 1 (the kernel kills the rest of its PID namespace) or
with the cgroup's kill; the cgroup (and a v2 BPF device program) goes with Cgroup.remove; mounts and the
network namespace exist only in the container's own namespaces, which the kernel frees with the last
process in them; the state dir goes with state.remove_dir.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys
from dataclasses import asdict

from .. import kernel, namespaces, seccomp, state
from ..cgroups import Cgroup
from ..cgroups.limits import format_size
from ..errors import LabError
from ..spec import ContainerSpec
from . import init, intermediate, mcinit, messages, steps
from .channel import Channel
from .messages import unexpected


def prepare_state(spec: ContainerSpec) -> dict:
    """The container's state dir and, with a rootfs, its overlay directories."""
    os.makedirs(state.root(), exist_ok=True)
    top = state.container_dir(spec.name)
    try:
        os.mkdir(top, 0o711)  # traversable: a user-namespaced root (an unprivileged uid) mounts from here
    except FileExistsError:
        raise LabError(f"a container named {spec.name!r} already exists",
                       "it is running, or a crashed run left its state", "pick another name, or run "
                       "`minicontainer cleanup`") from None
    paths = {"dir": top}
    if spec.init:
        # Found here, on the host side: inside a user namespace, where init is root, the binary's place would be
        # worked out as root's (/var/cache), not the rootless user's own cache, where the caller built it.
        paths["init_program"] = mcinit.binary()
    if spec.rootfs:
        for sub in ("upper", "work", "merged"):
            paths[sub] = os.path.join(top, sub)
            os.mkdir(paths[sub], 0o755)
    return paths


def make_gate(directory: str, uid_map: str | None) -> int:
    """The exec gate: a FIFO that init opens for writing, blocking until `start` opens it for reading.
    Returns an O_PATH fd of it for init, which after pivot_root cannot reach it by its path. Writable by
    others (0622, as runc's), so that init may open it after it has become an unprivileged user."""
    path = os.path.join(directory, state.GATE)
    os.mkfifo(path, 0o600)
    os.chmod(path, 0o622)  # past the umask
    if uid_map:
        outside = int(uid_map.split()[1])
        os.chown(path, outside, outside)
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def chown_for_user_ns(paths: dict, uid_map: str) -> None:
    """The overlay copies up with the mounter's ids: the mapped root must own upper and work, and reach
    them: every directory above must let others through."""
    outside = int(uid_map.split()[1])
    above = os.path.dirname(paths["dir"])
    while above != "/":
        info = os.stat(above)
        if not info.st_mode & 0o001 and info.st_uid != outside:
            raise LabError(f"the container's root user (uid {outside} on the host) cannot reach {paths['dir']}: "
                           f"{above} lets only its owner through (mode {info.st_mode & 0o777:o})",
                           "a user namespace's root is an unprivileged user outside it, and mounts the overlay "
                           "from there", f"use a state root that others may traverse (--root), or chmod o+x {above}")
        above = os.path.dirname(above)
    for key in ("upper", "work", "merged"):
        if key in paths:
            os.chown(paths[key], outside, outside)


# clone3's two uses (fork_child), each of which can be switched off (to compare, or on a kernel that
# misbehaves): every join a write to cgroup.procs; a handed-over PID 1 reparented, not born a sibling.
CLONE_INTO_CGROUP = os.environ.get("MINICONTAINER_CLONE_INTO_CGROUP", "1") != "0"
CLONE_AS_SIBLING = os.environ.get("MINICONTAINER_CLONE_AS_SIBLING", "1") != "0"

# Steps whose doing is the helper's own bookkeeping (what it creates it must also remove).
NOT_REPLACEABLE = ("cgroup", "pid namespace", "fork intermediate", "fork PID 1", "exec")


class StageEnded(Exception):
    """The container's processes are gone (killed, or a learner function never returned)."""


class Sequence:
    """One container's start sequence; `caller` gets its step reports (a Channel, or anything with send)."""

    def __init__(self, caller: Channel, detached: bool = False, recorded: dict | None = None):
        self.caller = caller
        self.detached = detached             # OCI create: the container outlives us, behind its exec gate
        self.recorded = recorded or {}       # more for state.json (the OCI id, bundle, creation time)
        self.intermediate_pid = 0
        self.spec: ContainerSpec | None = None
        self.ctx: steps.Context | None = None
        self.cgroup: Cgroup | None = None
        self.child: Channel | None = None   # to the intermediate, then to init
        self.child_pid = 0                   # the helper's direct child (init, or the intermediate)
        self.child_pidfd: int | None = None  # that child, when it was born a sibling (our parent reaps it)
        self.init_pid = 0                    # PID 1 of the container, as the host sees it
        self.init_pidfd: int | None = None   # that very process, even once its PID could be reused
        self.own_namespaces: list = []       # to return to after forking into a new PID namespace
        self.child_process = ""              # who is at the other end of self.child: intermediate or init
        self.stop_deadline: float | None = None
        self.networked = False
        self.usernet = None  # usernet.Slirp, with network="slirp4netns"
        self.owns_state = self.owns_cgroup = False  # made by us: only that is ours to remove
        self.status: state.Status | None = None   # what state.json says; moved on only by advance()
        self.supervisor_pid = 0              # who supervises it once it runs, if not we (a shared helper)
        self.join_at_birth = False           # the next fork may be born in the cgroup (CLONE_INTO_CGROUP)

    # -- preparing ----------------------------------------------------------------------------
    def prepare(self, spec: ContainerSpec) -> None:
        paths = prepare_state(spec)  # refuses a name in use: then nothing of that container is touched
        self.spec, self.owns_state = spec, True
        if spec.cgroup_path and not spec.rootless:
            self.cgroup = Cgroup.at_path(spec.name, spec.cgroup_path)
        else:
            self.cgroup = Cgroup(spec.name, dirs=None if steps.has_cgroup(spec) else {})
        paths["cgroup_dirs"] = self.cgroup.directories
        self.ctx = steps.Context(spec, paths, self.cgroup)
        self.ctx.detached = self.detached
        if self.detached:
            self.ctx.gate_fd = make_gate(paths["dir"], spec.uid_map if "user" in spec.namespaces else None)
        self.write_state(state.Status.CREATING)
        if spec.rootless and not spec.rootless_cgroup:
            # An unprivileged user may not make cgroups unless a subtree was delegated to it.
            limits = [f"{k}={v}" for k, v in (("memory", spec.memory and format_size(spec.memory)),
                                              ("cpus", spec.cpus), ("pids", spec.pids)) if v]
            self.say("cgroup", "rootless: no cgroup, so no limits are applied"
                     + (f" (asked for {', '.join(limits)}: NOT applied)" if limits else "")
                     + ": this user has no cgroup of its own to make one in (a host delegates one on cgroup v2, as "
                       "systemd's Delegate=yes does); no device cgroup either, nor one needed: in a user namespace "
                       "mknod of a device is refused and the filesystems it mounts are nodev (only the host's own "
                       "/dev nodes are bound in)")
        elif spec.rootless:
            self.say("cgroup", f"rootless, in a cgroup below the one delegated to uid {os.getuid()}; no device "
                     "cgroup, nor one needed: in a user namespace mknod of a device is refused")
        elif "user" in spec.namespaces:
            chown_for_user_ns(paths, spec.uid_map)
        if spec.security.oci_seccomp is not None:
            seccomp.libseccomp()  # loaded here, so that init has it after pivot_root
        elif spec.security.seccomp:  # compiled here (or found compiled), so that init only loads it
            seccomp.compiled(spec.security.seccomp, spec.security.refuses_namespaces,
                             tuple(spec.security.allow_syscalls))

    def write_state(self, status: state.Status | None = None) -> None:
        """The state file, for `ps`, `exec` and `cleanup`, with the new status (None: the same, with new
        facts); what others recorded there (the network's lease) stays."""
        if status is not None:
            self.status = state.advance(self.status, status)
        spec, status = self.spec, self.status
        state.write_state(spec.name, {**(state.read_state(spec.name) or {}), "name": spec.name,
                                      "helper_pid": self.supervisor_pid or os.getpid(),
                                      "helper_start": state.start_time(self.supervisor_pid or os.getpid()),
                                      "cgroup": self.cgroup.dirs, "systemd_unit": self.cgroup.systemd_unit,
                                      "paths": {k: v for k, v in self.ctx.paths.items() if k != "cgroup_dirs"},
                                      "spec": spec.to_dict(), "status": status, "init_pid": self.init_pid,
                                      "init_start": self._init_start(), "done": self.ctx.done,
                                      **self.recorded})

    def _init_start(self):
        try:
            return state.start_time(self.init_pid) if self.init_pid else None
        except FileNotFoundError:
            return None  # a quick command already exited (and was reaped by its parent)

    def say(self, name: str, detail: str = "", process: str = steps.HELPER) -> None:
        self.caller.send(messages.StepDone(name, detail, process))

    # -- running steps -------------------------------------------------------------------------
    def remaining(self) -> list[steps.Step]:
        return [s for s in steps.plan(self.spec) if s.name not in self.ctx.done]

    def check_can_run(self, name: str) -> steps.Step:
        step = steps.find(self.spec, name)  # a clear error for an unknown name
        if name in self.ctx.done:
            raise LabError(f"step {name!r} has already run", "each step runs once", "run the next one")
        if name == "exec":
            raise LabError("exec is the last step, and the stage's start()", "once the command runs, the container "
                           "is no longer a stage but a running container", "call stage.start()")
        return step

    def run_until(self, name: str | None) -> None:
        """Run the remaining steps in order up to and including `name` (None: the next one)."""
        todo = [s for s in self.remaining() if s.name != "exec"]
        if name is not None:
            self.check_can_run(name)
            todo = todo[:[s.name for s in todo].index(name) + 1]
        if not todo:
            raise LabError("every step but exec has run", "the stage is complete", "call stage.start()")
        for step in todo[:1] if name is None else todo:
            self.run_one(step)

    def run_out_of_order(self, name: str) -> None:
        step = self.check_can_run(name)
        if not step.movable:
            movable = [s.name for s in steps.plan(self.spec) if s.movable]
            raise LabError(f"step {name!r} runs only in its place in the list", "run early, it would act on the "
                           "host's namespaces or on a root not yet there", f"stage.run_until({name!r}); the steps "
                           f"that may move: {', '.join(movable)}")
        planned = {s.name for s in steps.plan(self.spec)}
        missing = [a for a in step.after if a in planned and a not in self.ctx.done]
        if missing:
            raise LabError(f"step {name!r} cannot run yet", f"it needs {', '.join(missing)} first (else it would "
                           "act on the host's namespaces)", f"run those first: stage.run_until({missing[-1]!r})")
        self.run_one(step)

    def run_one(self, step: steps.Step) -> None:
        if step.process == steps.HELPER:
            if step.name == "fork intermediate":
                self.fork(intermediate.serve)
                self.child_process, self.intermediate_pid = steps.INTERMEDIATE, self.child_pid
            elif step.name == "fork PID 1":
                self.fork(init.serve)
                self.know_init(self.child_pid)
                self.child_process = steps.INIT
            else:
                if step.name == "pid namespace":  # keep a way back: later children of ours must not be in it
                    self.own_namespaces = [(k, os.open(f"/proc/self/ns/{k}", os.O_RDONLY))
                                           for k in ("pid", "time") if k in self.spec.namespaces or
                                           k in self.spec.join]
                self.before_step(step)
                steps.run_step(step, self.ctx)
                self.owns_cgroup = self.owns_cgroup or step.name == "cgroup"  # made by us: ours to remove
            if step.name not in self.ctx.done:
                self.ctx.done.append(step.name)
            self.say(step.name, steps.report(step, self.ctx))
            return
        if self.child is None or step.process != self.child_process:
            raise LabError(f"step {step.name!r} runs in the {step.process}, which is not there now",
                           "its process is not forked yet, or has handed over to PID 1", "run the steps in order")
        self.child.send(messages.RunStep(step.name))
        self.await_step(step.name)
        self.ctx.done.append(step.name)
        if step.name == "fork PID 1":
            self.child_process = steps.INIT

    def run_steps(self, todo: list[steps.Step]) -> None:
        """Run these steps in order, as run_one would; a run of consecutive steps of init's goes to it as one
        message (RunSteps), and its reports come back one by one as before."""
        i = 0
        while i < len(todo):
            batch = []
            while (i < len(todo) and todo[i].process == steps.INIT and todo[i].name != "exec"
                   and self.child is not None and self.child_process == steps.INIT):
                batch.append(todo[i])
                i += 1
            if len(batch) > 1:
                self.child.send(messages.RunSteps([s.name for s in batch]))
                for step in batch:
                    self.await_step(step.name)
                    self.ctx.done.append(step.name)
                continue
            if not batch:
                batch, i = [todo[i]], i + 1
                # A fork whose child's join comes in this same run (no one watches in between): born in the cgroup.
                self.join_at_birth = any(s.name == "join cgroup" for s in todo[i:])
            self.run_one(batch[0])

    def before_step(self, step: steps.Step) -> None:
        """What a helper step needs to know that only the helper knows."""
        if step.name == "id maps":
            self.ctx.paths["intermediate_pid"] = self.child_pid

    def ask_child(self, message: messages.RunFunction) -> messages.FunctionResult:
        self.child.send(message)
        try:
            reply = self.child.recv(timeout=message.timeout)
        except TimeoutError:
            raise StageEnded(f"{message.name}() did not return within {message.timeout:.0f} s") from None
        if reply is None:
            raise StageEnded(f"the container's process died while running {message.name}()")
        return reply

    def fork(self, serve) -> None:
        """Fork the intermediate or init, with a channel of its own; back to our own namespaces after."""
        mine, theirs = Channel.pair()
        # Every object so far into the collector's permanent generation: a collection in the child (which
        # lives until its exec) then never writes to, and so never copies, the pages it shares with us.
        gc.freeze()
        parent = os.getpid()
        pid, pidfd, born_in_cgroup, sibling = self.fork_child()
        if pid == 0:
            self.ctx.born_in_cgroup, self.ctx.parent_supervises = born_in_cgroup, sibling
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)  # the helper's handlers are not the child's
            mine.close()
            self.caller.close()  # the caller's channel is ours alone: its EOF must reach only us
            # What it is until its exec: the runtime's Python (a helper forked from the CLI is named mc-helper).
            kernel.set_process_name(os.path.basename(sys.executable))
            for _, fd in self.own_namespaces:
                os.close(fd)  # the way back to the host's PID namespace stays with the helper
            self.ctx.channel = theirs
            serve(self.ctx, os.getppid() if sibling else parent)
        theirs.close()
        self.child, self.child_pid, self.child_pidfd = mine, pid, pidfd
        self.cgroup.leave_scope()  # a systemd scope was made with us in it; the container's process stays there
        if self.own_namespaces:
            # Once the container's PID 1 exits, the kernel refuses every fork into its PID namespace,
            # and the helper's own tools (nft) must not run there anyway.
            namespaces.enter(self.own_namespaces)
            self.own_namespaces = []

    def fork_child(self) -> tuple[int, int | None, bool, bool]:
        """os.fork, or clone3 where it can do more: (pid, a pidfd of a sibling, born in its cgroup?, sibling?).
        - Where the child's join cgroup step follows in the same run (nobody watches it move) and the cgroup
          is one v2 directory: born there (CLONE_INTO_CGROUP), and its join writes nothing.
        - Where a shared helper is to supervise the container: the child is its child from birth
          (CLONE_PARENT), so it dies with the shared helper (PDEATHSIG) even once we have handed it over."""
        directories = self.ctx.paths.get("cgroup_dirs") or []
        wanted, self.join_at_birth = self.join_at_birth, False
        into = wanted and CLONE_INTO_CGROUP and len(directories) == 1 and os.path.exists(
            os.path.join(directories[0], "cgroup.type"))  # a v2 cgroup has it, v1 not
        sibling = self.ctx.hands_over and CLONE_AS_SIBLING
        if into or sibling:
            directory = os.open(directories[0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if into else None
            try:
                pid, pidfd = kernel.clone_fork(into_cgroup=directory, sibling=sibling)
            except OSError:
                pass  # refused (an old kernel, a filter that says ENOSYS, not glibc): fork and join as before
            else:
                if pid and not sibling:
                    os.close(pidfd)  # a child of ours: waitpid knows it
                return pid, (pidfd if pid and sibling else None), bool(into), sibling
            finally:
                if directory is not None:
                    os.close(directory)  # in the child too
        return os.fork(), None, False, False

    def await_step(self, name: str) -> None:
        """Relay what the child says while it runs step `name`; serve what it asks of us."""
        while True:
            message = self.child.recv()
            if isinstance(message, messages.StepDone):
                self.caller.send(message)
                if message.name == name:
                    return
            elif isinstance(message, messages.InitPid):
                self.know_init(message.pid)
            elif isinstance(message, messages.NeedHooks):
                try:
                    self.child.send(messages.HookState(self.run_create_hooks()))
                except LabError as e:
                    self.child.send(messages.Error.of(e))
            elif isinstance(message, messages.NeedNetwork):
                try:
                    self.child.send(messages.Network(self.connect_network()))
                except LabError as e:
                    self.child.send(messages.Error.of(e))  # init's step fails with it and reports it back
            elif isinstance(message, messages.Error):
                raise message.exception()
            elif message is None:
                raise StageEnded(f"the container's init died during step {name!r}")
            else:
                raise unexpected(message, f"the report of step {name!r}")

    def run_create_hooks(self) -> dict:
        """prestart and createRuntime hooks, here in the runtime's namespaces; the state they were given."""
        from .. import hooks
        if not self.detached:
            raise LabError("hooks run only under create, start and delete", "they belong to an engine's calls",
                           "run the bundle with `minicontainer create` and `start`, or drop its hooks")
        state = {"ociVersion": "1.0.2", "id": self.recorded["id"], "status": "creating", "pid": self.init_pid,
                 "bundle": self.recorded["bundle"], "annotations": self.recorded.get("annotations", {})}
        for kind in ("prestart", "createRuntime"):
            hooks.run(kind, self.spec.hooks, state)
        return state

    def know_init(self, pid: int) -> None:
        self.init_pid = pid
        try:
            self.init_pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass  # it died already: nothing left to signal
        if self.detached:
            self.write_state()  # whoever cleans up after a killed `create` finds init here

    def wait_at_gate(self) -> None:
        """Detached (OCI create): every step but exec, then init goes to wait at the gate; we let go of it."""
        self.run_steps([step for step in self.remaining() if step.name != "exec"])
        self.child.send(messages.RunStep("exec"))
        self.await_step("exec")  # init's word that it waits at the gate (or its error)
        self.child.close()
        self.child = None
        os.close(self.ctx.gate_fd)
        if self.intermediate_pid:
            os.waitpid(self.intermediate_pid, 0)  # it exits once PID 1 is forked
            self.child_pid = 0
        self.write_state(state.Status.CREATED)

    def connect_network(self) -> dict:
        if self.spec.network == "slirp4netns":
            return self.connect_user_network()
        from .. import network
        self.say("network", f"veth pair on bridge {network.BRIDGE}, one end into the container")
        self.networked = True
        return asdict(network.connect(self.spec.name, self.init_pid, self.spec.publish))

    def connect_user_network(self) -> dict:
        from .. import usernet
        self.say("user-mode network", f"slirp4netns: {usernet.DEVICE} inside, relayed through the host's sockets")
        self.usernet = usernet.start(self.init_pid, self.ctx.paths["dir"], self.spec.publish,
                                     own_user_namespace=steps._user(self.spec))
        return {"mode": "slirp4netns", "address": usernet.ADDRESS, "gateway": usernet.GATEWAY, "dns": usernet.DNS,
                "device": usernet.DEVICE}

    def exec_command(self) -> None:
        """The last step: init execs; the channel closing on exec says it worked."""
        self.run_steps([step for step in self.remaining() if step.name != "exec"])
        self.child.send(messages.RunStep("exec"))
        self.await_step("exec")
        self.ctx.done.append("exec")
        message = self.child.recv()
        if isinstance(message, messages.Error):
            raise message.exception()
        if message is not None:  # EOF: the exec closed init's end of the channel (close-on-exec)
            raise unexpected(message, "the channel's end at exec")
        self.child.close()
        self.child = None
        if self.ctx.hands_over:
            # Said now, before the caller hears Started and may write here itself (a network lease): the
            # shared helper that forked us takes the container over once we have told the caller.
            self.supervisor_pid = os.getppid()
        self.write_state(state.Status.RUNNING)
        self.caller.send(messages.Started(self.init_pid, self.cgroup.dirs))

    def _signal(self, sig: int) -> None:
        if self.init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self.init_pidfd, sig)
            except ProcessLookupError:
                pass

    def kill_all(self) -> None:
        """SIGKILL the cgroup, and our own children too: rootless there is no cgroup, and a stage may
        stop before PID 1 has joined it. (PID 1's death ends the rest of its PID namespace.)"""
        if self.owns_cgroup and self.cgroup.exists():
            self.cgroup.kill_all()
        self._signal(signal.SIGKILL)
        try:
            if self.child_pidfd is not None:  # reaped by our parent, maybe already: only its pidfd is sure
                signal.pidfd_send_signal(self.child_pidfd, signal.SIGKILL)
            elif self.child_pid:  # not reaped yet, so the PID is still this child's
                os.kill(self.child_pid, signal.SIGKILL)
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
        self.kill_all()
        if self.child_pidfd is not None:
            select.select([self.child_pidfd], [], [], 10)  # gone (readable) once it has exited; not ours to reap
            os.close(self.child_pidfd)
            self.child_pidfd = None
        elif self.child_pid:
            try:
                os.waitpid(self.child_pid, 0)
            except ChildProcessError:
                pass
        if self.usernet is not None:
            from .. import usernet
            usernet.stop(self.usernet)
            self.usernet = None
        recorded = self.owns_state and (state.read_state(self.spec.name) or {}).get("network")
        if self.networked or recorded:  # connected by us, or step by step from a notebook
            from .. import network
            try:
                network.disconnect(self.spec.name)
            except LabError as e:
                print(f"minicontainer: {e}", file=sys.stderr)
        if self.owns_cgroup:
            try:
                self.cgroup.remove()
            except LabError as e:
                print(f"minicontainer: {e}", file=sys.stderr)
        if self.owns_state:
            state.remove_dir(self.spec.name)


