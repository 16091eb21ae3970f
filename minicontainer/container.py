"""A container's lifecycle from the caller's side: start, wait, stop, exec, and cleanup.

The caller (a CLI process or a Jupyter kernel) never unshares or forks into a container itself: a helper
does (forked by the CLI, or by the caller's shared helper), and the caller talks to it over a channel; see
process/helper.py and process/shared.py for who removes what when.
"""

from __future__ import annotations

import json
import os
import signal as signals
import subprocess
import tempfile
import time
from dataclasses import dataclass

from . import rootfs, state
from .cgroups import Cgroup, base_dir, detect, remove_base_if_unused
from .errors import LabError
from .lifecycle import list_containers, remove_stale  # noqa: F401  (the CLI's list)
from .process import messages, spawn
from .process.channel import Channel
from .spec import ContainerSpec
from .state import Status

# Every container (and stage) this process made that has not ended, by name. Strong references:
# a container lives until it is stopped or this process ends, never until its Python object is
# garbage-collected (a container started on a line that does not keep it must not vanish).
LIVE: dict[str, object] = {}

# Who forks each container's helper (process/shared.py): "shared", this process's one long-lived helper
# (any Python caller); "fork", this very process (the CLI, single-threaded); "spawn", a fresh interpreter.
# MINICONTAINER_HELPER overrides it.
HELPER = "shared"


def spawn_helper(spec: ContainerSpec, staged: bool, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                 pass_fds: tuple = ()) -> tuple[subprocess.Popen, Channel]:
    """A helper in its own session (see HELPER), asked to build `spec`; the helper and the caller's channel."""
    if spec.name in LIVE:
        raise LabError(f"a container named {spec.name!r} already runs in this process", "names are unique: the "
                       "name is its cgroup's and its state's", "give another name, or stop that one first")
    spec.validate()
    if spec.rootfs:
        spec.rootfs = rootfs.validate_rootfs(spec.rootfs)
    mine, theirs = Channel.pair()
    # pass_fds: extra fds for the container; the init closes them unless spec.security.keep_fds names them.
    from .process import helper as helper_process
    mode = os.environ.get("MINICONTAINER_HELPER") or HELPER
    if mode == "fork" and helper_process.can_fork_for(stdin, stdout, stderr):
        # The CLI: fork the helper from this process, which has imported the runtime already.
        helper = helper_process.fork_helper(theirs.fileno(), stdin, stdout, stderr, pass_fds)
    elif mode == "spawn":  # a fresh interpreter per container (to compare, in the benchmark)
        helper = spawn.start("minicontainer.process.helper", str(theirs.fileno()),
                             pass_fds=(theirs.fileno(), *pass_fds), start_new_session=True, stdin=stdin,
                             stdout=stdout, stderr=stderr)
    else:  # any other Python caller (a Jupyter kernel, multithreaded, must not fork): its shared helper forks it
        from .process import shared
        helper = shared.client().fork_helper(spec.name, theirs.fileno(), stdin, stdout, stderr, pass_fds)
    theirs.close()
    mine.send(messages.Create(spec.to_dict(), staged))
    return helper, mine


def end_helper(helper: subprocess.Popen, wait: float = 10.0) -> int | None:
    """Let a helper finish its clean-up; if it does not in time, SIGTERM it (its handler kills what it made)."""
    for sig in (None, signals.SIGTERM, signals.SIGKILL):
        if sig:
            helper.send_signal(sig)
        try:
            return helper.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return None


class _StartMethod:
    """Container.start(spec): create and start a container; container.start(): start a created one."""

    def __get__(self, instance, owner):
        if instance is None:
            return owner._create_and_start
        return instance._start_created


class Container:
    def __init__(self, spec: ContainerSpec, helper: subprocess.Popen, channel: Channel):
        self.spec = spec
        self.name = spec.name
        self.helper = helper
        self.channel = channel
        self.pid = 0               # PID 1 of the container, as the host sees it
        self.cgroup: Cgroup | None = None
        self.steps: list[tuple[str, str]] = []
        self.status = Status.CREATING  # then created, running, stopped (the lifecycle's one set of names)
        self.exit_code: int | None = None
        self.final_stats: dict = {}  # the cgroup's counters just before it was removed
        self.on_step = None

    start = _StartMethod()

    @classmethod
    def create(cls, spec: ContainerSpec, *, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
               on_step=None, timeout: float = 30.0, pass_fds: tuple = ()) -> Container:
        """Run every step but exec: PID 1 exists, in its namespaces, cgroup and root, and waits for
        start(). Raises LabError on failure."""
        helper, channel = spawn_helper(spec, False, stdin, stdout, stderr, pass_fds)
        container = cls(spec, helper, channel)
        container.on_step = on_step
        LIVE[spec.name] = container
        created = container._until(messages.Created, timeout, "start")
        container.pid = created.pid
        container.cgroup = Cgroup(spec.name, dirs=created.cgroup)
        container.status = Status.CREATED
        return container

    @classmethod
    def _create_and_start(cls, spec: ContainerSpec, **options) -> Container:
        """Start a container; returns once its command has been exec'd. Raises LabError on failure."""
        timeout = options.get("timeout", 30.0)
        container = cls.create(spec, **options)
        container._start_created(timeout)
        return container

    def _start_created(self, timeout: float = 30.0) -> Container:
        """exec the command of a created container."""
        if self.status != Status.CREATED:
            raise LabError(f"container {self.name} is {self.status}, not created", "only a created container "
                           "waits for start()", "make one with Container.create(spec)")
        self.channel.send(messages.Start())
        self.pid = self._until(messages.Started, timeout, "exec").pid
        self.status = Status.RUNNING
        return self

    def _until(self, kind, timeout: float, doing: str):
        """Relay step reports until a message of `kind` arrives; a LabError for anything else."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.channel.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                end_helper(self.helper)
                self._ended(-signals.SIGKILL)
                raise LabError(f"container {self.name} did not {doing} within {timeout:.0f} s",
                               "the host is overloaded or a mount hung",
                               "try again; see `minicontainer doctor`") from None
            if isinstance(message, messages.StepDone):
                self.steps.append((message.name, message.detail))
                if self.on_step:
                    self.on_step(message.name, message.detail)
            elif isinstance(message, kind):
                return message
            elif isinstance(message, messages.Error):
                end_helper(self.helper)
                self._ended(-signals.SIGKILL)
                raise message.exception()
            else:  # None, or Exited: the helper ended
                code = end_helper(self.helper)
                self._ended(-signals.SIGKILL)
                raise LabError(f"the helper exited (code {code}) before the container could {doing}",
                               "it crashed or was killed", "see its error output above; run `minicontainer cleanup`")

    def _ended(self, code: int, stats: dict | None = None) -> None:
        self.exit_code = code
        self.final_stats = stats or {}
        self.status = Status.STOPPED
        self.channel.close()
        LIVE.pop(self.name, None)

    @property
    def upper_dir(self) -> str | None:
        """The overlay's upper dir: every change the container made to its image, as files on the host."""
        return os.path.join(state.container_dir(self.name), "upper") if self.spec.rootfs else None

    # -- while it runs ------------------------------------------------------------
    def running(self) -> bool:
        return self.exit_code is None and self.helper.poll() is None

    def signal(self, sig: int = signals.SIGTERM) -> None:
        """Send a signal to the container's PID 1 (through the helper, which knows it is still ours)."""
        self.channel.send(messages.Signal(int(sig)))

    def stats(self) -> dict:
        """The cgroup's counters now (see Cgroup.stats); a clear error once the container has ended."""
        try:
            return self.cgroup.stats()
        except FileNotFoundError:
            # Only the helper removes the cgroup, once PID 1 is reaped: collect the exit code it reports.
            try:
                code = self.wait(timeout=10)
            except TimeoutError:
                raise LabError(f"container {self.name} runs but its cgroup {self.cgroup.directories[0]} is gone",
                               "something outside the lab removed it (minicontainer cleanup from another run?)",
                               "stop the container and start it again") from None
            raise LabError(f"container {self.name} has ended (exit code {code}): its cgroup is gone",
                           "its PID 1 exited or was killed (a PID 1 that ends takes the container with it)",
                           "its counters as it ended are in .final_stats; start it again to watch it live") from None

    def exec(self, command: list[str], *, capture: bool = True, timeout: float | None = 60, **popen):
        """Run a command in the running container (its namespaces and cgroup); a CompletedProcess."""
        run = spawn.run if popen else spawn.run_forked
        return run(*exec_command(self.name, command), capture_output=capture, text=capture, timeout=timeout, **popen)

    # -- the end ------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container's command to exit; its exit code (negative: killed by that signal)."""
        if self.exit_code is not None:
            return self.exit_code
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                message = self.channel.recv(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError(f"container {self.name} still running after {timeout} s") from None
            if message is None or isinstance(message, (messages.Exited, messages.Error)):
                break
        end_helper(self.helper)
        if isinstance(message, messages.Error):
            self._ended(-signals.SIGKILL)
            raise message.exception()
        if isinstance(message, messages.Exited):
            self._ended(message.code, message.stats)
        else:
            self._ended(-signals.SIGKILL)
        return self.exit_code

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM to PID 1, then after the grace period SIGKILL to every process in the cgroup."""
        if self.exit_code is None and self.channel.send(messages.Stop(grace)):
            return self.wait(grace + 10)
        return self.wait()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        if self.exit_code is None:
            self.stop(grace=1.0)


def stop_all(grace: float = 1.0) -> list[str]:
    """Stop every container (and tear down every stage) this process made that has not ended; their names."""
    stopped = []
    for item in list(LIVE.values()):
        item.stop(grace)
        stopped.append(item.name)
    return stopped


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    steps: list
    stats: dict  # the cgroup's counters as the container ended


def run(spec: ContainerSpec, timeout: float = 60.0, stdin: str | None = None) -> Result:
    """Start a container, wait for it, and return its exit code and output (for notebooks and tests)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        feed = subprocess.DEVNULL
        if stdin is not None:
            feed = tempfile.TemporaryFile("w+")
            feed.write(stdin)
            feed.seek(0)
        container = Container.start(spec, stdin=feed, stdout=out, stderr=err)
        try:
            code = container.wait(timeout)
        except TimeoutError:
            container.stop(grace=1.0)
            raise LabError(f"container {spec.name} ran longer than {timeout} s and was stopped",
                           "the command did not finish",
                           "give a command that ends, or a larger timeout") from None
        finally:
            if feed is not subprocess.DEVNULL:
                feed.close()
        out.seek(0)
        err.seek(0)
        return Result(code, out.read(), err.read(), container.steps, container.final_stats)


# -- containers by name (the CLI's view) --------------------------------------------------

def running_state(name: str) -> dict:
    info = state.read_state(state.dir_name(name))
    status = info and (state.oci_status(info) if info.get("mode") == "oci" else info.get("status"))
    if status != "running" or not state.process_alive(info.get("init_pid"), info.get("init_start")):
        raise LabError(f"no running container named {name!r}", "it has exited, or the name is wrong",
                       "list running containers with `minicontainer ps`")
    return info


def signal_container(name: str, sig: int) -> None:
    """Send a signal to a running container's PID 1 from any process (`minicontainer kill NAME SIGNAL`)."""
    info = running_state(name)
    try:
        pidfd = os.pidfd_open(info["init_pid"])  # this very process from here on, whatever reuses its PID
    except ProcessLookupError:
        pidfd = None
    try:
        if pidfd is None or not state.process_alive(info["init_pid"], info.get("init_start")):
            raise LabError(f"container {name!r} has just ended", "its PID 1 exited", "nothing to signal")
        signals.pidfd_send_signal(pidfd, sig)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def stop_container(name: str, grace: float = 10.0) -> bool:
    """SIGTERM to PID 1, then, if it still runs after `grace` seconds, SIGKILL to every process in its
    cgroup (`minicontainer stop NAME`). Returns whether the kill was needed. Its helper cleans up."""
    info = running_state(name)
    signal_container(name, signals.SIGTERM)
    alive = lambda: state.process_alive(info["init_pid"], info.get("init_start"))  # noqa: E731
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = alive()
    if killed:
        cgroup = Cgroup(name, dirs=info.get("cgroup") or {})
        if cgroup.exists():
            cgroup.kill_all()
        else:
            signal_container(name, signals.SIGKILL)  # rootless: PID 1's death ends its PID namespace
    deadline = time.monotonic() + 10
    while state.read_state(name) and time.monotonic() < deadline:  # its helper removes what it made
        time.sleep(0.05)
    return killed


def exec_command(name: str, command: list[str]) -> list[str]:
    """spawn.run(*this): the module and argument that run `command` inside container `name`."""
    info = running_state(name)
    request = {"name": name, "pid": info["init_pid"], "cgroup": sorted(set(info["cgroup"].values())),
               "command": command, "cwd": info["spec"]["cwd"] if info["spec"]["rootfs"] else os.getcwd(),
               "spec": info["spec"]}
    return ["minicontainer.process.enter", json.dumps(request)]


def cleanup() -> list[str]:
    """Remove what crashed runs left: state dirs whose helper is gone, and their cgroups;
    then any container cgroup that no running container owns. Returns what was removed."""
    removed, live = remove_stale()
    from . import network
    if not network.leases_in_use() and network.leftovers():
        removed += network.teardown()
    layout = detect()
    for controller in layout.controllers.values():
        base = base_dir(layout, controller)
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            if name not in live and os.path.isdir(os.path.join(base, name)):
                cgroup = Cgroup(name, dirs={controller.name: os.path.join(base, name)})
                cgroup.kill_all()
                removed += [f"cgroup {d}" for d in cgroup.remove()]
        if remove_base_if_unused(base):  # left empty by a run that removed only its own cgroups
            removed.append(f"cgroup {base}")
    return removed
