"""Benchmark: how long it takes to start a container running /bin/true, minicontainer against other runtimes.

Prints the median and minimum wall time of N starts per runtime, and each median's ratio to crun's
(or to unshare's when crun is missing or fails). Not a test: nothing here asserts a speed.
Run as root:  .venv/bin/python benchmarks/start.py [--runs N] [--rootfs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from minicontainer import kernel
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
    is reaped, which would otherwise leave zombies for the host's init to collect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            time.sleep(0.001)


def measure(start, runs: int, warmup: int, after=None) -> list[float]:
    """Seconds per call of start(i); after(i) (e.g. deleting an OCI container) and reaping run untimed, always."""
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        try:
            start(i)
            elapsed = time.perf_counter() - t0
        finally:
            if after:
                after(i)
            reap_orphans()
        if i >= warmup:
            times.append(elapsed)
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

    def in_process(_i):
        result = run_container(ContainerSpec(rootfs=rootfs, command=["/bin/true"], memory=MEMORY))
        if result.code != 0:
            raise Failed(f"exit {result.code}: {result.stderr.strip()[:90]}")

    empty = os.path.join(tmp, "empty")
    open(empty, "w").close()
    wrap = (lambda: hide_cgroup2_controllers(empty)) if hybrid_cgroups() else None

    yield ("minicontainer CLI", "new interpreter, then as below",
           command(lambda: [sys.executable, "-m", "minicontainer.cli", "run", "--memory", MEMORY, rootfs,
                            "--", "/bin/true"]))
    yield ("minicontainer in-process", "container.run(): helper forked, 6 ns, pivot_root, cgroup",
           lambda: (in_process, None))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed starts per runtime (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed starts first (default 3)")
    parser.add_argument("--rootfs", default=DEFAULT_ROOTFS, help=f"image directory (default {DEFAULT_ROOTFS})")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    if os.geteuid() != 0:
        sys.exit("start.py: must run as root (namespaces, mounts and cgroups need it); try sudo")
    if not os.path.lexists(os.path.join(args.rootfs, "bin", "true")):  # a symlink to busybox in the image
        sys.exit(f"start.py: no /bin/true in rootfs {args.rootfs}; build it: "
                 f"{os.path.dirname(sys.executable)}/minicontainer rootfs build {args.rootfs}")
    rootfs = os.path.abspath(args.rootfs)
    kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)  # a runtime's orphaned processes come back to us

    rows = []  # (name, note, times or None, reason)
    with tempfile.TemporaryDirectory(prefix="minicontainer-bench-") as tmp:
        for name, note, factory in cases(rootfs, tmp):
            print(f"{name.strip()} ...", file=sys.stderr, flush=True)
            try:
                start, after = factory()
                rows.append((name, note, measure(start, args.runs, args.warmup, after), ""))
            except (Failed, LabError, OSError, subprocess.SubprocessError) as e:
                rows.append((name, note, None, str(e).splitlines()[0]))

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
