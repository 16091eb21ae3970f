"""Every message between the start sequence's processes, one dataclass each.

    caller (CLI, notebook)  <->  helper  <->  intermediate (with a user namespace)  <->  init

On the wire a message is one JSON line: its fields and "type", the class's name. A process
reads a message with Channel.recv() and gets an instance of one of these classes (or None at
EOF: the other side is gone), so a receive loop is a match on types, and reading this file
tells the whole protocol.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import LabError

# -- caller -> helper ---------------------------------------------------------------------


@dataclass
class Create:
    """Make the container described by spec (a ContainerSpec as a dict). staged: run no step until
    asked (Advance); otherwise run every step but exec and report Created."""
    spec: dict
    staged: bool = False


@dataclass
class Advance:
    """Staged: run the next steps up to and including `until` (None: just the next one), or only
    the step named `only`, out of order where its prerequisites are done."""
    until: str | None = None
    only: str | None = None


@dataclass
class RunFunction:
    """Staged: run a learner's function (its source and name) inside the container's init, or, in
    place of the step `instead_of`, in that step's own process."""
    name: str
    source: str
    timeout: float = 10.0
    instead_of: str | None = None


@dataclass
class Start:
    """Created: exec the command."""


@dataclass
class Signal:
    signal: int


@dataclass
class Stop:
    """SIGTERM to PID 1, then SIGKILL to the cgroup after grace seconds."""
    grace: float = 5.0


# -- helper -> caller ---------------------------------------------------------------------


@dataclass
class StepDone:
    """A step ran (also init -> helper, and intermediate -> helper). process: who ran it."""
    name: str
    detail: str = ""
    process: str = ""


@dataclass
class Staged:
    """The stage is ready: the steps it will run, as (name, process, what)."""
    steps: list


@dataclass
class Paused:
    """Staged: the steps asked for have run, or those before the one in error (a LabError's to_dict).
    pid: PID 1 (0 until it is forked); intermediate: the user namespace's process, while there is one."""
    done: list
    pid: int = 0
    cgroup: dict = field(default_factory=dict)
    error: dict | None = None
    intermediate: int = 0


@dataclass
class Created:
    """Every step but exec has run: init waits for Start."""
    pid: int
    cgroup: dict


@dataclass
class Started:
    pid: int
    cgroup: dict = field(default_factory=dict)


@dataclass
class Exited:
    code: int
    stats: dict = field(default_factory=dict)


@dataclass
class FunctionResult:
    """What a learner's function returned (as JSON, or its repr), or the error it raised."""
    value: object = None
    error: dict | None = None


@dataclass
class Error:
    """A LabError, as LabError.to_dict(). ended: the container is gone with it (else a stage stays usable)."""
    error: dict
    ended: bool = False

    @classmethod
    def of(cls, e: LabError, ended: bool = False) -> Error:
        return cls(e.to_dict(), ended)

    def exception(self) -> LabError:
        return LabError.from_dict(self.error)


# -- helper <-> intermediate / init ---------------------------------------------------------


@dataclass
class InitPid:
    """The intermediate forked the container's PID 1: its PID as the host sees it."""
    pid: int


@dataclass
class NeedNetwork:
    """The init is in its network namespace: make a veth pair and move one end in."""


@dataclass
class Network:
    lease: dict


@dataclass
class NeedHooks:
    """The init's namespaces exist: run the config's createRuntime (and prestart) hooks on the host."""


@dataclass
class HookState:
    """Those hooks have run: the state they were given, for the hooks that run inside the container."""
    state: dict


@dataclass
class RunStep:
    """Staged: the init runs this one step and reports StepDone (or Error), then waits again."""
    name: str


@dataclass
class RunSteps:
    """Not staged: the init runs these steps in order, reports StepDone for each, and stops at the first
    Error. One message for a run of init's steps, where RunStep would take one trip each."""
    names: list[str]


MESSAGES = {cls.__name__: cls for cls in (Create, Advance, RunFunction, Start, Signal, Stop, StepDone, Staged,
                                          Paused, Created, Started, Exited, FunctionResult, Error, InitPid,
                                          NeedNetwork, Network, NeedHooks, HookState, RunStep, RunSteps)}


def unexpected(message, expected: str) -> LabError:
    """A message that has no place where it arrived: a bug between the processes of the start sequence,
    named rather than dropped."""
    got = "the end of the channel" if message is None else type(message).__name__
    return LabError(f"unexpected message on a runtime channel: {got}, where {expected} was expected",
                    "the processes of the start sequence disagree about where they are (a bug, or mixed versions)",
                    "stop every container (`minicontainer cleanup`) and report it")


def encode(message) -> dict:
    return {"type": type(message).__name__, **dataclasses.asdict(message)}


def decode(data: dict):
    fields = dict(data)
    kind = fields.pop("type", None)
    if kind not in MESSAGES:
        raise LabError(f"unknown message {kind!r} on a runtime channel", "the processes of the start sequence "
                       "run different versions of minicontainer", "stop every container and start again")
    return MESSAGES[kind](**fields)
