"""minicontainer: run / exec / stop / kill / ps / rootfs build / doctor / cleanup, and the OCI runtime's verbs
(create / start / state / kill / delete / list / ps ID / features), as engines call runc."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from . import __version__ as VERSION
from . import lifecycle, state
from .cgroups.limits import format_size
from .errors import LabError
from .namespaces import DEFAULT_KINDS
from .security import DEFAULT_CAPABILITIES, Security
from .spec import DEFAULT_ENV, ContainerSpec

if TYPE_CHECKING:
    from .container import Container

ERROR_EXIT = 125  # as docker and podman: the runtime failed, not the command


class ForwardSignals:
    """Signals sent to `run` (kill, timeout, Ctrl-C without a tty) go on to the container's PID 1.

    The kernel delivers a signal from outside to a PID namespace's init only if the init handles it
    (SIGKILL excepted), so a PID 1 like `sleep` or `httpd -f` ignores SIGINT and SIGTERM. When it
    still runs a second after the first one, this says so; a second SIGINT or SIGTERM, or the end of
    the stop timeout, kills every process of the container.

    Copies of one signal that arrive together count once: timeout(1) signals its command and then
    its whole process group, so `run` gets two SIGTERMs a few microseconds apart.
    """

    TOGETHER = 0.5  # seconds: a person pressing Ctrl-C twice is slower than this

    def __init__(self, container: Container, stop_timeout: float):
        self.container, self.stop_timeout = container, stop_timeout
        self.first: int | None = None
        self.first_at = 0.0
        self.warned = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, self.forward)
        signal.signal(signal.SIGALRM, self.check)

    def forward(self, signum: int, _frame=None) -> None:
        self.container.signal(signum)
        if signum not in (signal.SIGINT, signal.SIGTERM):
            return
        if self.first is None:
            self.first, self.first_at = signum, time.monotonic()
            signal.alarm(1)  # look again in a second
        elif time.monotonic() - self.first_at >= self.TOGETHER:
            self.kill(f"{signal.Signals(signum).name} again")

    def check(self, *_) -> None:
        if not state.process_alive(self.container.pid):
            return
        name = signal.Signals(self.first).name
        if not self.warned:
            self.warned = True
            rest = max(1, round(self.stop_timeout - 1))
            command = self.container.spec.command[0]
            if self.container.spec.init:
                why = (f"{command} is still running after {name}: the init passed it on, and {command} does not "
                       "end on it")
            else:
                why = (f"PID 1 ({command}) is still running after {name}: a PID namespace's init gets only the "
                       "signals it handles (--init runs the command under an init that passes them on)")
            say(f"{why}. Press Ctrl-C (or send {name}) again, or wait {rest} s, and every process of the "
                "container is killed")
            signal.alarm(rest)
        else:
            self.kill(f"{self.stop_timeout:.0f} s after {name}")

    def kill(self, why: str) -> None:
        from .process import messages
        signal.alarm(0)
        say(f"{why}: killing every process of container {self.container.name}")
        self.container.channel.send(messages.Stop(0))


def say(message: str) -> None:
    """A note on stderr, readable even while a terminal is in raw mode."""
    print(f"minicontainer: {message}", end="\r\n", file=sys.stderr, flush=True)


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = dict(DEFAULT_ENV)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LabError(f"--env {pair!r} is not KEY=VALUE", "the variable needs a name and a value",
                           "write it like --env GREETING=hello")
        env[key] = value
    return env


def security_from(args) -> Security:
    """--cap-add/--cap-drop on the default list (--cap-drop ALL empties it), --seccomp, --allow-syscall."""
    def name(cap: str) -> str:
        return cap.lower().removeprefix("cap_")
    dropped = {name(c) for c in args.cap_drop}
    kept = [] if "all" in dropped else [c for c in DEFAULT_CAPABILITIES if c not in dropped]
    kept += [name(c) for c in args.cap_add if name(c) not in kept]
    return Security(capabilities=kept, seccomp=None if args.seccomp == "off" else args.seccomp,
                    allow_syscalls=args.allow_syscall)


def cmd_run(args, command: list[str]) -> int:
    from . import container as containers
    from . import network, oci, terminal
    from .container import Container
    containers.HELPER = "fork"  # this process is single-threaded: it is the container's helper, not a caller
    kinds = [k for k in DEFAULT_KINDS if k not in args.share] + [k for k in args.also if k not in DEFAULT_KINDS]
    if args.rootless and "user" not in kinds:
        kinds.insert(0, "user")
    publish = [network.parse_publish(p) for p in args.publish]
    if args.net == "host":
        print("minicontainer: warning: --net host shares the host's network namespace: the container sees and "
              "can bind the host's interfaces and ports", file=sys.stderr)
        kinds = [k for k in kinds if k != "net"]
    use_tty = not args.no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    if args.bundle:
        spec = oci.load_bundle(args.bundle, command or None)
        spec.tty = use_tty and spec.tty
        if args.name:
            spec.name = args.name
        spec.init = spec.init or args.init
    else:
        spec = ContainerSpec(rootfs=args.rootfs, command=command or ["/bin/sh"], env=parse_env(args.env),
                             hostname=args.hostname, namespaces=tuple(kinds), memory=args.memory, cpus=args.cpus,
                             pids=args.pids, name=args.name or "", tty=use_tty, read_only_root=args.read_only,
                             network=args.net if args.net != "host" else "none", publish=publish,
                             security=security_from(args), init=args.init,
                             # Asked for, not assumed: without --rootless an unprivileged caller is told to say so.
                             rootless=None if args.rootless else False)
    if args.print_oci:
        spec.validate()
        print(json.dumps(oci.to_config(spec), indent=2))
        return 0
    say = (lambda step, detail: print(f"=> {step}: {detail}", file=sys.stderr, flush=True)) if args.verbose else None
    # A signal that arrives while the container starts is held, and passed on once it runs (Ctrl-C still
    # interrupts the start itself).
    pending: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    if not use_tty:
        container = Container.start(spec, stdin=None, on_step=say)
    else:
        master, slave = terminal.open_pty(sys.stdin.fileno())
        try:
            container = Container.start(spec, stdin=slave, stdout=slave, stderr=slave, on_step=say)
        finally:
            os.close(slave)
    forwarding = ForwardSignals(container, args.stop_timeout)
    forwarding.install()
    for sig in pending:
        forwarding.forward(sig)
    if use_tty:
        terminal.relay(master)
        os.close(master)
    code = container.wait()
    return code if code >= 0 else 128 - code


def cmd_exec(args, command: list[str]) -> int:
    from .container import exec_command
    from .process.enter import enter_and_exec
    command = command or args.args
    if lifecycle.is_oci_container(args.name):
        return lifecycle.exec_in(args.name, command, args.process, detach=args.detach, pid_file=args.pid_file,
                                 console_socket=args.console_socket, tty=args.tty)
    if not command:
        raise LabError("no command given to exec", "exec runs a command inside a running container",
                       f"write it like: minicontainer exec {args.name} -- ps")
    # Entered from this very process (single-threaded, and it ends after): no second interpreter.
    request = json.loads(exec_command(args.name, command)[1])
    try:
        code = enter_and_exec(request)
    except LabError as e:
        print(f"minicontainer exec: {e}", file=sys.stderr)
        return 126
    return code if code >= 0 else 128 - code  # as a shell reports a signal


def parse_signal(text: str) -> int:
    name = text.upper()
    try:
        return int(name) if name.isdigit() else int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except (KeyError, ValueError):
        raise LabError(f"{text!r} is not a signal", "a signal is a name or a number, as kill -l lists them",
                       "write it like TERM, SIGKILL or 9") from None


def cmd_kill(args, _command) -> int:
    from .container import signal_container
    sig = parse_signal(args.signal)
    if lifecycle.is_oci_container(args.name):
        lifecycle.kill(args.name, sig, everyone=args.all)
    else:
        signal_container(args.name, sig)
    return 0


# -- the OCI runtime's verbs -------------------------------------------------------------------

def cmd_create(args, _command) -> int:
    if args.no_pivot:
        raise LabError("--no-pivot is not supported", "minicontainer always switches root with pivot_root",
                       "run without it, or use runc or crun for this container")
    pid = lifecycle.create(args.id, args.bundle, pid_file=args.pid_file, keep_fds=args.preserve_fds,
                           console_socket=args.console_socket, verbose=args.debug)
    if args.debug:
        say(f"created {args.id}: PID 1 is {pid}, waiting at its gate for `minicontainer start {args.id}`")
    return 0


def cmd_start(args, _command) -> int:
    lifecycle.start(args.id)
    return 0


def cmd_state(args, _command) -> int:
    print(json.dumps(lifecycle.oci_state(args.id), indent=2))
    return 0


def cmd_delete(args, _command) -> int:
    lifecycle.delete(args.id, force=args.force)
    return 0


def cmd_list(args, _command) -> int:
    rows = lifecycle.all_states()
    if args.quiet:
        print("\n".join(row["id"] for row in rows))
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        print(f"{'ID':<24} {'PID':>7}  {'STATUS':<9} {'BUNDLE':<32} CREATED")
        for row in rows:
            print(f"{row['id']:<24} {row['pid']:>7}  {row['status']:<9} {row['bundle']:<32} {row['created']}")
    return 0


def cmd_features(args, _command) -> int:
    from . import oci
    print(json.dumps(oci.features(), indent=2))
    return 0


def cmd_stop(args, _command) -> int:
    from .container import stop_container
    killed = stop_container(args.name, args.time)
    print(f"{args.name}: " + (f"still running {args.time:.0f} s after SIGTERM, so every process in its cgroup was "
                              "killed" if killed else "ended after SIGTERM"))
    return 0


def cmd_ps(args, _command) -> int:
    if args.id:  # the OCI verb: the container's processes, by host PID
        pids = lifecycle.processes(args.id)
        print(json.dumps(pids) if args.format == "json" else "PID\n" + "\n".join(map(str, pids)))
        return 0
    from .container import list_containers
    rows = list_containers()
    print(f"{'NAME':<16} {'PID':>7}  {'STATUS':<12} {'MEMORY':<8} COMMAND")
    for info in rows:
        spec = info.get("spec", {})
        print(f"{info['name']:<16} {info.get('init_pid', '-'):>7}  {info['status']:<12} "
              f"{format_size(spec['memory']) if spec.get('memory') else '-':<8} {' '.join(spec.get('command', []))}")
    return 0


def cmd_rootfs(args, _command) -> int:
    from . import rootfs
    rootfs.build_rootfs(args.directory)
    return 0


def cmd_doctor(args, _command) -> int:
    from . import doctor
    text, code = doctor.report(doctor.run_checks())
    print(text)
    return code


def cmd_cleanup(args, _command) -> int:
    from .container import cleanup
    removed = cleanup()
    for item in removed:
        print(f"removed {item}")
    print(f"cleanup: {len(removed)} item(s) removed" if removed else "cleanup: nothing left behind")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .rootfs import DEFAULT_ROOTFS
    parser = argparse.ArgumentParser(prog="minicontainer", description="A small container runtime for learning.")
    parser.add_argument("--version", action="version", version=f"minicontainer version {VERSION}\n"
                        f"spec: {lifecycle.OCI_VERSION}")
    parser.add_argument("--root", metavar="DIR", help=f"where containers' state is kept (default {state.STATE_ROOT})")
    parser.add_argument("--log", metavar="FILE", help="also write errors to this file (as engines ask)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="the format of --log")
    parser.add_argument("--systemd-cgroup", action="store_true", help="a cgroupsPath slice:prefix:name is a systemd "
                        "scope, asked of systemd over D-Bus (only where systemd is PID 1)")
    parser.add_argument("--debug", action="store_true", help="print each step of create")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a command in a new container", usage="minicontainer run [options] ROOTFS "
                         "-- CMD [ARG...]")
    run.add_argument("rootfs", nargs="?", default=DEFAULT_ROOTFS,
                     help=f"image directory (default {DEFAULT_ROOTFS})")
    run.add_argument("--name", help="container name (default: mc-<random>)")
    run.add_argument("--hostname", help="hostname inside (default: the name)")
    run.add_argument("--memory", help="memory limit, e.g. 64M, 1.5G (swap off)")
    run.add_argument("--cpus", help="CPU quota, e.g. 0.5")
    run.add_argument("--pids", help="maximum number of processes")
    run.add_argument("--net", choices=("none", "loopback", "bridge", "slirp4netns", "host"), default="none",
                     help="none: own network namespace with only lo, down (and tunnel fallback devices where their "
                          "modules are loaded); loopback: the same with lo up; bridge: the lab bridge with NAT; "
                          "slirp4netns: user-mode networking, rootless too; host: share the host's")
    run.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:CTRPORT",
                     help="forward a host port (127.0.0.1 unless an IP is given) to the container (--net bridge "
                          "or slirp4netns)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--share", action="append", default=[], choices=DEFAULT_KINDS, metavar="KIND",
                     help="stay in the host's namespace of this kind")
    run.add_argument("--also", action="append", default=[], choices=("user", "time"), metavar="KIND",
                     help="also create a namespace of this kind (user, time)")
    run.add_argument("--read-only", action="store_true", help="mount the container's / read-only")
    run.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                     help="keep this capability too, e.g. net_admin or CAP_SYS_ADMIN")
    run.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                     help="drop this capability from the default list (ALL: every one)")
    run.add_argument("--seccomp", choices=("allowlist", "denylist", "off"), default="allowlist",
                     help="the system call filter: the allow-list (default), the deny-list, or none")
    run.add_argument("--allow-syscall", action="append", default=[], metavar="NAME",
                     help="add a system call to the allow-list, e.g. io_uring_setup")
    run.add_argument("--bundle", metavar="DIR", help="run an OCI bundle (config.json + rootfs) instead")
    run.add_argument("--print-oci", action="store_true", help="print the OCI config.json for this container, "
                     "do not run it")
    run.add_argument("--rootless", action="store_true",
                     help="run in a user namespace: run by a user without root, root inside is that user (and "
                          "no cgroup limits apply); run by root, root inside is uid 100000 outside")
    run.add_argument("--no-tty", action="store_true",
                     help="do not give the container a terminal even when run from one")
    run.add_argument("--stop-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="after a SIGINT or SIGTERM that PID 1 ignores, kill the container this much later")
    run.add_argument("--init", action="store_true",
                     help="run a small init as PID 1 that runs the command as its child, passes signals on to it "
                          "and reaps orphans (as docker run --init)")
    run.add_argument("-v", "--verbose", action="store_true", help="print each start step")
    run.set_defaults(func=cmd_run)

    exe = sub.add_parser("exec", help="run a command in a running container",
                         usage="minicontainer exec NAME -- CMD  |  minicontainer exec [--process F] [-d] ID [CMD...]")
    exe.add_argument("name", metavar="NAME|ID")
    exe.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    exe.add_argument("-p", "--process", metavar="FILE", help="(OCI) the process to run, as JSON (process.json)")
    exe.add_argument("-d", "--detach", action="store_true", help="(OCI) return once it runs")
    exe.add_argument("--pid-file", metavar="FILE", help="(OCI) write its pid there")
    exe.add_argument("-t", "--tty", action="store_true", help="(OCI) a terminal for it (with --console-socket)")
    exe.add_argument("--console-socket", metavar="SOCKET", help="(OCI) where the engine waits for the terminal's "
                     "master side")
    exe.add_argument("--preserve-fds", type=int, default=0, metavar="N", help=argparse.SUPPRESS)
    exe.set_defaults(func=cmd_exec)

    stop = sub.add_parser("stop", help="SIGTERM to a container's PID 1, then kill it after a grace period")
    stop.add_argument("name")
    stop.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS", help="the grace period")
    stop.set_defaults(func=cmd_stop)
    kill = sub.add_parser("kill", help="send a signal to a container's PID 1 (default TERM, as runc)")
    kill.add_argument("name", metavar="NAME|ID")
    kill.add_argument("signal", nargs="?", default="TERM")
    kill.add_argument("-a", "--all", action="store_true", help="(OCI) every process of the container")
    kill.set_defaults(func=cmd_kill)
    ps = sub.add_parser("ps", help="list containers; with an OCI container's ID, its processes")
    ps.add_argument("id", nargs="?", metavar="ID")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.set_defaults(func=cmd_ps)

    create = sub.add_parser("create", help="(OCI) build a container from a bundle up to its exec gate, and exit")
    create.add_argument("id", metavar="ID")
    create.add_argument("-b", "--bundle", default=".", help="the bundle: config.json and its root (default .)")
    create.add_argument("--pid-file", metavar="FILE", help="write PID 1's pid there")
    create.add_argument("--console-socket", metavar="SOCKET", help="where the engine waits for the terminal's "
                        "master side (with process.terminal)")
    create.add_argument("--preserve-fds", type=int, default=0, metavar="N", help="pass fds 3 .. 3+N-1 on")
    create.add_argument("--no-pivot", action="store_true", help="refused: minicontainer always uses pivot_root")
    create.add_argument("--no-new-keyring", action="store_true", help="accepted: minicontainer never makes "
                        "a session keyring")
    create.set_defaults(func=cmd_create)
    start = sub.add_parser("start", help="(OCI) run a created container's command")
    start.add_argument("id", metavar="ID")
    start.set_defaults(func=cmd_start)
    st = sub.add_parser("state", help="(OCI) a container's state, as JSON")
    st.add_argument("id", metavar="ID")
    st.set_defaults(func=cmd_state)
    delete = sub.add_parser("delete", help="(OCI) remove a stopped container (--force: any)")
    delete.add_argument("id", metavar="ID")
    delete.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    delete.set_defaults(func=cmd_delete)
    lst = sub.add_parser("list", help="(OCI) containers made by create")
    lst.add_argument("-f", "--format", choices=("table", "json"), default="table")
    lst.add_argument("-q", "--quiet", action="store_true", help="only their ids")
    lst.set_defaults(func=cmd_list)
    sub.add_parser("features", help="(OCI) what this runtime supports, as JSON").set_defaults(func=cmd_features)
    rfs = sub.add_parser("rootfs", help="root filesystem images")
    rfs_sub = rfs.add_subparsers(dest="action", required=True)
    build = rfs_sub.add_parser("build", help="build the busybox image from Debian's busybox-static")
    build.add_argument("directory", nargs="?", default=DEFAULT_ROOTFS)
    build.set_defaults(func=cmd_rootfs)
    sub.add_parser("doctor", help="check this host").set_defaults(func=cmd_doctor)
    sub.add_parser("cleanup", help="remove what crashed runs left").set_defaults(func=cmd_cleanup)
    return parser


def main(argv: list[str] | None = None) -> int:
    options, command = split_command(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(options)
    try:
        if args.root:
            state.use_root(args.root)
        if args.systemd_cgroup:
            from . import cgroups
            from .cgroups import systemd
            systemd.refuse_unless_available()
            cgroups.USE_SYSTEMD = True
        return args.func(args, command)
    except LabError as e:
        print(f"minicontainer: {e}", file=sys.stderr)
        if args.log:
            log_error(args.log, args.log_format, e)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def log_error(path: str, form: str, error: LabError) -> None:
    """The error, appended to the engine's log file: one JSON object per line with --log-format json,
    which is where conmon and containerd's shim read a runtime's reason from."""
    when = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    line = (json.dumps({"level": "error", "msg": str(error).replace("\n", ";"), "time": when}) if form == "json"
            else f"{when} error: {error}")
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        print(f"minicontainer: cannot write the log {path}: {e.strerror}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

