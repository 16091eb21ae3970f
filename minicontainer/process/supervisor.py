"""The supervisor: the lifetime policy of a supervised container (a notebook's or `minicontainer run`'s).
It lives in the helper, a process of its own session, and

- dies with its caller: when the caller's channel hits EOF, it kills the container's cgroup;
- if the helper itself dies, init's PR_SET_PDEATHSIG (steps.py) kills PID 1, and the kernel the rest;
- reaps PID 1, relays Signal and Stop (SIGTERM, then SIGKILL after the grace time), and reports the exit
  code with the cgroup's last counters; then removes what the sequence made (Sequence.cleanup).

An OCI container (`create`) has none of this: its engine's monitor (conmon, a shim) reaps it, and `delete`
removes it (lifecycle.py).
"""

from __future__ import annotations

import os
import select
import signal
import time

from ..state import Status
from . import messages
from .messages import unexpected
from .sequence import Sequence


class Supervisor(Sequence):
    """Waits for Start, then relays Signal and Stop until PID 1 exits; a closed caller kills the container."""

    def created(self) -> bool:
        """Every step but exec has run: wait for Start (True) or Stop / the caller's end (False)."""
        self.write_state(Status.CREATED)
        self.caller.send(messages.Created(self.init_pid, self.cgroup.dirs))
        while True:
            message = self.caller.recv()
            if isinstance(message, messages.Start):
                self.exec_command()
                return True
            if message is None or isinstance(message, messages.Stop):  # None: the caller is gone
                return False
            if not isinstance(message, messages.Signal):  # a created container's PID 1 takes no signal yet
                self.caller.send_error(unexpected(message, "Start, Signal or Stop"))

    def supervise(self) -> int:
        """Relay the caller's requests until the container's init exits; return its exit code."""
        pidfd = os.pidfd_open(self.child_pid)
        caller_open = True
        while True:
            timeout = None if self.stop_deadline is None else max(0.0, self.stop_deadline - time.monotonic())
            if caller_open and self.caller.ready():  # a message already buffered
                ready = [self.caller.sock]
            else:
                watched = [pidfd] + ([self.caller.sock] if caller_open else [])
                ready = select.select(watched, [], [], timeout)[0]
            if pidfd in ready:
                _, status = os.waitpid(self.child_pid, 0)
                os.close(pidfd)
                self.child_pid = 0
                return os.waitstatus_to_exitcode(status)
            if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                self.kill_all()  # grace period over
                self.stop_deadline = None
            if caller_open and self.caller.sock in ready:
                message = self.caller.recv()
                if message is None:  # the caller is gone: nobody will ever stop this container
                    caller_open = False
                    self.kill_all()
                elif isinstance(message, messages.Signal):
                    self._signal(message.signal)
                elif isinstance(message, messages.Stop):
                    self._signal(signal.SIGTERM)
                    self.stop_deadline = time.monotonic() + message.grace
                else:
                    self.caller.send_error(unexpected(message, "Signal or Stop"))

