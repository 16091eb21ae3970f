"""Benchmark: how long it takes to start a container running /bin/true, minicontainer against other runtimes.

Prints the median and minimum wall time of N starts per runtime, and each median's ratio to crun's
(or to unshare's when crun is missing or fails). Not a test: nothing here asserts a speed.
Run as root:  .venv/bin/python benchmarks/start.py [--runs N] [--rootfs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from minicontainer import kernel
from minicontainer.container import Container
from minicontainer.container import run as run_container
from minicontainer.errors import LabError
from minicontainer.rootfs import DEFAULT_ROOTFS, make_mounts_private
from minicontainer.spec import ContainerSpec

MEMORY = "64M"
CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"  # non-empty on a hybrid v1/v2 host
PACKAGES = {"unshare": "util-linux", "bwrap": "bubblewrap", "crun": "crun", "runc": "runc"}


class Failed(Exception):
    """This runtime could not be measured; the message says why (shown in the table)."""


def check(cmd: list[str], **popen) -> None:
    """Run one start; stdout is dropped, stderr kept only to explain a failure."""
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=60, **popen)
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise Failed(f"exit {done.returncode}: {last[0][:90]}")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise Failed(f"not installed: apt-get install {PACKAGES[tool]}")
    return path


def hybrid_cgroups() -> bool:
    try:
        with open(CONTROLLERS) as f:
            return bool(f.read().strip())
    except FileNotFoundError:
        return False


def hide_cgroup2_controllers(empty: str) -> None:
    """preexec_fn for crun on a hybrid host, which crun refuses ("drop all controllers from cgroupv2").

    In a private mount namespace of the child only, cgroup v2 lists no controllers, so crun
    takes the host for plain cgroup v1. Cheaper than an `unshare -m sh -c 'mount --bind ...'`
    wrapper (no extra execs); its cost is still measured on its own: the "hybrid wrapper alone" row.
    """
    kernel.unshare(kernel.CLONE_NEWNS)
    make_mounts_private()  # the bind below must not propagate back to the host
    kernel.mount(empty, CONTROLLERS, None, kernel.MS_BIND)


def make_bundle(tmp: str, rootfs: str) -> str:
    """An OCI bundle: the runtime's default config.json, pointed at our rootfs and /bin/true, 64M of memory."""
    tool = shutil.which("crun") or shutil.which("runc")
    if not tool:
        raise Failed("not installed: apt-get install crun runc")
    bundle = os.path.join(tmp, "bundle")
    os.mkdir(bundle)
    subprocess.run([tool, "spec"], cwd=bundle, check=True, stdout=subprocess.DEVNULL)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["root"] = {"path": rootfs, "readonly": True}  # the shared image must stay unchanged
    config["process"].update(args=["/bin/true"], terminal=False)
    config["linux"].setdefault("resources", {})["memory"] = {"limit": 64 * 1024 * 1024}
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return bundle


def reap_orphans(timeout: float = 5.0) -> None:
    """Wait for orphans reparented to us (we are a child subreaper): bwrap exits before its pid-1 child
    is reaped, which would otherwise leave zombies for the host's init to collect. Our own shared helper
    (process/shared.py) is a child that stays: it is not waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not set(children(os.getpid())) - long_lived_children():
            return
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        time.sleep(0.001)


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def long_lived_children() -> set[int]:
    from minicontainer.process import shared
    client = shared._client
    return {client.process.pid} if client is not None and client.alive() else set()


def measure_interleaved(cases: list, runs: int, warmup: int) -> dict:
    """Seconds per start, by case name: one start of every case in turn, round after round, so that a busy
    moment of the host falls on all of them alike. after(i) (e.g. deleting an OCI container) and reaping run
    untimed, always. A case that fails is dropped with its reason (a string in place of its times)."""
    times = {name: [] for name, _, _ in cases}
    for i in range(warmup + runs):
        for name, start, after in cases:
            if isinstance(times[name], str):
                continue
            t0 = time.perf_counter()
            try:
                start(i)
                elapsed = time.perf_counter() - t0
            except (Failed, LabError, OSError, subprocess.SubprocessError) as e:
                times[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
                continue
            finally:
                if after:
                    after(i)
                reap_orphans()
            if i >= warmup:
                times[name].append(elapsed)
    return times


def oci_case(tool: str, tmp: str, bundle_of, preexec=None):
    """crun or runc: `run` in the foreground with a fresh id and state dir under tmp; `delete -f` after each."""
    binary = need(tool)
    bundle = bundle_of()
    root = os.path.join(tmp, f"state-{tool}")
    ident = f"bench-{tool}-{os.getpid()}-{{}}"  # unique per run, and findable if one leaks

    def start(i):
        check([binary, "--root", root, "run", "--bundle", bundle, ident.format(i)], preexec_fn=preexec)

    def after(i):  # `run` removes the container when it exits; this covers failures and interrupts
        subprocess.run([binary, "--root", root, "delete", "-f", ident.format(i)], preexec_fn=preexec,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    return start, after


def minicontainer_oci_case(tmp: str, bundle_of):
    """minicontainer as engines call it: create (PID 1 waits at the gate), start, wait for PID 1 to end
    (this benchmark is its subreaper, as conmon is), delete: three interpreters per container."""
    bundle = bundle_of()
    cli = [sys.executable, "-m", "minicontainer.cli", "--root", os.path.join(tmp, "state-minicontainer")]
    ident = f"bench-minicontainer-{os.getpid()}-{{}}"

    def start(i):
        pid_file = os.path.join(tmp, "mc.pid")
        # PID 1 keeps create's stdio: a file, not a pipe whose end would never come while it waits.
        with open(os.path.join(tmp, "create.err"), "w+") as err:
            created = subprocess.run([*cli, "create", "--bundle", bundle, "--pid-file", pid_file, ident.format(i)],
                                     stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=60)
            if created.returncode != 0:
                err.seek(0)
                raise Failed(f"create: exit {created.returncode}: {err.read().strip().splitlines()[-1][:90]}")
        with open(pid_file) as f:
            pid = int(f.read())
        check([*cli, "start", ident.format(i)])
        os.waitpid(pid, 0)  # re-parented to us when create exited
        check([*cli, "delete", ident.format(i)])

    def after(i):
        subprocess.run([*cli, "delete", "--force", ident.format(i)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)

    return start, after


def command(argv, preexec=None):
    """A case that runs one command per start; argv() may raise Failed (e.g. the tool is not installed)."""
    def factory():
        cmd = argv()
        return (lambda _i: check(cmd, preexec_fn=preexec)), None
    return factory


def cases(rootfs: str, tmp: str):
    """(name, note, factory) per runtime; the factory returns (start, after) or raises Failed."""
    bundle = []

    def bundle_of():  # one bundle shared by crun and runc, made on first use
        if not bundle:
            bundle.append(make_bundle(tmp, rootfs))
        return bundle[0]

    def in_process(helper: str):
        def start(_i):
            with helper_mode(helper):
                result = run_container(ContainerSpec(rootfs=rootfs, command=["/bin/true"], memory=MEMORY))
            if result.code != 0:
                raise Failed(f"exit {result.code}: {result.stderr.strip()[:90]}")
        return lambda: (start, None)

    empty = os.path.join(tmp, "empty")
    open(empty, "w").close()
    wrap = (lambda: hide_cgroup2_controllers(empty)) if hybrid_cgroups() else None

    yield ("minicontainer CLI", "new interpreter, then as below",
           command(lambda: [sys.executable, "-m", "minicontainer.cli", "run", "--memory", MEMORY, rootfs,
                            "--", "/bin/true"]))
    yield ("minicontainer in-process", "container.run(): forked by the caller's shared helper; 6 ns, "
           "pivot_root, cgroup", in_process("shared"))
    yield ("  helper interpreter", "the same, a fresh interpreter as the helper (before the shared helper)",
           in_process("spawn"))
    yield ("minicontainer OCI", "create + start + wait + delete: 3 CLI runs, the OCI bundle",
           lambda: minicontainer_oci_case(tmp, bundle_of))
    yield ("unshare", "+ chroot; 5 namespaces, no /proc, no cgroup",
           command(lambda: [need("unshare"), "--mount", "--uts", "--ipc", "--pid", "--net", "--fork",
                            "chroot", rootfs, "/bin/true"]))
    yield ("bwrap", "--unshare-all (user ns too), /proc, /dev; no cgroup",
           command(lambda: [need("bwrap"), "--unshare-all", "--ro-bind", rootfs, "/", "--proc", "/proc",
                            "--dev", "/dev", "/bin/true"]))
    yield ("crun", "OCI bundle, 64M" + (", includes the hybrid wrapper" if wrap else ""),
           lambda: oci_case("crun", tmp, bundle_of, wrap))
    if wrap and shutil.which("crun"):
        yield ("  hybrid wrapper alone", "crun's wrapper around a host /bin/true", command(lambda: ["/bin/true"], wrap))
    yield ("runc", "OCI bundle, 64M", lambda: oci_case("runc", tmp, bundle_of))
    yield ("(host /bin/true)", "no container: just spawning a process", command(lambda: ["/bin/true"]))
    # The floor under every CLI row: an interpreter, then the runtime's imports.
    yield ("(python -c pass)", "the bare interpreter: what any Python CLI costs", command(
        lambda: [sys.executable, "-c", "pass"]))
    yield ("(minicontainer --version)", "interpreter + the CLI's imports", command(
        lambda: [sys.executable, "-m", "minicontainer.cli", "--version"]))
    yield ("(minicontainer --help)", "interpreter + the CLI's imports + its argument parser", command(
        lambda: [sys.executable, "-m", "minicontainer.cli", "--help"]))
    yield ("(import minicontainer)", "interpreter + what a notebook's first import costs", command(
        lambda: [sys.executable, "-c", "import minicontainer.container"]))
    # The floor under that row: the standard library modules the runtime's own modules import.
    yield ("(import its stdlib)", "interpreter + " + ", ".join(STDLIB_FLOOR), command(
        lambda: [sys.executable, "-c", "import " + ", ".join(STDLIB_FLOOR)]))


@contextlib.contextmanager
def helper_mode(mode: str):
    """Who forks each container's helper (minicontainer.container.HELPER), for the rows that compare them."""
    before = os.environ.get("MINICONTAINER_HELPER")
    os.environ["MINICONTAINER_HELPER"] = mode
    try:
        yield
    finally:
        if before is None:
            del os.environ["MINICONTAINER_HELPER"]
        else:
            os.environ["MINICONTAINER_HELPER"] = before


# -- where a start's time goes: each step of the step list beside the bare system call it makes --------

def step_table(rootfs: str, runs: int) -> dict:
    """Median milliseconds per step of the step list (from the arrival of one step's report to the next,
    so a step's row includes its report's trip to the caller), and of the bare calls (bare_calls)."""
    by_step: dict[str, list[float]] = {}
    order: list[str] = []
    for _ in range(runs):
        marks = []

        def mark(name, _detail, marks=marks):
            marks.append((name, time.perf_counter()))
        t0 = time.perf_counter()
        box = Container.start(ContainerSpec(rootfs=rootfs, command=["/bin/true"], memory=MEMORY),
                              stdout=subprocess.DEVNULL, on_step=mark)
        started = time.perf_counter()
        box.wait(60)
        ended = time.perf_counter()
        previous = t0
        for name, at in marks + [("(exit, reap, clean-up)", ended)]:
            if name == "(exit, reap, clean-up)":
                previous = started
            by_step.setdefault(name, []).append(at - previous)
            if name not in order:
                order.append(name)
            previous = at
    bare = subprocess.run([sys.executable, __file__, "--bare-calls", "--rootfs", rootfs, "--runs", str(runs)],
                          capture_output=True, text=True, timeout=600)
    calls = json.loads(bare.stdout) if bare.returncode == 0 else {}
    return {"order": order, "steps": {k: statistics.median(v) for k, v in by_step.items()}, "bare": calls,
            "bare_error": bare.stderr.strip().splitlines()[-1:] if bare.returncode else []}


def _timed_in_child(work) -> float:
    """Seconds that work() took in a forked child (so that unshare and mounts never touch this process)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            elapsed = work()
            os.write(write, repr(elapsed).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    _, status = os.waitpid(pid, 0)
    if status:
        raise Failed(f"bare call failed (status {status})")
    return float(answer)


# What `import minicontainer.container` pulls in from the standard library (python -X importtime): the
# part of that row no change to the runtime's own modules can remove.
STDLIB_FLOOR = ("json", "dataclasses", "ctypes", "subprocess", "tempfile", "hashlib", "socket", "signal")

FORK_THEN_JOIN = "fork, child joins (v2)"
CLONE_INTO = "clone3 CLONE_INTO_CGROUP"


def _own_v2_cgroup() -> str | None:
    """Our own directory in the cgroup2 hierarchy (pure v2, or the unified one of a hybrid host), if any."""
    with open("/proc/self/mounts") as f:
        mount = next((line.split()[1] for line in f if line.split()[2] == "cgroup2"), None)
    with open("/proc/self/cgroup") as f:
        own = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    return None if mount is None or own is None else os.path.join(mount, own.lstrip("/"))


def bare_calls(rootfs: str, runs: int) -> dict:
    """The system calls under the steps, alone: run in a fresh, single-threaded process (--bare-calls)."""
    from minicontainer import seccomp
    from minicontainer.cgroups import Cgroup
    results: dict[str, list[float]] = {}

    def add(name, work):
        results.setdefault(name, []).append(_timed_in_child(work))

    def clock(call):
        def work():
            t = time.perf_counter()
            call()
            return time.perf_counter() - t
        return work

    for kind, flag in (("mnt", kernel.CLONE_NEWNS), ("uts", kernel.CLONE_NEWUTS), ("ipc", kernel.CLONE_NEWIPC),
                       ("net", kernel.CLONE_NEWNET), ("cgroup", kernel.CLONE_NEWCGROUP)):
        for _ in range(runs):
            add(f"unshare {kind}", clock(lambda flag=flag: kernel.unshare(flag)))
    for _ in range(runs):
        add("pid namespace", clock(lambda: kernel.unshare(kernel.CLONE_NEWPID)))
    for i in range(runs):
        group = Cgroup(f"bench-bare-{os.getpid()}-{i}")
        t = time.perf_counter()
        for directory in group.directories:
            os.makedirs(directory)
        results.setdefault("cgroup", []).append(time.perf_counter() - t)

        def join(group=group):
            t = time.perf_counter()
            for directory in group.directories:
                with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                    f.write("0")
            return time.perf_counter() - t
        add("join cgroup", join)
        group.remove()  # its directories, and the runtime's base directory when it made it
    v2_parent = _own_v2_cgroup()
    for i in range(runs if v2_parent else 0):
        # PID 1's birth: a fork and then its write to cgroup.procs, against clone3 born in the v2 cgroup.
        directory = os.path.join(v2_parent, f"bench-clone-{os.getpid()}-{i}")
        os.mkdir(directory)
        try:
            t = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                    f.write("0")
                os._exit(0)
            os.waitpid(pid, 0)
            results.setdefault(FORK_THEN_JOIN, []).append(time.perf_counter() - t)
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            t = time.perf_counter()
            pid, pidfd = kernel.clone_fork(into_cgroup=fd)
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            results.setdefault(CLONE_INTO, []).append(time.perf_counter() - t)
            os.close(pidfd)
            os.close(fd)
        finally:
            os.rmdir(directory)
    with tempfile.TemporaryDirectory(prefix="minicontainer-bare-") as tmp:
        for i in range(runs):
            paths = {sub: os.path.join(tmp, f"{sub}{i}") for sub in ("upper", "work", "merged")}
            for path in paths.values():
                os.mkdir(path)

            def overlay_then_pivot(paths=paths):
                kernel.unshare(kernel.CLONE_NEWNS)
                make_mounts_private()
                t = time.perf_counter()
                kernel.mount("overlay", paths["merged"], "overlay", 0,
                             f"lowerdir={rootfs},upperdir={paths['upper']},workdir={paths['work']}")
                mounted = time.perf_counter() - t
                old = os.path.join(paths["merged"], ".old")
                os.mkdir(old)
                t = time.perf_counter()
                kernel.pivot_root(paths["merged"], old)
                os.chdir("/")
                kernel.umount2("/.old", kernel.MNT_DETACH)
                results_pipe = mounted, time.perf_counter() - t
                return results_pipe
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(read)
                    os.write(write, json.dumps(overlay_then_pivot()).encode())
                finally:
                    os._exit(0)
            os.close(write)
            with os.fdopen(read) as f:
                mounted, pivoted = json.loads(f.read())
            os.waitpid(pid, 0)
            results.setdefault("overlay", []).append(mounted)
            results.setdefault("pivot_root", []).append(pivoted)
    for _ in range(runs):
        add("seccomp", clock(lambda: seccomp.load()))  # compiled by libseccomp, then loaded
    return {name: statistics.median(times) for name, times in results.items()}


def print_steps(table: dict) -> None:
    print("\nWhere the in-process start goes: each step of the step list (median ms, from one step's report to "
          "the next,\nso each row includes a message to the caller), beside the bare system call it makes, "
          "timed alone\n")
    print(f"{'step':<26} {'ms':>7} {'bare ms':>8}")
    for name in table["order"]:
        bare = table["bare"].get(name)
        print(f"{name:<26} {table['steps'][name] * 1e3:>7.2f} {'-' if bare is None else f'{bare * 1e3:.2f}':>8}")
    total = sum(table["steps"].values())
    print(f"{'(sum)':<26} {total * 1e3:>7.2f}")
    print("\nPID 1's birth into its cgroup, bare (fork to reaped child; where a run forks PID 1 and joins it in one "
          "go,\non one v2 cgroup, the runtime forks it with clone3 and CLONE_INTO_CGROUP)")
    for name in (FORK_THEN_JOIN, CLONE_INTO):
        bare = table["bare"].get(name)
        print(f"{name:<26} {'':>7} {'-' if bare is None else f'{bare * 1e3:.2f}':>8}")
    if table["bare_error"]:
        print(f"bare calls failed: {table['bare_error'][0]}")


# -- what the runtime's own processes cost while containers are alive ------------------------------------

def runtime_processes() -> list[int]:
    """The runtime's own processes (not the containers'): shared helpers, per-container helpers (forked or
    fresh interpreters) and user-namespace intermediates, found by name."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if comm in ("mc-shared", "mc-helper") or b"minicontainer.process" in cmdline:
            found.append(int(pid))
    return found


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def memory_with(rootfs: str, count: int, mode: str) -> tuple[int, int]:
    """(processes, total PSS in KiB) of the runtime while `count` containers run, each with a helper
    forked by `mode`."""
    boxes = []
    try:
        with helper_mode(mode):
            for _ in range(count):
                boxes.append(Container.start(ContainerSpec(rootfs=rootfs, command=["sleep", "600"], memory="16M"),
                                             stdout=subprocess.DEVNULL))
        time.sleep(0.5)  # the last hand-overs
        pids = runtime_processes()
        return len(pids), sum(pss_kib(pid) for pid in pids)
    finally:
        for box in boxes:
            box.signal(9)
        for box in boxes:
            box.wait(60)


def memory_table(rootfs: str, alive: str) -> dict:
    counts = [int(n) for n in alive.split(",") if n.strip()]
    table = {}
    for mode in ("shared", "spawn"):
        for count in counts:
            try:
                table[(mode, count)] = memory_with(rootfs, count, mode)
            except (LabError, OSError, TimeoutError) as e:
                table[(mode, count)] = str(e).splitlines()[0]
    return table


def print_memory(table: dict) -> None:
    print("\nThe runtime's own processes while N containers run `sleep` (not the containers' own): their number "
          "and total PSS\n")
    print(f"{'helpers':<40} {'N':>4} {'processes':>9} {'PSS MiB':>8}")
    labels = {"shared": "one shared helper (a notebook's)", "spawn": "an interpreter per container (before)"}
    for (mode, count), value in table.items():
        if isinstance(value, str):
            print(f"{labels[mode]:<40} {count:>4}  failed: {value}")
        else:
            print(f"{labels[mode]:<40} {count:>4} {value[0]:>9} {value[1] / 1024:>8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed starts per runtime (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed starts first (default 3)")
    parser.add_argument("--rootfs", default=DEFAULT_ROOTFS, help=f"image directory (default {DEFAULT_ROOTFS})")
    parser.add_argument("--alive", default="1,10,100", help="container counts for the memory table (default 1,10,100)")
    parser.add_argument("--bare-calls", action="store_true", help=argparse.SUPPRESS)  # run by step_table
    args = parser.parse_args()
    if args.bare_calls:
        print(json.dumps(bare_calls(args.rootfs, args.runs)))
        return 0
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    if os.geteuid() != 0:
        sys.exit("start.py: must run as root (namespaces, mounts and cgroups need it); try sudo")
    if not os.path.lexists(os.path.join(args.rootfs, "bin", "true")):  # a symlink to busybox in the image
        sys.exit(f"start.py: no /bin/true in rootfs {args.rootfs}; build it: "
                 f"{os.path.dirname(sys.executable)}/minicontainer rootfs build {args.rootfs}")
    rootfs = os.path.abspath(args.rootfs)
    kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)  # a runtime's orphaned processes come back to us

    with tempfile.TemporaryDirectory(prefix="minicontainer-bench-") as tmp:
        notes, ready, failed = {}, [], {}
        for name, note, factory in cases(rootfs, tmp):
            notes[name] = note
            print(f"{name.strip()} ...", file=sys.stderr, flush=True)
            try:
                start, after = factory()
                ready.append((name, start, after))
            except (Failed, LabError, OSError, subprocess.SubprocessError) as e:
                failed[name] = str(e).splitlines()[0]
        print(f"{len(ready)} runtimes, {args.warmup + args.runs} rounds, interleaved ...", file=sys.stderr, flush=True)
        measured = measure_interleaved(ready, args.runs, args.warmup) | failed
        rows = [(name, notes[name], None if isinstance(measured[name], str) else measured[name],
                 measured[name] if isinstance(measured[name], str) else "") for name in notes]
        steps = step_table(rootfs, args.runs)
        memory = memory_table(rootfs, args.alive)

    medians = {name: statistics.median(times) for name, _, times, _ in rows if times}
    base = "crun" if "crun" in medians else "unshare"
    print(f"\nStart + exit of /bin/true, {args.runs} runs each ({args.warmup} warm-up), rootfs {rootfs}\n")
    print(f"{'runtime':<26} {'median ms':>9} {'min ms':>8} {'x ' + base:>10}  notes")
    for name, note, times, reason in rows:
        if times:
            ratio = f"{medians[name] / medians[base]:.2f}" if base in medians else "-"
            print(f"{name:<26} {medians[name] * 1e3:>9.1f} {min(times) * 1e3:>8.1f} {ratio:>10}  {note}")
        else:
            print(f"{name:<26} {'-':>9} {'-':>8} {'-':>10}  failed: {reason}")
    print_steps(steps)
    print_memory(memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
