"""The helper: a fresh, single-threaded interpreter that builds and supervises one container for a caller
(the CLI's `run`, or a Jupyter kernel, which never unshares or forks itself: it is multithreaded).

    caller  --spawns-->  helper  --forks-->  [intermediate -->] init  --exec-->  command

The helper is the three parts together: the start sequence (sequence.py), the stage's server for a
notebook that runs it step by step (stage_server.py), and the supervisor that ties the container's life to
its caller's (supervisor.py). It runs in its own session, so a kernel restart that kills the kernel's
process group spares it, and it owns the clean-up.

    Create --> staged:  runs the steps the caller asks for (Advance), learner functions (RunFunction)
           --> created: every step but exec has run; init waits for Start
    Start  --> running: exec; relays Signal and Stop until the command exits --> Exited
"""

from __future__ import annotations

import signal
import socket
import sys

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


def main() -> None:
    caller = Channel(socket.socket(fileno=int(sys.argv[1])))
    helper = Helper(caller)
    # Asked to go away (not by the caller, who uses the channel): take the container down too.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: helper.kill_all())
    code = 127
    try:
        request = caller.recv()
        if request is None:
            return  # the caller went before it asked for anything
        if not isinstance(request, messages.Create):
            raise unexpected(request, "Create")
        helper.prepare(ContainerSpec.from_dict(request.spec))
        if request.staged:
            started = helper.staged()
        else:
            for step in helper.remaining()[:-1]:  # all but exec
                helper.run_one(step)
            started = helper.created()
        if not started:
            final = helper.final_stats()
            helper.cleanup()
            caller.send(messages.Exited(-signal.SIGKILL, final))
            return
        code = helper.supervise()
        final = helper.final_stats()
        helper.cleanup()
        caller.send(messages.Exited(code, final))
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
    sys.exit(0 if code >= 0 else 1)


if __name__ == "__main__":
    main()
