"""The helper: a single-threaded process that builds one container for a caller, forked from the CLI (its
`run`) or from the caller's shared helper (shared.py: a Jupyter kernel never unshares or forks itself, since
it is multithreaded), or, to compare, a fresh interpreter.

    caller  --forks (or its shared helper does)-->  helper  --forks-->  [intermediate -->] init  --exec-->  command

The helper is the three parts together: the start sequence (sequence.py), the stage's server for a
notebook that runs it step by step (stage_server.py), and the supervisor that ties the container's life to
its caller's (supervisor.py); forked by a shared helper, it hands the running container over to that one
and exits. It runs in its own session, so a kernel restart that kills the kernel's process group spares
it, and it owns the clean-up.

    Create --> staged:  runs the steps the caller asks for (Advance), learner functions (RunFunction)
           --> created: every step but exec has run; init waits for Start
    Start  --> running: exec; relays Signal and Stop until the command exits --> Exited
                        (or hands over: Supervisor.hand_over)
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time

from .. import kernel
from ..errors import LabError
from ..spec import ContainerSpec
from . import messages
from .channel import Channel
from .messages import unexpected
from .sequence import StageEnded
from .stage_server import StageServer
from .supervisor import Supervisor


class Helper(StageServer, Supervisor):
    """A supervised container's start sequence, served step by step or all at once."""


def serve(channel_fd: int, hand_over: socket.socket | None = None) -> int:
    """The helper's life: one Create request on the channel, that container built, supervised and removed.
    With `hand_over` (a helper forked by the caller's shared helper), supervision of the running container
    goes there instead, and this process ends. Returns the exit status for the helper process."""
    caller = Channel(socket.socket(fileno=channel_fd))
    helper = Helper(caller)
    # Asked to go away (not by the caller, who uses the channel): take the container down too.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: helper.kill_all())
    code = 127
    try:
        request = caller.recv()
        if request is None:
            return 0  # the caller went before it asked for anything
        if not isinstance(request, messages.Create):
            raise unexpected(request, "Create")
        helper.prepare(ContainerSpec.from_dict(request.spec))
        helper.ctx.hands_over = hand_over is not None
        if request.staged:
            # A notebook's staged container, rootless by an unprivileged user and joining nothing: its PID 1 stays
            # dumpable until exec, or its owner could not read its /proc (a non-dumpable process's needs
            # CAP_SYS_PTRACE on the host). Only here: until that exec no container's program can enter its
            # namespaces (exec needs it running; a rootless sibling has no rights in its user namespace to join
            # it), only its own user's processes.
            spec = helper.ctx.spec
            helper.ctx.stays_dumpable = spec.rootless and os.geteuid() != 0 and not spec.join
            started = helper.staged()
        else:
            helper.run_steps(helper.remaining()[:-1])  # all but exec
            started = helper.created()
        if not started:
            final = helper.final_stats()
            helper.cleanup()
            caller.send(messages.Exited(-signal.SIGKILL, final))
            return 0
        if hand_over is not None:
            helper.hand_over(hand_over)
            return 0
        code = helper.supervise()
        helper.report_exit(code)
    except LabError as e:
        helper.cleanup()
        caller.send(messages.Error.of(e, ended=True))
    except StageEnded as e:
        helper.cleanup()
        caller.send(messages.Error.of(LabError(str(e), "it was killed, most likely by the memory limit (too small "
                                               "for start-up)", "raise the memory limit (32M or more)"), ended=True))
    except BaseException as e:
        helper.cleanup()
        caller.send(messages.Error.of(LabError(f"the helper failed: {type(e).__name__}: {e}", "an unexpected error",
                                               "please report it with the output of `minicontainer doctor`"),
                                      ended=True))
    return 0 if code >= 0 else 1


FORKED_NAME = "mc-helper"


class ForkedHelper:
    """A helper forked from its caller (no second interpreter to start), seen as subprocess.Popen sees a
    spawned one: pid, poll, wait, send_signal."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"helper {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


def can_fork_for(*stdio) -> bool:
    """Whether this caller may fork its helper: single-threaded, and stdio the fork can hand over as it is
    (a pipe to be made, subprocess.PIPE, is the spawned helper's)."""
    return single_threaded() and all(s is None or s == subprocess.DEVNULL or hasattr(s, "fileno") or
                                     isinstance(s, int) and s >= 0 for s in stdio)


def single_threaded() -> bool:
    """Only then may a process fork and go on running Python in the child (a Jupyter kernel may not)."""
    with open("/proc/self/status") as f:
        return next(line for line in f if line.startswith("Threads:")).split()[1] == "1"


def fork_helper(channel_fd: int, stdin=None, stdout=None, stderr=None, pass_fds=(), *, hand_over_fd: int | None = None,
                in_child=None) -> ForkedHelper:
    """The helper as a fork of a single-threaded process that has imported the runtime already (the CLI, or
    a caller's shared helper, which also gives hand_over_fd and in_child: its own set-up of the child): in a
    session of its own, with the given stdio (None: ours; an fd; subprocess.DEVNULL), and no other fd of
    ours but the channel, pass_fds and hand_over_fd."""
    gc.freeze()  # as before each fork of the runtime's (sequence.py): the collector leaves shared pages alone
    pid = os.fork()
    if pid:
        return ForkedHelper(pid)
    code = 127
    try:
        os.setsid()
        kernel.set_process_name(FORKED_NAME)  # its command line is its caller's: ps and the tests find it by this
        reset_signals()
        if in_child is not None:
            in_child()
        for target, given in enumerate((stdin, stdout, stderr)):
            if given == subprocess.DEVNULL:
                given = os.open(os.devnull, os.O_RDWR)
            elif hasattr(given, "fileno"):
                given = given.fileno()
            if given is not None:
                os.dup2(given, target)
        close_fds_but({0, 1, 2, channel_fd, *pass_fds} | ({hand_over_fd} if hand_over_fd is not None else set()))
        code = serve(channel_fd, None if hand_over_fd is None else socket.socket(fileno=hand_over_fd))
    except BaseException:  # noqa: BLE001  before serve() could report on the channel: say it on stderr
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)  # never back into the caller's code, nor its atexit handlers


def reset_signals() -> None:
    """In a fork: the forking process's handlers (the CLI's signal forwarding) are not ours. As a fresh
    interpreter has them: SIGPIPE and SIGXFSZ ignored (a closed caller's channel is then a BrokenPipeError
    to clean up after, not a silent death); every other signal at its default; no alarm pending."""
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_IGN if sig in (signal.SIGPIPE, signal.SIGXFSZ) else signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.alarm(0)


def close_fds_but(keep: set[int]) -> None:
    """In a fork: close every fd of the forking process's but these."""
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd, closed already


def main() -> None:
    sys.exit(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
