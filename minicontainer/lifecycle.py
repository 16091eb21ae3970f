"""A container's life as the OCI runtime spec defines it: create, start, state, kill, delete.

    create  -->  created  --start-->  running  --(init exits)-->  stopped  --delete-->  (gone)

Each verb is a separate run of the runtime, as an engine calls runc: `create` runs every step of the
start sequence in its own process (the helper's part, steps.py), leaves PID 1 blocked at the exec gate,
records the container under the state root and exits. From then on the container's life is on disk and
in the kernel, and any process may take the next step: `start` opens the gate, `kill` signals PID 1,
`delete` tears it all down. The status is never stored but read each time (state.oci_status): PID 1's
pid and start time, and whether the gate is still there.

Nobody supervises such a container: the engine (conmon, containerd's shim) is its PID 1's subreaper,
keeps its stdio and collects its exit code. So nothing here kills it when a caller dies; `delete --force`
and `minicontainer cleanup` remove what a killed engine leaves.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import select
import signal
import sys
import time

from . import state
from .cgroups import Cgroup
from .errors import LabError

OCI_VERSION = "1.0.2"
_ID = re.compile(r"^[A-Za-z0-9_+.-]{1,1024}$")


def check_id(container_id: str) -> str:
    if not _ID.match(container_id) or container_id in (".", ".."):
        raise LabError(f"container id {container_id[:80]!r} is not valid", "an id is 1 to 1024 letters, digits and "
                       "'_', '+', '.', '-'", "choose another id, as an engine does (a 64-digit hex string)")
    return container_id


OWN_KEYS = ("name", "bundle", "spec", "init_pid", "created")  # what `create` always writes


def is_oci_container(name: str) -> bool:
    """Whether `kill` and `exec` of NAME take the OCI path: an id whose state dir exists under the root and is
    not a supervised container's (`run`, a notebook's), which has a helper of its own to ask instead."""
    if not _ID.match(name) or name in (".", ".."):
        return False
    if not os.path.exists(os.path.join(state.container_dir(state.dir_name(name)), "state.json")):
        return False  # nothing, or a supervised container's directory as its helper removes it
    info = state.read_state(state.dir_name(name))
    return not (info and "helper_pid" in info and info.get("mode") != "oci")


def recorded(container_id: str) -> dict:
    """A container's state.json, or a clear error if there is no container with that id."""
    name = state.dir_name(check_id(container_id))
    info = state.read_state(name)
    if info is None and not os.path.isdir(state.container_dir(name)) or info is not None and \
            info.get("id") != container_id:
        raise LabError(f"container {container_id!r} does not exist", f"no state under {state.root()} (another --root?)",
                       "list them with `minicontainer list`")
    if info is None or info.get("mode") != "oci" or not all(k in info for k in OWN_KEYS):
        raise LabError(f"{state.container_dir(name)} is not the state of a container minicontainer created",
                       "another runtime keeps its state there (the same --root as runc's?), or the file is damaged",
                       "give minicontainer a --root of its own; nothing there was changed")
    return info


# -- create ------------------------------------------------------------------------------------

class _Reports:
    """The helper's caller, when the caller is this very process: step reports go to a list (or stderr)."""

    def __init__(self, verbose: bool = False):
        self.verbose, self.steps = verbose, []

    def send(self, message) -> bool:
        if hasattr(message, "detail"):
            self.steps.append((message.name, message.detail))
            if self.verbose:
                print(f"=> {message.name}: {message.detail}", file=sys.stderr, flush=True)
        return True

    def close(self) -> None:
        pass  # nothing to close: its end is not a socket a forked child could hold open


def create(container_id: str, bundle: str, *, pid_file: str | None = None, keep_fds: int = 0,
           console_socket: str | None = None, verbose: bool = False) -> int:
    """Build the container from the bundle's config.json up to its exec gate; returns PID 1's pid."""
    from .process.sequence import Sequence
    check_id(container_id)
    bundle = os.path.abspath(bundle)
    from . import oci
    spec = oci.load_bundle(bundle)
    name = state.dir_name(container_id)
    if os.path.lexists(state.container_dir(name)):
        raise LabError(f"container {container_id!r} already exists", "an id is used once until `delete`",
                       f"delete it first (minicontainer delete {container_id}), or choose another id")
    spec.name = name
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    if not config.get("hostname"):
        spec.hostname = ""  # the UTS namespace keeps its copy of the host's name, as runc leaves it
    spec.security.keep_fds = list(range(3, 3 + keep_fds))  # --preserve-fds: passed on to the command
    terminal = bool(config.get("process", {}).get("terminal"))
    if terminal != bool(console_socket):
        raise LabError("process.terminal and --console-socket go together" if terminal else
                       "--console-socket without process.terminal", "the runtime makes the container's terminal "
                       "and hands its master side to whoever listens on the console socket", "give both, or neither")
    spec.tty = terminal
    spec.validate()
    if console_socket:
        spec.console_fd = _connect(console_socket)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    # The start sequence in this very process, with no supervisor: the container outlives it.
    sequence = Sequence(_Reports(verbose), detached=True, recorded={
        "mode": "oci", "id": container_id, "bundle": bundle, "created": created,
        "annotations": config.get("annotations", {})})
    try:
        sequence.prepare(spec)
        sequence.wait_at_gate()
    except BaseException:
        sequence.cleanup()
        raise
    if pid_file:
        _write_atomically(pid_file, str(sequence.init_pid))
    return sequence.init_pid


def _connect(path: str) -> int:
    """The engine's console socket, connected now, while its path is in reach: PID 1 sends on it."""
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise LabError(f"cannot connect to the console socket {path}: {e.strerror}", "the engine listens there "
                       "for the terminal's master side", "check the path, and that the engine still runs") from None
    return sock.detach()


def _write_atomically(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# -- start, state, kill ------------------------------------------------------------------------

def start(container_id: str, timeout: float = 10.0) -> None:
    """Open the gate: PID 1, blocked opening it for writing, writes one byte and execs the command."""
    info = recorded(container_id)
    status = state.oci_status(info)
    if status != "created":
        raise LabError(f"container {container_id!r} is {status}, not created", "start runs a created container's "
                       "command, once", "create a new container to run it again" if status != "creating" else
                       "wait for create to finish")
    gate = os.path.join(state.container_dir(info["name"]), state.GATE)
    # Non-blocking, so that a PID 1 killed meanwhile cannot hang us; poll then waits for its byte.
    fd = os.open(gate, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ready = select.poll()
        ready.register(fd, select.POLLIN)
        word = os.read(fd, 4096) if ready.poll(timeout * 1000) else b""
    finally:
        os.close(fd)
    os.unlink(gate)
    if word[:1] == b"1":  # a startContainer hook failed: PID 1 says why, and ends
        raise LabError(f"container {container_id!r} did not start: {word[1:].decode(errors='replace')}",
                       "a startContainer hook of its config failed", f"delete it: minicontainer delete {container_id}")
    if word[:1] != b"0":
        raise LabError(f"container {container_id!r} did not pass its gate", "its PID 1 was killed while it waited",
                       f"delete it (minicontainer delete {container_id}) and create it again")
    from . import hooks
    hooks.run("poststart", info["spec"].get("hooks", {}), {**oci_state(container_id), "status": "running"})


def oci_state(container_id: str) -> dict:
    """The runtime spec's state: ociVersion, id, status, pid (while created or running), bundle, annotations."""
    info = recorded(container_id)
    status = state.oci_status(info)
    result = {"ociVersion": OCI_VERSION, "id": container_id, "status": status,
              "pid": info.get("init_pid") or 0 if status in ("created", "running") else 0,
              "bundle": info["bundle"], "rootfs": info["spec"].get("rootfs") or "", "created": info["created"],
              "owner": ""}
    if info.get("annotations"):
        result["annotations"] = info["annotations"]
    return result


def kill(container_id: str, sig: int = signal.SIGTERM, everyone: bool = False) -> None:
    """A signal to PID 1 of a created or running container (every process in its cgroup with `everyone`)."""
    info = recorded(container_id)
    status = state.oci_status(info)
    if status not in ("created", "running"):
        raise LabError(f"container {container_id!r} is {status}: there is no process to signal", "kill reaches a "
                       "created or running container", f"delete it: minicontainer delete {container_id}")
    if everyone:
        cgroup = Cgroup(info["name"], dirs=info.get("cgroup") or {})
        for pid in cgroup.procs() if cgroup.exists() else []:
            _signal_pid(pid, sig)
    _signal_pid(info["init_pid"], sig, info.get("init_start"))


def _signal_pid(pid: int, sig: int, start_time: int | None = None) -> None:
    try:
        pidfd = os.pidfd_open(pid)  # this very process from here on, whatever later reuses its PID
    except ProcessLookupError:
        return
    try:
        if start_time is None or state.process_alive(pid, start_time):
            signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def processes(container_id: str) -> list[int]:
    """The host PIDs of the container's processes (its cgroup's), for `ps`."""
    info = recorded(container_id)
    cgroup = Cgroup(info["name"], dirs=info.get("cgroup") or {})
    if cgroup.exists():
        return sorted(cgroup.procs())
    alive = state.process_alive(info.get("init_pid"), info.get("init_start"))
    return [info["init_pid"]] if alive else []


def all_states() -> list[dict]:
    """state() of every OCI container under the state root."""
    rows = []
    for name in state.all_names():
        info = state.read_state(name)
        if info and info.get("mode") == "oci":
            rows.append(oci_state(info["id"]))
    return rows


# -- delete ------------------------------------------------------------------------------------

def delete(container_id: str, force: bool = False) -> None:
    """Remove a stopped container: its processes' cgroup, its network, its state. --force kills it first."""
    if force and _ID.match(container_id) and not os.path.isdir(state.container_dir(state.dir_name(container_id))):
        return  # as runc: forcing the delete of what is already gone is not an error
    info = recorded(container_id)
    status = state.oci_status(info)
    if status != "stopped" and not force:
        raise LabError(f"container {container_id!r} is {status}", "delete removes a stopped container",
                       f"stop it first (minicontainer kill {container_id} KILL), or delete --force")
    last_state = {**oci_state(container_id), "status": "stopped", "pid": 0}
    teardown(info)
    from . import hooks
    hooks.run("poststop", info["spec"].get("hooks", {}), last_state)


def teardown(info: dict, grace: float = 10.0) -> list[str]:
    """Kill whatever of the container still runs, then remove its cgroup, network and state; what was
    removed. Any process may call it: everything it needs is in state.json."""
    name = info["name"]
    cgroup = (Cgroup(name, dirs=info.get("cgroup") or {}, systemd_unit=info.get("systemd_unit"))
              if info.get("cgroup") else None)
    if cgroup is not None and cgroup.exists():
        cgroup.kill_all()
    _signal_pid(info.get("init_pid") or 0, signal.SIGKILL, info.get("init_start"))
    helper_alive = info.get("status") == "creating" and state.process_alive(info.get("helper_pid"),
                                                                             info.get("helper_start"))
    if helper_alive:
        _signal_pid(info["helper_pid"], signal.SIGKILL, info.get("helper_start"))
    deadline = time.monotonic() + grace
    while state.process_alive(info.get("init_pid"), info.get("init_start")) and time.monotonic() < deadline:
        time.sleep(0.01)
    removed = []
    if info.get("network"):
        from . import network
        network.disconnect(name)
        removed.append(f"network of {name}")
    if cgroup is not None and cgroup.exists():
        removed += [f"cgroup {d}" for d in cgroup.remove()]
    if state.remove_dir(name):
        removed.append(f"state {state.container_dir(name)}")
    return removed


NO_STATE_GRACE = 60.0  # seconds a state dir may lack its state.json before it counts as left behind


def list_containers() -> list[dict]:
    """Every container with state on this host: a supervised one marked stale once its helper is gone; one
    made by OCI `create` with its status from the kernel (stale only if its creator died before the gate)."""
    rows = []
    for name in state.all_names():
        info = state.read_state(name)
        if info is None:  # its creator makes the dir, then writes state.json: give it time to
            try:
                age = time.time() - os.stat(state.container_dir(name)).st_mtime
            except FileNotFoundError:
                continue  # removed just now
            rows.append({"name": name, "status": "creating" if age < NO_STATE_GRACE else "stale (no state.json)"})
            continue
        if info.get("mode") == "oci":
            status = state.oci_status(info)
            if status == "stopped" and info.get("status") == "creating":
                status = "stale (its create was killed)"
            elif status == "stopped" and not os.path.isdir(info.get("bundle", "")):
                status = "stale (its engine removed the bundle without `delete`)"  # e.g. its conmon was killed
            info["status"] = status
        else:
            alive = state.process_alive(info.get("helper_pid"), info.get("helper_start"))
            info["status"] = info.get("status", "unknown") if alive else "stale (its helper is gone)"
        rows.append(info)
    return rows


def remove_stale() -> tuple[list[str], set[str]]:
    """Remove the containers whose supervisor is gone (a helper, or a shared helper that died with its caller)
    or whose OCI create was killed: their processes, cgroups and state. What was removed, and the names that
    stay (running, or an OCI container, even stopped, which is its engine's to delete)."""
    removed, live = [], set()
    for info in list_containers():
        name = info["name"]
        if not info["status"].startswith("stale"):
            live.add(name)
            continue
        if info.get("mode") == "oci":
            removed += teardown(info)
            continue
        cgroup = (Cgroup(name, dirs=info.get("cgroup"), systemd_unit=info.get("systemd_unit"))
                  if info.get("cgroup") else None)
        if cgroup and cgroup.exists():
            cgroup.kill_all()
            removed += [f"cgroup {d}" for d in cgroup.remove()]
        if state.remove_dir(name):
            removed.append(f"state {state.container_dir(name)}")
    return removed, live


# -- exec --------------------------------------------------------------------------------------

def exec_in(container_id: str, command: list[str], process_file: str | None = None, *, detach: bool = False,
            pid_file: str | None = None, console_socket: str | None = None, tty: bool = False) -> int:
    """Run a process in a running container (`exec`, as runc's): its args, env, cwd and user from the
    engine's process.json if given; the container's own defences (capabilities, seccomp, no_new_privs)."""
    from .process.enter import enter_and_exec
    info = recorded(container_id)
    status = state.oci_status(info)
    if status != "running":
        raise LabError(f"container {container_id!r} is {status}, not running", "exec enters a running "
                       "container's namespaces", f"start it first: minicontainer start {container_id}")
    spec = dict(info["spec"])
    cwd = spec["cwd"]
    if process_file:
        try:
            with open(process_file) as f:
                process = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise LabError(f"cannot read the process file {process_file}: {e}", "the engine writes it for exec",
                           "check the path") from None
        tty = tty or bool(process.get("terminal"))
        command = process.get("args") or command
        spec["env"] = dict(e.split("=", 1) for e in process.get("env", [])) or spec["env"]
        cwd = process.get("cwd", cwd)
        user = process.get("user", {})
        uid, gid = user.get("uid", 0), user.get("gid", 0)
        spec["user"] = f"{uid}:{gid}" if uid or gid else None
        if "apparmorProfile" in process:  # the engine's choice for this process (usually the container's)
            spec["security"] = {**spec["security"], "apparmor_profile": process["apparmorProfile"]}
    if not command:
        raise LabError("no command given to exec", "exec runs a command inside a running container",
                       f"write it like: minicontainer exec {container_id} ps")
    if tty != bool(console_socket):
        raise LabError("a terminal (process.terminal or --tty) and --console-socket go together" if tty else
                       "--console-socket without a terminal (process.terminal or --tty)", "the runtime makes the "
                       "terminal and hands its master side to whoever listens on the console socket",
                       "give both, or neither")
    request = {"name": container_id, "pid": info["init_pid"], "cgroup": sorted(set((info.get("cgroup") or {})
                                                                                      .values())),
               "command": command, "cwd": cwd, "spec": spec}
    return enter_and_exec(request, detach=detach, pid_file=pid_file,
                          console_socket=_connect(console_socket) if console_socket else None)
