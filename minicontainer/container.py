"""A container's lifecycle from the caller's side: start, wait, stop, exec, and cleanup.

The caller (a CLI process or a Jupyter kernel) only spawns the helper and talks
to it over a channel; see process/helper.py for who removes what when.
"""

from __future__ import annotations

import json
import os
import signal as signals
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass

from . import rootfs, state
from .cgroups import Cgroup, base_dir, detect
from .errors import LabError
from .process.channel import Channel
from .spec import ContainerSpec

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Containers this process started and still references (a container whose last
# reference goes away closes its channel, and its helper then takes it down).
STARTED: weakref.WeakSet = weakref.WeakSet()


def helper_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"minicontainer.process.{module}", *args]


def helper_env() -> dict:
    """The helper imports this same minicontainer, installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return env


class Container:
    def __init__(self, spec: ContainerSpec, helper: subprocess.Popen, channel: Channel):
        self.spec = spec
        self.name = spec.name
        self.helper = helper
        self.channel = channel
        self.pid = 0               # PID 1 of the container, as the host sees it
        self.cgroup: Cgroup | None = None
        self.steps: list[tuple[str, str]] = []
        self.exit_code: int | None = None
        self.final_stats: dict = {}  # the cgroup's counters just before it was removed

    @classmethod
    def start(cls, spec: ContainerSpec, *, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
              on_step=None, timeout: float = 30.0, pass_fds: tuple = ()) -> Container:
        """Start a container; returns once its command has been exec'd. Raises LabError on failure."""
        spec.validate()
        if spec.rootfs:
            spec.rootfs = rootfs.validate_rootfs(spec.rootfs)
        mine, theirs = Channel.pair()
        # pass_fds: extra fds for the container; the init closes them unless spec.security.keep_fds names them.
        helper = subprocess.Popen(helper_command("helper", str(theirs.fileno())), pass_fds=(theirs.fileno(), *pass_fds),
                                  start_new_session=True, stdin=stdin, stdout=stdout, stderr=stderr,
                                  env=helper_env())
        theirs.close()
        mine.send(type="start", spec=spec.to_dict())
        container = cls(spec, helper, mine)
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = mine.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                mine.close()  # the helper sees EOF and takes down whatever it made
                helper.wait(10)
                raise LabError(f"container {spec.name} did not start within {timeout:.0f} s",
                               "the host is overloaded or a mount hung",
                               "try again; see `minicontainer doctor`") from None
            if message is None:
                code = helper.wait()
                raise LabError(f"the helper exited (code {code}) before the container started",
                               "it crashed or was killed", "see its error output above; run `minicontainer cleanup`")
            if message["type"] == "step":
                container.steps.append((message["name"], message.get("detail", "")))
                if on_step:
                    on_step(message["name"], message.get("detail", ""))
            elif message["type"] == "error":
                helper.wait()
                mine.close()
                raise LabError.from_dict(message["error"])
            elif message["type"] == "started":
                container.pid = message["pid"]
                container.cgroup = Cgroup(spec.name, dirs=message["cgroup"])
                STARTED.add(container)
                return container

    @property
    def upper_dir(self) -> str | None:
        """The overlay's upper dir: every change the container made to its image, as files on the host."""
        return os.path.join(state.container_dir(self.name), "upper") if self.spec.rootfs else None

    # -- while it runs ------------------------------------------------------------
    def running(self) -> bool:
        return self.exit_code is None and self.helper.poll() is None

    def signal(self, sig: int = signals.SIGTERM) -> None:
        """Send a signal to the container's PID 1 (through the helper, which knows it is still ours)."""
        self.channel.send(type="signal", signal=int(sig))

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
        return subprocess.run(exec_command(self.name, command), capture_output=capture, text=capture,
                              timeout=timeout, env=helper_env(), **popen)

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
            if message is None or message["type"] in ("exited", "error"):
                break
        self.helper.wait()
        self.channel.close()
        if message and message["type"] == "error":
            raise LabError.from_dict(message["error"])
        self.exit_code = message["code"] if message else -signals.SIGKILL
        self.final_stats = message.get("stats", {}) if message else {}
        return self.exit_code

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM to PID 1, then after the grace period SIGKILL to every process in the cgroup."""
        if self.exit_code is None and self.channel.send(type="stop", grace=grace):
            return self.wait(grace + 10)
        return self.wait()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        if self.exit_code is None:
            self.stop(grace=1.0)


def stop_all(grace: float = 1.0) -> list[str]:
    """Stop every container this process started that still runs; their names."""
    stopped = []
    for container in list(STARTED):
        if container.exit_code is None:
            container.stop(grace)
            stopped.append(container.name)
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
    info = state.read_state(name)
    if not info or info.get("status") != "running" or not state.process_alive(info.get("init_pid"),
                                                                                info.get("init_start")):
        raise LabError(f"no running container named {name!r}", "it has exited, or the name is wrong",
                       "list running containers with `minicontainer ps`")
    return info


def exec_command(name: str, command: list[str]) -> list[str]:
    """The helper command line that runs `command` inside container `name`."""
    info = running_state(name)
    request = {"name": name, "pid": info["init_pid"], "namespaces": info["spec"]["namespaces"],
               "cgroup": sorted(set(info["cgroup"].values())), "command": command, "env": info["spec"]["env"],
               "cwd": info["spec"]["cwd"] if info["spec"]["rootfs"] else os.getcwd(),
               "security": info["spec"]["security"], "user": info["spec"].get("user")}
    return helper_command("enter", json.dumps(request))


def list_containers() -> list[dict]:
    """Every container with state on this host, marked running or stale."""
    rows = []
    for name in state.all_names():
        info = state.read_state(name) or {"name": name}
        alive = state.process_alive(info.get("helper_pid"), info.get("helper_start"))
        info["status"] = info.get("status", "unknown") if alive else "stale (its helper is gone)"
        rows.append(info)
    return rows


def cleanup() -> list[str]:
    """Remove what crashed runs left: state dirs whose helper is gone, and their cgroups;
    then any container cgroup that no running container owns. Returns what was removed."""
    removed, live = [], set()
    for info in list_containers():
        name = info["name"]
        if not info["status"].startswith("stale"):
            live.add(name)
            continue
        cgroup = Cgroup(name, dirs=info.get("cgroup")) if info.get("cgroup") else None
        if cgroup and cgroup.exists():
            cgroup.kill_all()
            removed += [f"cgroup {d}" for d in cgroup.remove()]
        if state.remove_dir(name):
            removed.append(f"state {state.container_dir(name)}")
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
    return removed
