"""The container's init: the forked child that becomes PID 1 and, last, execs the command.

It runs between fork and exec in a single-threaded process, so it may unshare and mount freely.
It does nothing on its own: it runs each step the helper names (steps.py), answers StepDone or
Error, and waits for the next; in a staged container it also runs learner-written functions.
A step that fails leaves it waiting, so a stage stays usable; the helper decides what happens.

The command is exec'd directly as PID 1 rather than under a reaping init: the learner's own
process is what `ps` shows as PID 1, and no extra interpreter sits in the container's memory and
pids accounting. The cost, which lessons show: PID 1 ignores signals it has no handler for (so
stop ends with a kill of the cgroup), and orphans are reaped only if the command waits for them.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import traceback

from .. import inspect as inspect_module
from .. import kernel, namespaces, rootfs, security
from ..errors import LabError
from . import messages, steps


def die_with_parent(parent_pid: int) -> None:
    """PR_SET_PDEATHSIG: SIGKILL us when the parent (thread) that forked us exits."""
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Did the parent die before the prctl took effect? In a new PID namespace the parent is
    # outside it and getppid() says 0; there the channel's EOF tells.
    if os.getppid() not in (parent_pid, 0):
        os._exit(1)


def serve(ctx: steps.Context, parent_pid: int) -> None:
    """Child-side entry after fork: run steps until exec replaces this process. Never returns."""
    try:
        die_with_parent(parent_pid)
        while True:
            message = ctx.channel.recv()
            if isinstance(message, messages.RunStep):
                run_named_step(ctx, message.name)
            elif isinstance(message, messages.RunFunction):
                ctx.channel.send(run_function(ctx, message))
            else:  # None: the helper is gone, and nobody would supervise this container
                os._exit(1)
    except BaseException:  # noqa: BLE001  anything unforeseen still reaches the learner
        ctx.channel.send_error(LabError(f"container init failed: {traceback.format_exc(limit=3)}",
                                        "an unexpected error in minicontainer", "please report it"))
    os._exit(127)


def run_named_step(ctx: steps.Context, name: str) -> None:
    if name == "exec":
        ctx.channel.send(messages.StepDone("exec", steps.report(steps.find(ctx.spec, "exec"), ctx), steps.INIT))
        exec_command(ctx)  # returns only by raising
    steps.run_and_report(ctx, name, steps.INIT)


def exec_command(ctx: steps.Context) -> None:
    """execve: on success this process is the command, and the channel (close-on-exec) closes."""
    spec = ctx.spec
    try:
        os.execvpe(spec.command[0], spec.command, spec.env)
    except FileNotFoundError:
        error = LabError(f"command {spec.command[0]!r} not found in the container",
                         f"no such program on the container's PATH ({spec.env.get('PATH', '')})",
                         "check the name; busybox's applets are in /bin and /sbin", step="exec")
    except PermissionError:
        error = LabError(f"command {spec.command[0]!r} is not executable", "it lacks the execute bit, or a "
                         "noexec mount", "chmod +x it in the image", step="exec")
    except OSError as e:  # ENOEXEC (a script without #!, another architecture), E2BIG, ELOOP...
        error = LabError(f"command {spec.command[0]!r} cannot be run: {e.strerror} ({errno_name(e.errno)})",
                         "the kernel refused to execute it", "see execve(2) for this error", step="exec")
    ctx.channel.send_error(error)
    os._exit(127)


# -- learner-written steps -------------------------------------------------------------------

def run_function(ctx: steps.Context, message: messages.RunFunction) -> messages.FunctionResult:
    """Run a function a learner wrote in a notebook cell, here, in the namespaces and root built so
    far. It gets the runtime's kernel wrappers as globals, and the step Context if it takes an
    argument. Its return value goes back as JSON (or its repr); an error names the function, the
    line and the call that failed."""
    where = f"<your function {message.name}>"
    scope = {"__name__": "learner", "os": os, "kernel": kernel, "namespaces": namespaces, "rootfs": rootfs,
             "security": security, "inspect": inspect_module, "LabError": LabError}
    try:
        exec(compile(message.source, where, "exec"), scope)
        function = scope[message.name]
        value = function(ctx) if function.__code__.co_argcount else function()
    except BaseException as e:  # noqa: BLE001  every learner mistake becomes a message
        return messages.FunctionResult(error=_learner_error(message, where, e).to_dict())
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    return messages.FunctionResult(value=value)


def _learner_error(message: messages.RunFunction, where: str, error: BaseException) -> LabError:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == where]
    lines = message.source.splitlines()
    line = ""
    if frames and 0 < frames[-1].lineno <= len(lines):
        line = f" at line {frames[-1].lineno}: {lines[frames[-1].lineno - 1].strip()}"
    if isinstance(error, LabError):
        return LabError(f"{message.name}(){line}: {error.what}", error.cause, error.fix, step=message.name)
    if isinstance(error, ImportError):
        return LabError(f"{message.name}(){line}: {error}", "after pivot_root the host's Python files are out of "
                        "reach, and the image has none", "use the modules your function is given (os, kernel, "
                        "namespaces, rootfs, security, inspect), or call it before pivot_root", step=message.name)
    if isinstance(error, OSError):
        call = f"{error.strerror} ({errno_name(error.errno)})" + (f" on {error.filename}" if error.filename else "")
        return LabError(f"{message.name}(){line}: the kernel refused the call: {call}",
                        "see the man page of the call on that line", "fix the call; the stage is still usable",
                        step=message.name)
    return LabError(f"{message.name}(){line} raised {type(error).__name__}: {error}", "a bug in your function",
                    "fix it and run it again; the stage is still usable", step=message.name)


def errno_name(number: int | None) -> str:
    return errno.errorcode.get(number or 0, str(number))
