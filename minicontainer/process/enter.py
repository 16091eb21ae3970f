"""Run a command inside a running container, as nsenter does: setns, then fork and exec.

setns only enters namespaces that exist (unshare and clone create them), and
entering a PID namespace applies to children: so this fresh helper enters, then
forks the command, which joins the container's cgroup and execs. Usage:

    python -m minicontainer.process.enter '{"pid": ..., "cgroup": [...], "command": [...], "spec": {...}}'
"""

from __future__ import annotations

import json
import os
import sys

from .. import namespaces, seccomp, security, terminal
from ..errors import LabError
from ..spec import ContainerSpec
from . import steps
from .init import die_with_parent, restore_default_signals


def enter_and_exec(request: dict, detach: bool = False, pid_file: str | None = None,
                   console_socket: int | None = None) -> int:
    """Enter the container's namespaces and cgroup, run the command, return its exit code. detach (OCI
    exec --detach): return 0 once it runs, and leave it to the caller's subreaper, as runc does.
    console_socket (OCI exec --tty): a connected socket to the engine, which gets the master side of a
    pty made in the container's own devpts; the command gets its slave as stdio and controlling tty."""
    spec = ContainerSpec.from_dict(request["spec"])
    if spec.security.non_dumpable:
        # Before setns: the child forked below is, until its execve, the host's Python in the
        # container's PID namespace, and must not give the container /proc/PID/exe (runc's CVE-2019-5736).
        security.make_non_dumpable()
    # Opened before setns: once in the container's mount namespace, the host's paths are gone.
    try:
        procs_fds = [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC) for d in request["cgroup"]]
    except FileNotFoundError:  # its helper removes the cgroup once PID 1 is gone
        raise LabError(f"container {request.get('name', '')!r} ended before the command could join its cgroup",
                       "its PID 1 exited (or was stopped) just now",
                       "list running containers with `minicontainer ps`; start it again") from None
    if spec.security.oci_seccomp is not None:
        seccomp.libseccomp()  # before setns into the mount namespace hides the host's library
    elif spec.security.seccomp:
        seccomp.compiled(spec.security.seccomp, spec.security.refuses_namespaces, tuple(spec.security.allow_syscalls))
    # The engine's pid file is a host path: open it while host paths still resolve.
    pid_fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644) if pid_file else None
    kinds = list(spec.namespaces) + [k for k in spec.join if k not in spec.namespaces]  # a pod's shared ones too
    namespaces.enter(namespaces.open_namespaces(request["pid"], kinds))
    me = os.getpid()
    child = os.fork()
    if child == 0:
        command, env = request["command"], spec.env
        try:
            if pid_fd is not None:
                os.close(pid_fd)  # the engine's file on the host: nothing the container's process may keep
            if not detach:
                die_with_parent(me)
            if "user" in kinds:  # its own, or the one a rootless pod shares
                become_root_inside(spec, die_with_parent=not detach)
            for fd in procs_fds:
                os.write(fd, b"0")
                os.close(fd)  # the host's cgroupfs: nothing the container's process may keep
            if console_socket is not None:
                give_terminal_to_engine(console_socket)
            os.chdir(request.get("cwd", "/"))
            # The same capabilities, seccomp filters, user and no_new_privs as the container's init.
            ctx = steps.Context(spec, detached=detach)
            for step in steps.plan(spec):
                if step.name in steps.PROCESS_DEFENCES:
                    steps.run_step(step, ctx)
            restore_default_signals()
            os.execvpe(command[0], command, env)
        except FileNotFoundError:
            print(f"minicontainer exec: {command[0]!r} not found in the container "
                  f"(PATH={env.get('PATH', '')})", file=sys.stderr)
        except OSError as e:
            print(f"minicontainer exec: cannot run {command[0]!r}: {e.strerror}", file=sys.stderr)
        except LabError as e:
            print(f"minicontainer exec: {e}", file=sys.stderr)
        os._exit(127)
    for fd in procs_fds:
        os.close(fd)
    if console_socket is not None:
        os.close(console_socket)  # the child sent the master; the engine holds the terminal now
    if pid_fd is not None:
        os.write(pid_fd, str(child).encode())
        os.close(pid_fd)
    if detach:
        return 0
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def give_terminal_to_engine(console_socket: int) -> None:
    """In the exec'd process, inside the container's mount namespace (whose /dev/pts is the container's
    devpts): a new pty, its master sent to the engine, its slave our stdio and controlling terminal."""
    master, slave, _ = terminal.open_pty_in("/dev/pts")
    terminal.send_console(console_socket, master)  # closes the socket
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    terminal.take_controlling_terminal(0)


def become_root_inside(spec: ContainerSpec, die_with_parent: bool = True) -> None:
    """After setns into a user namespace our ids are the host's, which it does not map: they show
    as the overflow id (65534) inside. Take the namespace's root, as its init did (and nsenter -U
    does); the spec's user, if any, follows with the other defences."""
    with open("/proc/self/setgroups") as f:
        if f.read().strip() == "allow":  # "deny" (a rootless map): groups cannot change, nor need to
            os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    steps.rearm_after_credentials_change(spec, die_with_parent)


def main() -> None:
    try:
        code = enter_and_exec(json.loads(sys.argv[1]))
    except LabError as e:
        print(f"minicontainer exec: {e}", file=sys.stderr)
        code = 126
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()

