"""The caller's shared helper: one long-lived, single-threaded interpreter per Python caller (a Jupyter
kernel, a script, the test suite), which imports the runtime once and forks each container's helper from
itself. A container's start costs a fork, not an interpreter; a running container costs no process of the
runtime's at all.

    caller ──(once)──> shared helper ──fork──> helper ──clone3(CLONE_PARENT)──> [intermediate ──>] init ──> command
                            ▲   ▲                  │                                      │
                            │   └── hand_over ─────┘  once the command runs; then the     │
                            │                         helper exits                        │
                            └──── parent of ──────────────────────────────────────────────┘

Each container still starts in a helper of its own (helper.py: its steps, or a stage's step by step, and a
learner's functions, none of which may take the others down). The helper forks the container's first
process as its own sibling: this process is its parent from birth, so it dies with this process
(PR_SET_PDEATHSIG) whoever else has died. Once its command runs, the helper hands supervision over
(Supervisor.hand_over: the caller's channel and PID 1's pidfd by SCM_RIGHTS) and exits; one event loop here
reaps, relays Signal and Stop and removes what each container made. (Where clone3 is refused, the helper
forks as usual and this process, a subreaper, becomes PID 1's parent when the helper exits; PID 1 then
cannot die with it.)

Who removes what, when something is killed:
- the caller: every container's channel hits EOF, so each is killed and removed; the control socket's EOF
  then lets this process exit;
- this process: the helpers still starting die with it (PR_SET_PDEATHSIG), and so does every container's
  first process; the caller's watcher thread (Client) removes what is left from their state on disk;
- both: the containers' processes die with this one; their cgroups and state dirs stay until the next
  shared helper starts, or `minicontainer cleanup` runs (both remove what a dead supervisor left);
- a helper while it starts its container: this process tears that container down from its state on disk.

The control socket carries one request per container: which fds are the container's channel, stdio and
extra fds (SCM_RIGHTS), the caller's state root and environment; the answer is the new helper's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from .. import kernel, state
from ..errors import LabError
from . import helper as helper_process
from . import spawn
from .supervisor import Supervisor

NAME = "mc-shared"  # its comm, as ps shows it (its command line says python -m minicontainer.process.shared)
MAX_FDS = 64


# -- the shared helper's side ------------------------------------------------------------------------

class SharedHelper:
    def __init__(self, control: socket.socket):
        self.control = control
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ, self.on_request)
        self.starting: dict[int, tuple[dict, socket.socket]] = {}  # helper pid -> (its request, hand-over socket)
        self.running: dict[int, Supervisor] = {}                       # PID 1's parent (our child) -> its supervisor
        self.runs: dict[int, socket.socket] = {}                       # a module run for the caller -> its status's way
        # PID 1 born our child (a helper's sibling) that ended before its helper handed it over: its exit code.
        self.unclaimed: dict[int, int] = {}
        self.accepting = True
        # SIGCHLD wakes the loop through this socket (signal.set_wakeup_fd): every child is reaped in reap().
        self.wake, wake_writer = socket.socketpair()
        self.wake.setblocking(False)
        wake_writer.setblocking(False)
        self._wake_writer = wake_writer
        signal.set_wakeup_fd(wake_writer.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.wake, selectors.EVENT_READ, lambda sock: sock.recv(4096))

    def loop(self) -> None:
        while self.accepting or self.starting or self.running or self.runs:
            deadlines = [s.stop_deadline for s in self.running.values() if s.stop_deadline is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self.selector.select(timeout):
                try:
                    key.data(key.fileobj)
                except Exception as e:  # noqa: BLE001  what went wrong for one container must not end the others
                    print(f"minicontainer shared helper: {type(e).__name__}: {e}", file=sys.stderr)
            for supervisor in list(self.running.values()):
                supervisor.check_deadline()
            self.reap()

    # -- a new container ---------------------------------------------------------------------------
    def on_request(self, control: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, MAX_FDS)
        except OSError:
            data, fds = b"", []
        if not data:  # the caller is gone: its containers' channels tell each of them
            self.selector.unregister(control)
            self.accepting = False
            return
        fds = [high(fd) for fd in fds]
        pid = 0
        try:
            request = json.loads(data)
            pid = self.fork_module(request, fds) if request.get("kind") == "module" else self.fork_helper(request, fds)
        except Exception as e:  # noqa: BLE001  one request that fails (fork refused) must not end the others
            print(f"minicontainer shared helper: could not serve a request: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            for fd in fds:
                os.close(fd)  # the helper has them now: a copy here would hide its death from the caller
            control.send(json.dumps({"pid": pid}).encode())

    def fork_helper(self, request: dict, fds: list[int]) -> int:
        mine, theirs = socket.socketpair()
        theirs = socket.socket(fileno=high(theirs.detach()))
        stdio = [None if i < 0 else fds[i] for i in request["stdio"]]
        extra = [(fds[i], number) for i, number in request["pass"]]
        me = os.getpid()

        def in_child() -> None:
            kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)  # the shared helper's death ends our start
            if os.getppid() != me:
                os._exit(1)
            signal.set_wakeup_fd(-1)
            os.environ.clear()
            os.environ.update(request["env"])  # the caller's now, not as it was when we were spawned
            state.use_root(request["root"])
            for received, number in extra:  # at the numbers the caller's spec names (keep_fds)
                if received != number:
                    os.dup2(received, number)

        helper = helper_process.fork_helper(fds[request["channel"]], *stdio, pass_fds=[n for _, n in extra],
                                            hand_over_fd=theirs.fileno(), in_child=in_child)
        theirs.close()
        self.starting[helper.pid] = (request, mine)
        self.selector.register(mine, selectors.EVENT_READ, lambda sock, pid=helper.pid: self.on_hand_over(pid))
        return helper.pid

    def fork_module(self, request: dict, fds: list[int]) -> int:
        """`python -m MODULE ARGS` for the caller, as a fork of ours (the runtime imported already): `exec`
        in a container (process/enter.py), a look inside another namespace (inspect.py). Its exit status goes
        back on the request's result socket once we reap it."""
        result = socket.socket(fileno=os.dup(fds[request["result"]]))
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != me:
                    os._exit(1)
                signal.set_wakeup_fd(-1)
                helper_process.reset_signals()
                os.environ.clear()
                os.environ.update(request["env"])
                os.chdir(request["cwd"])
                for target, index in enumerate(request["stdio"]):
                    if index >= 0:
                        os.dup2(fds[index], target)
                helper_process.close_fds_but({0, 1, 2})
                sys.argv = [request["module"], *request["args"]]
                code = 0
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001  never back into the shared helper's loop
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        self.runs[pid] = result
        return pid

    def on_hand_over(self, helper_pid: int, reaped: bool = False) -> None:
        """The helper's last words: supervision of its running container (or EOF: it ended without)."""
        request, sock = self.starting[helper_pid]
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS)
        except OSError:
            data, fds = b"", []
        if not data:
            return  # it ends on its own; reap() hears of it
        del self.starting[helper_pid]
        self.selector.unregister(sock)
        sock.close()
        if not reaped:
            os.waitpid(helper_pid, 0)  # it exits right after: only then is its child ours
        supervisor = Supervisor.taken_over(json.loads(data), fds)
        supervisor.request = request  # (its state.json names us already: Sequence.exec_command)
        self.running[supervisor.child_pid] = supervisor
        self.selector.register(supervisor.caller.sock, selectors.EVENT_READ,
                               lambda sock, s=supervisor: self.on_caller(s))
        if supervisor.child_pid in self.unclaimed:  # born ours, it ended (and we reaped it) before the hand-over
            self.container_ended(self.running.pop(supervisor.child_pid), self.unclaimed.pop(supervisor.child_pid))
            return
        if b"\n" in supervisor.caller.unread():
            self.on_caller(supervisor)  # sent before the hand-over, read by the helper, not yet handled

    def on_caller(self, supervisor: Supervisor) -> None:
        """A message from a running container's caller (EOF: it is gone, and the container goes)."""
        while True:
            if not supervisor.handle(supervisor.caller.recv()):
                self.selector.unregister(supervisor.caller.sock)
                return
            if b"\n" not in supervisor.caller.unread():
                return

    # -- endings -----------------------------------------------------------------------------------
    def reap(self) -> None:
        """Every child that has ended: a helper (handed over, finished, or crashed), a container's PID 1
        (or its intermediate), or an orphan of one of them that reached us as their subreaper."""
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if ended is None:
                return
            pid = ended.si_pid
            if pid in self.starting:
                self.on_hand_over(pid, reaped=True)  # its hand-over may have come after we last looked
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            try:
                if pid in self.starting:
                    self.helper_ended(pid)
                elif pid in self.running:
                    self.container_ended(self.running.pop(pid), code)
                elif pid in self.runs:
                    result = self.runs.pop(pid)
                    try:
                        result.send(json.dumps({"code": code}).encode())
                    except OSError:
                        pass  # the caller stopped waiting
                    result.close()
                else:  # a helper's sibling not handed over yet (or an orphan that reached us: never claimed)
                    self.unclaimed[pid] = code
                    while len(self.unclaimed) > 1024:
                        del self.unclaimed[next(iter(self.unclaimed))]
            except Exception as e:  # noqa: BLE001  one container's failed clean-up must not end the others'
                print(f"minicontainer shared helper: clean-up after process {pid} failed: {type(e).__name__}: {e} "
                      "(run `minicontainer cleanup`)", file=sys.stderr)

    def helper_ended(self, pid: int) -> None:
        """A helper that did not hand over: it removed its container, unless it was killed first."""
        request, sock = self.starting.pop(pid)
        self.selector.unregister(sock)
        sock.close()
        state.use_root(request["root"])
        info = state.read_state(state.dir_name(request["name"]))
        if info and info.get("helper_pid") in (pid, os.getpid()):  # us: it died just before its hand-over
            from ..lifecycle import teardown
            with callers_environment(request):
                teardown(info)

    def container_ended(self, supervisor: Supervisor, code: int) -> None:
        supervisor.child_pid = 0  # reaped: that PID is not ours any more
        state.use_root(supervisor.request["root"])
        if supervisor.caller.sock.fileno() >= 0:
            try:
                self.selector.unregister(supervisor.caller.sock)
            except KeyError:
                pass  # the caller had gone already
        with callers_environment(supervisor.request):
            supervisor.report_exit(code)  # its network's teardown reads the firewall backend from it
        supervisor.caller.close()
        if supervisor.init_pidfd is not None:
            os.close(supervisor.init_pidfd)


@contextlib.contextmanager
def callers_environment(request: dict):
    """The caller's environment as it was when it asked for this container, while we work for it."""
    ours = dict(os.environ)
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(ours)


def high(fd: int) -> int:
    """The same open file at a number of 512 or more, so that a helper may dup2 the fds its caller passes to
    the (low) numbers the caller gave them without overwriting any other it needs."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 512)
    os.close(fd)
    return moved


def serve(control_fd: int) -> None:
    kernel.set_process_name(NAME)
    kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)  # PID 1 of each container becomes ours when its helper exits
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a notebook's interrupt is for the kernel, not for us
    # Imported now, once, so that each fork has them; then frozen, so that the collector never writes to
    # (and so copies) the pages the forks share with us.
    from .. import cgroups, lifecycle, namespaces, rootfs, seccomp, security  # noqa: F401
    from . import intermediate, stage_server, steps  # noqa: F401
    cgroups.detect()
    try:  # the lab's default filters, compiled once for every container of this caller
        default = security.Security()
        seccomp.compiled(default.seccomp, default.refuses_namespaces, tuple(default.allow_syscalls))
    except LabError:
        pass  # no libseccomp: each container that asks for a filter says so itself
    remove_what_dead_supervisors_left()
    gc.freeze()
    SharedHelper(socket.socket(fileno=control_fd)).loop()


def remove_what_dead_supervisors_left() -> None:
    """A caller killed together with its shared helper leaves its containers' cgroups and state (their
    processes died with the shared helper): the next shared helper of this state root removes them."""
    from ..lifecycle import remove_stale
    try:
        for line in remove_stale()[0]:
            print(f"minicontainer shared helper: removed {line}, left by a supervisor that was killed", file=sys.stderr)
    except (OSError, LabError) as e:
        print(f"minicontainer shared helper: could not remove what a killed run left ({e}): run `minicontainer "
              "cleanup`", file=sys.stderr)


def main() -> None:
    serve(int(sys.argv[1]))


# -- the caller's side -------------------------------------------------------------------------------

class Client:
    """The caller's end: starts its shared helper once, and asks it for each container's helper."""

    def __init__(self):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = spawn.start("minicontainer.process.shared", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                                   start_new_session=True, stdin=subprocess.DEVNULL)
        theirs.close()
        self.control = mine
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.pidfd = os.pidfd_open(self.process.pid)
        self.handles: set[Handle] = set()  # the containers it holds for us
        self.watcher = threading.Thread(target=self._watch, name="minicontainer shared helper", daemon=True)
        self.watcher.start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork_helper(self, name: str, channel: int, stdin, stdout, stderr, pass_fds=()) -> Handle:
        """A helper for container `name`, forked by the shared helper, serving `channel`."""
        fds, indexes, pipes = [channel], [], {}
        for target, given in enumerate((stdin, stdout, stderr)):
            if given is None:
                indexes.append(-1)  # the shared helper's own, which were ours when it started
                continue
            if given == subprocess.DEVNULL:
                given = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                pipes[target] = (given, None)
            elif given == subprocess.PIPE:
                read, write = os.pipe2(os.O_CLOEXEC)
                ours, theirs = (write, read) if target == 0 else (read, write)
                pipes[target] = (theirs, ours)
                given = theirs
            elif given == subprocess.STDOUT and target == 2:
                given = fds[indexes[1]] if indexes[1] >= 0 else 1
            elif hasattr(given, "fileno"):
                given = given.fileno()
            fds.append(given)
            indexes.append(len(fds) - 1)
        extra = []
        for number in pass_fds:
            fds.append(number)
            extra.append((len(fds) - 1, number))
        request = {"name": name, "channel": 0, "stdio": indexes, "pass": extra, "root": state.root(),
                   "env": dict(os.environ)}
        with self.lock:
            socket.send_fds(self.control, [json.dumps(request).encode()], fds)
            answer = self.control.recv(4096)
        for theirs, _ in pipes.values():
            os.close(theirs)
        pid = json.loads(answer)["pid"] if answer else 0
        if not pid:
            raise LabError("the shared helper could not fork a helper for the container", "it ended, or fork "
                           "failed (out of memory or of pids?)", "see its error output above; try again")
        handle = Handle(pid, name, self)
        self.handles.add(handle)
        modes = {0: "wb", 1: "rb", 2: "rb"}
        for target, (_, ours) in pipes.items():
            if ours is not None:
                setattr(handle, ("stdin", "stdout", "stderr")[target], os.fdopen(ours, modes[target]))
        return handle

    def run_module(self, module: str, args=(), *, input=None, capture_output: bool = False, text: bool = False,
                   timeout: float | None = None, start_new_session: bool = True) -> subprocess.CompletedProcess:
        """subprocess.run of `python -m MODULE ARGS`, as a fork of the shared helper: no interpreter to start.
        It runs in the shared helper's session (start_new_session is so already), in our cwd and environment."""
        import selectors as selecting
        ours, theirs = socket.socketpair()
        fds, stdio, readers, writer = [theirs.fileno()], [-1, -1, -1], {}, None
        if input is None:
            fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        else:
            read, writer = os.pipe2(os.O_CLOEXEC)
            fds.append(read)
            input = input.encode() if isinstance(input, str) else input
        stdio[0] = len(fds) - 1
        if capture_output:
            for target in (1, 2):
                read, write = os.pipe2(os.O_CLOEXEC)
                readers[read] = []
                fds.append(write)
                stdio[target] = len(fds) - 1
        message = {"kind": "module", "module": module, "args": [str(a) for a in args], "result": 0, "stdio": stdio,
                   "env": dict(os.environ), "cwd": os.getcwd()}
        try:
            with self.lock:
                socket.send_fds(self.control, [json.dumps(message).encode()], fds)
                answer = self.control.recv(4096)
        finally:
            for fd in fds[1:]:
                os.close(fd)
            theirs.close()
        pid = json.loads(answer)["pid"] if answer else 0
        watched = selecting.DefaultSelector()
        try:
            if not pid:
                raise LabError(f"the shared helper could not run {module}", "it ended, or fork failed",
                               "try again; see `minicontainer doctor`")
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:  # it ended and the shared helper reaped it already: its status still comes
                pidfd = None
            for read in readers:
                watched.register(read, selecting.EVENT_READ)
            if writer is not None:
                os.set_blocking(writer, False)
                watched.register(writer, selecting.EVENT_WRITE)
            watched.register(ours, selecting.EVENT_READ)
            status, deadline, timed_out = b"", None if timeout is None else time.monotonic() + timeout, False
            while watched.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if pidfd is not None:
                        # What it forked dies with it (PDEATHSIG); it may have ended already, while something it
                        # left running (a command's background job) holds its output open: stop reading either way.
                        with contextlib.suppress(ProcessLookupError):
                            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    timed_out = True
                    break
                for key, _ in watched.select(None if left is None else left):
                    if key.fd == writer:
                        try:
                            input = input[os.write(writer, input[:65536]):]
                        except BrokenPipeError:
                            input = b""
                        if not input:
                            watched.unregister(writer)
                            os.close(writer)
                            writer = None
                        continue
                    chunk = os.read(key.fd, 65536) if key.fd in readers else ours.recv(4096)
                    if key.fd in readers:
                        readers[key.fd].append(chunk)
                    else:
                        status += chunk
                    if not chunk:
                        watched.unregister(key.fd)
            if pidfd is not None:
                os.close(pidfd)
        finally:
            watched.close()
            for fd in [*readers, writer, ours.detach()]:
                if fd is not None:
                    os.close(fd)
        out, err = [b"".join(chunks) for chunks in readers.values()] or [None, None]
        if text and capture_output:
            out, err = out.decode(errors="replace"), err.decode(errors="replace")
        if timed_out:
            raise subprocess.TimeoutExpired([module, *args], timeout, out, err)
        code = json.loads(status)["code"] if status else -signal.SIGKILL
        return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code, out, err)

    def _watch(self) -> None:
        """If the shared helper dies (killed), nobody supervises this caller's running containers: remove
        them from their state on disk."""
        import select
        select.select([self.pidfd], [], [])
        self.process.wait()
        from ..lifecycle import teardown
        for handle in list(self.handles):
            info = state.read_state(state.dir_name(handle.name))
            if info and info.get("helper_pid") in (self.process.pid, handle.pid):
                teardown(info, grace=2.0)


_client: Client | None = None
_client_lock = threading.Lock()


def client() -> Client:
    """This process's shared helper, started on first use (and again if it died, or we are a fork)."""
    global _client
    with _client_lock:
        if _client is None or _client.owner != os.getpid() or not _client.alive():
            _client = spawn.shared_client = Client()
        return _client


class Handle(helper_process.ForkedHelper):
    """A container's helper as its caller sees it (as subprocess.Popen sees a process). Its pid is the
    helper's that starts the container; after the hand-over the shared helper supervises it. Done once
    neither holds the container any more. stdin/stdout/stderr: the caller's ends of the pipes it asked for
    (subprocess.PIPE)."""

    def __init__(self, pid: int, name: str, client: Client):
        self.pid, self.name, self.client = pid, name, client
        try:
            self.pidfd = os.pidfd_open(pid)  # before it can end normally: it waits for our Create
        except ProcessLookupError:  # it died at once: the channel's EOF tells the caller
            self.pidfd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # always readable: "ended"
        self.stdin = self.stdout = self.stderr = None
        self.returncode: int | None = None

    def _helper_alive(self) -> bool:
        import select
        return not select.select([self.pidfd], [], [], 0)[0]

    def _held_by(self) -> int | None:
        """Which of ours holds the container's state: the helper's pid, the shared helper's, or None."""
        info = state.read_state(state.dir_name(self.name)) or {}
        holder = info.get("helper_pid")
        return holder if holder in (self.pid, self.client.process.pid) else None

    def poll(self) -> int | None:
        if self.returncode is None:
            if not self._helper_alive() and (self._held_by() is None or not self.client.alive()):
                self.returncode = 0 if self._held_by() is None else -signal.SIGKILL
                os.close(self.pidfd)
                self.client.handles.discard(self)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Give up on the container: signal its helper while it starts it (its handler kills the container,
        then it removes what it made); after the hand-over, tear the container down from its state."""
        if self.poll() is not None:
            return
        if self._helper_alive():
            signal.pidfd_send_signal(self.pidfd, sig)
        elif self._held_by() == self.client.process.pid:
            from ..lifecycle import teardown
            teardown(state.read_state(state.dir_name(self.name)) or {"name": self.name}, grace=2.0)


if __name__ == "__main__":
    main()
