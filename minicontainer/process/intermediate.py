"""The intermediate: the process between the helper and PID 1, only with a user namespace.

A PID namespace belongs to the user namespace its creator was in. For the container's root to
mount its own /proc, its PID namespace must belong to its user namespace: so this process joins
the cgroup (while it may still write there), unshares the user namespace, waits while the helper
writes its id maps from outside, becomes root in it, unshares the PID (and time) namespace, and
forks PID 1. Then it only waits for PID 1 and passes on how it ended.

Like init, it runs the steps the helper names (steps.py) and answers each.
"""

from __future__ import annotations

import os

from ..errors import LabError
from . import init, learner, messages, steps


def serve(ctx: steps.Context, helper_pid: int) -> None:
    """Child-side entry after the helper's fork. Never returns."""
    try:
        if ctx.dies_with_parent:
            init.die_with_parent(helper_pid)
        while True:
            message = ctx.channel.recv()
            if isinstance(message, messages.RunFunction):  # a learner's step in place of ours
                ctx.channel.send(learner.run(ctx, message))
                continue
            if message is None:
                os._exit(1)  # the helper is gone
            if not isinstance(message, messages.RunStep):
                ctx.channel.send_error(messages.unexpected(message, "RunStep or RunFunction"))
                os._exit(127)
            if message.name == "fork PID 1":
                fork_init(ctx)  # never returns
            steps.run_and_report(ctx, message.name, steps.INTERMEDIATE)
    except BaseException as e:  # noqa: BLE001
        ctx.channel.send_error(LabError(f"user namespace set-up failed: {e}", "the kernel refused the namespace or "
                                        "its id maps (unprivileged user namespaces restricted?)",
                                        "run `minicontainer doctor`"))
    os._exit(127)


def fork_init(ctx: steps.Context) -> None:
    """Fork PID 1, hand it the channel, and from then on only mirror how it ends."""
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        ctx.in_user_ns = True
        init.serve(ctx, me)
    ctx.channel.send(messages.InitPid(pid))
    ctx.channel.send(messages.StepDone("fork PID 1", f"PID {pid} on the host", steps.INTERMEDIATE))
    ctx.channel.close()  # the channel is PID 1's now
    if ctx.gate_fd is not None:
        os._exit(0)  # detached (OCI create): PID 1 is reaped by whoever the caller chose, not by us
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        os.kill(os.getpid(), -code)  # the same signal, so the helper sees what PID 1 saw
    os._exit(code)
