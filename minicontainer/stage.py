"""A container under construction, one step at a time: what the notebooks build with.

    stage = Stage(ContainerSpec(IMAGE, ["sh"]))
    stage.next()                  # the next step of the start sequence (process/steps.py)
    stage.run_until("unshare uts")
    inspect.process(stage.pid)    # the kernel's view between two steps
    stage.call(my_step)           # a function you wrote, run inside PID 1
    stage.replace("pivot_root", my_pivot_root)   # yours in place of the runtime's step
    box = stage.start()           # the remaining steps and exec: a normal Container

The steps run in a helper and in the container's own processes, never in this one (a Jupyter
kernel never unshares, forks or setns). A step that fails leaves the stage as it was; a function
that never returns, or a PID 1 that dies, tears it down, and the stage says so.
"""

from __future__ import annotations

import html
import inspect
import subprocess
import textwrap

from .cgroups import Cgroup
from .container import LIVE, Container, end_helper, spawn_helper
from .errors import LabError
from .process import messages
from .spec import ContainerSpec
from .state import Status


class Stage:
    def __init__(self, spec: ContainerSpec, *, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                 timeout: float = 30.0):
        self.spec = spec
        self.name = spec.name
        self.timeout = timeout
        self.helper, self.channel = spawn_helper(spec, True, stdin, stdout, stderr)
        self.steps: list[tuple[str, str, str]] = []   # (name, process, what), in order
        self.done: list[str] = []
        self.log: list[tuple[str, str]] = []          # (name, detail) as each step reported
        self.pid = 0                                   # PID 1 once forked, as the host sees it
        self.intermediate_pid = 0                      # with a user namespace: the process that owns it
        self.cgroup: Cgroup | None = None
        self.ended = False
        LIVE[self.name] = self
        ready = self._reply(messages.Staged)
        self.steps = [tuple(s) for s in ready.steps]

    # -- moving on ----------------------------------------------------------------------------
    @property
    def next_step(self) -> str | None:
        return next((name for name, _, _ in self.steps if name not in self.done and name != "exec"), None)

    def next(self) -> list[tuple[str, str]]:
        """Run the next step; what it (and any process it asked) reported."""
        return self._advance(messages.Advance())

    def run_until(self, name: str) -> list[tuple[str, str]]:
        """Run every step up to and including `name`."""
        return self._advance(messages.Advance(until=name))

    def run(self, name: str) -> list[tuple[str, str]]:
        """Run one named step out of order, if the steps it needs have run."""
        return self._advance(messages.Advance(only=name))

    def call(self, function, timeout: float = 10.0):
        """Run a function you wrote inside PID 1 (after its mounts are private); its return value.
        It sees os, kernel, namespaces, rootfs, security and inspect as globals, and gets the step
        Context (spec, root, paths) if it takes an argument. After pivot_root it cannot import
        anything new: the host's Python files are out of reach."""
        return self._run_function(function, timeout, None)

    def replace(self, name: str, function, timeout: float = 10.0):
        """Run a function you wrote in place of the step `name`, which must be the next one: in that
        step's own process (the helper, the intermediate or PID 1), with the same globals and Context
        as call(). If it returns, the step is done and the runtime's own version never runs; if it
        raises, the stage is as it was. Its return value."""
        value = self._run_function(function, timeout, name)
        self.done.append(name)
        return value

    def _run_function(self, function, timeout: float, instead_of: str | None):
        if getattr(function, "__name__", "") == "<lambda>":
            raise LabError("a lambda cannot be sent into the container", "only its source text travels, and a "
                           "lambda's source is the whole line it sits in", "define the function with def")
        try:
            source = textwrap.dedent(inspect.getsource(function))
        except (OSError, TypeError):
            raise LabError(f"cannot read the source of {function!r}", "only a function defined with def, in a "
                           "cell or a file, can be sent into the container", "define it with def") from None
        self._check_alive()
        self.channel.send(messages.RunFunction(function.__name__, source, timeout, instead_of))
        result = self._reply(messages.FunctionResult, timeout + 10)
        if result.error:
            raise LabError.from_dict(result.error)
        return result.value

    def start(self) -> Container:
        """The remaining steps, then exec: from now on a running Container."""
        self._check_alive()
        container = Container(self.spec, self.helper, self.channel)
        container.on_step = lambda name, detail: self.log.append((name, detail))
        self.channel.send(messages.Start())
        container.status = Status.CREATED  # waiting for exec, as Container.create leaves one
        self.ended = True  # from here on the channel is the container's, whatever happens
        LIVE[self.name] = container
        started = container._until(messages.Started, self.timeout, "exec")
        container.pid, container.status = started.pid, Status.RUNNING
        container.cgroup = Cgroup(self.name, dirs=started.cgroup)
        container.steps = list(self.log)
        return container

    def stop(self, grace: float = 0) -> None:
        """Tear the stage down: the helper kills what was built and removes its cgroup and state."""
        self.teardown()

    def teardown(self) -> None:
        if self.ended:
            return
        self.channel.send(messages.Stop(0))
        try:
            while self.channel.recv(timeout=30) is not None:
                pass
        except TimeoutError:
            pass
        end_helper(self.helper)
        self._end()

    # -- plumbing ---------------------------------------------------------------------------
    def _advance(self, request) -> list[tuple[str, str]]:
        self._check_alive()
        start = len(self.log)
        self.channel.send(request)
        paused = self._reply(messages.Paused)
        self.done, self.pid, self.intermediate_pid = list(paused.done), paused.pid, paused.intermediate
        if paused.cgroup:
            self.cgroup = Cgroup(self.name, dirs=paused.cgroup)
        if paused.error:
            raise LabError.from_dict(paused.error)
        return self.log[start:]

    def _reply(self, kind, timeout: float | None = None):
        while True:
            try:
                message = self.channel.recv(timeout=timeout or self.timeout)
            except TimeoutError:
                self.teardown()
                raise LabError(f"stage {self.name} did not answer within {timeout or self.timeout:.0f} s",
                               "a step hung", "the stage was torn down: make a new one") from None
            if isinstance(message, messages.StepDone):
                self.log.append((message.name, message.detail))
            elif isinstance(message, kind):
                return message
            elif isinstance(message, messages.Error):
                if message.ended:
                    end_helper(self.helper)
                    self._end()
                raise message.exception()
            elif message is None or isinstance(message, messages.Exited):
                end_helper(self.helper)
                self._end()
                raise LabError(f"stage {self.name} has ended", "its helper or PID 1 is gone",
                               "make a new stage")

    def _check_alive(self) -> None:
        if self.ended:
            raise LabError(f"stage {self.name} has ended", "it was started, torn down, or its PID 1 died",
                           "make a new stage")

    def _end(self) -> None:
        self.ended = True
        self.channel.close()
        if LIVE.get(self.name) is self:
            del LIVE[self.name]

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def _repr_html_(self) -> str:
        rows = []
        for name, process, what in self.steps:
            mark = "&#10003;" if name in self.done else ("&#9654;" if name == self.next_step else "")
            rows.append(f"<tr><td>{mark}</td><td><b>{html.escape(name)}</b></td><td>{html.escape(process)}</td>"
                        f"<td>{html.escape(what)}</td></tr>")
        state = "ended" if self.ended else f"PID 1 = {self.pid}" if self.pid else "no PID 1 yet"
        return (f"<div><b>stage {html.escape(self.name)}</b> ({state})<table>{''.join(rows)}</table></div>")

    def __repr__(self) -> str:
        return f"Stage({self.name}: {len(self.done)} of {len(self.steps)} steps done, next {self.next_step!r})"
