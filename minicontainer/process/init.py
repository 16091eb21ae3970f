"""The container's init: the forked child that becomes PID 1 and, last, execs the command.

It runs between fork and exec in a single-threaded process, so it may unshare and mount freely.
It does nothing on its own: it runs each step the helper names (steps.py), answers StepDone or
Error, and waits for the next; in a staged container it also runs learner-written functions.
A step that fails leaves it waiting, so a stage stays usable; the helper decides what happens.

The command is exec'd directly as PID 1 unless the spec asks for an init (init=True, `run --init`):
the learner's own process is what `ps` shows as PID 1, and no extra process sits in the container's
memory and pids accounting. The cost, which notebook 06 shows: PID 1 gets from outside only the signals
it has a handler for (so stop ends with a kill of the cgroup), and orphans are reaped only if the command
waits for them. With init=True, mcinit.c is PID 1: it passes signals on and reaps every child.
"""

from __future__ import annotations

import os
import signal
import traceback

from .. import kernel, security
from ..errors import LabError
from . import learner, messages, steps


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
        if ctx.spec.security.non_dumpable and not ctx.stays_dumpable:
            # First thing: until it execs, PID 1 is the host's Python in the container's PID namespace,
            # and no process there may open its /proc/1/exe (runc's CVE-2019-5736). None exists there yet.
            security.make_non_dumpable()
        if ctx.dies_with_parent:
            die_with_parent(parent_pid)
        # Detached (OCI create), init outlives its creator: until the gate, the channel's EOF ends it.
        while True:
            message = ctx.channel.recv()
            if isinstance(message, messages.RunStep):
                run_named_step(ctx, message.name)
            elif isinstance(message, messages.RunSteps):
                for name in message.names:  # never exec: the helper sends that one on its own
                    if not steps.run_and_report(ctx, name, steps.INIT):
                        break  # the helper stops at the Error: the rest of the run is not awaited
            elif isinstance(message, messages.RunFunction):
                ctx.channel.send(learner.run(ctx, message))
            elif message is None:  # the helper is gone, and nobody would supervise this container
                os._exit(1)
            else:
                ctx.channel.send_error(messages.unexpected(message, "RunStep, RunSteps or RunFunction"))
                os._exit(127)
    except BaseException:  # noqa: BLE001  anything unforeseen still reaches the learner
        ctx.channel.send_error(LabError(f"container init failed: {traceback.format_exc(limit=3)}",
                                        "an unexpected error in minicontainer", "please report it"))
    os._exit(127)


def run_named_step(ctx: steps.Context, name: str) -> None:
    if name == "exec" and ctx.gate_fd is not None:
        wait_at_gate(ctx)  # never returns
    if name == "exec":
        ctx.channel.send(messages.StepDone("exec", steps.report(steps.find(ctx.spec, "exec"), ctx), steps.INIT))
        exec_command(ctx)  # returns only by raising
    steps.run_and_report(ctx, name, steps.INIT)


def wait_at_gate(ctx: steps.Context) -> None:
    """OCI create: everything is ready but the command. Say so, let the creator go, and block until
    `start` opens the gate for reading; then exec. The process survives its creator's exit: whoever
    the caller made subreaper (conmon, containerd's shim) reaps it."""
    program = find_program(ctx.spec)
    if isinstance(program, LabError):  # as runc does, refuse at create, not at start
        ctx.channel.send_error(program)
        os._exit(127)
    ctx.channel.send(messages.StepDone("exec", "waits at the gate for `start`", steps.INIT))
    ctx.channel.close()
    # The gate is reached through our own fd: after pivot_root its path is not in our tree.
    gate = os.open(f"/proc/self/fd/{ctx.gate_fd}", os.O_WRONLY | os.O_CLOEXEC)  # blocks until start
    os.close(ctx.gate_fd)
    try:
        if ctx.spec.hooks.get("startContainer"):
            from .. import hooks
            hooks.run("startContainer", ctx.spec.hooks, {**ctx.paths["hook_state"], "status": "created"})
    except LabError as e:  # `start` reads why from the gate, and the container ends here
        os.write(gate, b"1" + str(e).encode()[:4000])
        os._exit(127)
    os.write(gate, b"0")
    os.close(gate)
    restore_default_signals()
    try:
        os.execve(program, ctx.spec.command, ctx.spec.env)
    except OSError as e:  # changed since create: nobody is listening now but the container's stderr
        os.write(2, f"minicontainer: cannot execute {program}: {e.strerror}\n".encode())
    os._exit(127)


def find_program(spec) -> str | LabError:
    """The command's path as execvpe would find it on the container's PATH, or why it cannot run."""
    name = spec.command[0]
    candidates = [name] if "/" in name else [os.path.join(d or ".", name)
                                              for d in spec.env.get("PATH", os.defpath).split(":")]
    found = [c for c in candidates if os.path.isfile(c)]
    runnable = [c for c in found if os.access(c, os.X_OK)]
    if runnable:
        return runnable[0]
    if found:
        return LabError(f"command {name!r} is not executable", "it lacks the execute bit, or a noexec mount",
                        "chmod +x it in the image", step="exec", exit_code=126)
    return LabError(f"command {name!r} not found in the container", f"no such program on the container's PATH "
                    f"({spec.env.get('PATH', '')})", "check the name; busybox's applets are in /bin and /sbin",
                    step="exec", exit_code=127)


def restore_default_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across execve: give the
    command the defaults it would get from runc or a shell (`yes | head` ends `yes` with SIGPIPE)."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def exec_command(ctx: steps.Context) -> None:
    """execve: on success this process is the command, and the channel (close-on-exec) closes."""
    spec = ctx.spec
    restore_default_signals()
    try:
        os.execvpe(spec.command[0], spec.command, spec.env)
    except FileNotFoundError:
        error = LabError(f"command {spec.command[0]!r} not found in the container",
                         f"no such program on the container's PATH ({spec.env.get('PATH', '')})",
                         "check the name; busybox's applets are in /bin and /sbin", step="exec", exit_code=127)
    except PermissionError:
        error = LabError(f"command {spec.command[0]!r} is not executable", "it lacks the execute bit, or a "
                         "noexec mount", "chmod +x it in the image", step="exec", exit_code=126)
    except OSError as e:  # ENOEXEC (a script without #!, another architecture), E2BIG, ELOOP...
        error = LabError(f"command {spec.command[0]!r} cannot be run: {e.strerror} ({learner.errno_name(e.errno)})",
                         "the kernel refused to execute it", "see execve(2) for this error", step="exec")
    ctx.channel.send_error(error)
    os._exit(127)
