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

import json
import os
import select
import signal
import socket
import time

from ..cgroups import Cgroup
from ..spec import ContainerSpec
from ..state import Status
from . import messages, steps
from .channel import Channel
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
            self.check_deadline()
            if caller_open and self.caller.sock in ready:
                caller_open = self.handle(self.caller.recv())

    def report_exit(self, code: int) -> None:
        """PID 1 has been reaped: the cgroup's last counters, everything removed, then the caller told."""
        final = self.final_stats()
        self.cleanup()
        self.caller.send(messages.Exited(code, final))

    # -- supervision moved to another process (the caller's shared helper, shared.py) --------------
    def hand_over(self, to: socket.socket) -> None:
        """Send what supervising this running container takes: the facts cleanup needs, the caller's channel
        and PID 1's pidfd (SCM_RIGHTS), and whatever the caller sent that we have read but not handled.
        The receiver becomes our child's parent once we exit (it is a subreaper)."""
        record = {"spec": self.spec.to_dict(), "cgroup": self.cgroup.dirs, "child_pid": self.child_pid,
                  "init_pid": self.init_pid, "owns_state": self.owns_state, "owns_cgroup": self.owns_cgroup,
                  "networked": self.networked, "unread": self.caller.unread().decode(),
                  "paths": {k: v for k, v in self.ctx.paths.items() if k != "cgroup_dirs"}}
        fds = [self.caller.fileno()]
        if self.init_pidfd is not None:
            record["init_pidfd"] = len(fds)
            fds.append(self.init_pidfd)
        if self.usernet is not None:  # its exit pipe goes too: slirp4netns lives while the receiver holds it
            record["usernet"] = {"pid": self.usernet.pid, "api_socket": self.usernet.api_socket,
                                 "pidfd": len(fds), "exit_fd": len(fds) + 1}
            fds += [self.usernet.pidfd, self.usernet.exit_fd]
        socket.send_fds(to, [json.dumps(record).encode()], fds)

    @classmethod
    def taken_over(cls, record: dict, fds: list[int]) -> Supervisor:
        """The receiving end of hand_over: a supervisor of that container in this process."""
        caller = Channel(socket.socket(fileno=fds[0]), unread=record["unread"].encode())
        supervisor = cls(caller)
        supervisor.spec = ContainerSpec.from_dict(record["spec"])
        supervisor.cgroup = Cgroup(supervisor.spec.name, dirs=record["cgroup"])
        supervisor.child_pid, supervisor.init_pid = record["child_pid"], record["init_pid"]
        supervisor.init_pidfd = fds[record["init_pidfd"]] if "init_pidfd" in record else None
        if "usernet" in record:
            from ..usernet import Slirp
            slirp = record["usernet"]
            supervisor.usernet = Slirp(slirp["pid"], fds[slirp["pidfd"]], fds[slirp["exit_fd"]], slirp["api_socket"])
        supervisor.owns_state, supervisor.owns_cgroup = record["owns_state"], record["owns_cgroup"]
        supervisor.networked = record["networked"]
        supervisor.ctx = steps.Context(supervisor.spec, record["paths"], supervisor.cgroup)
        supervisor.status = Status.RUNNING
        return supervisor

    def check_deadline(self) -> None:
        """A Stop's grace period over: kill every process of the container."""
        if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
            self.kill_all()
            self.stop_deadline = None

    def handle(self, message) -> bool:
        """One message from the caller of a running container; False once the caller is gone."""
        if message is None:  # nobody will ever stop this container
            self.kill_all()
            return False
        if isinstance(message, messages.Signal):
            self._signal(message.signal)
        elif isinstance(message, messages.Stop):
            self._signal(signal.SIGTERM)
            self.stop_deadline = time.monotonic() + message.grace
        else:
            self.caller.send_error(unexpected(message, "Signal or Stop"))
        return True
