"""Real engines driving the runtime, kept to themselves: Podman (with conmon) and containerd (with its runc
shim), each with its storage, state and cgroups in places of its own, so that a lesson or a test changes
nothing of the host's own engines and leaves nothing behind.

Used by notebook 08 and by tests/test_engines.py. Engines are programs run with subprocess: the Jupyter
kernel itself never forks a container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time

from ..errors import LabError

RUNTIMES = ("minicontainer", "runc")
# Podman's and Docker's default ulimits exceed the hard limits of some hosts (containers, CI); these fit all.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
LAB_DIR = "/var/lib/minicontainer/engines"   # the lesson's engines keep their images and state here
RUN_DIR = "/run/minicontainer-engines"       # and their runtime state (a tmpfs: gone at reboot) here
NEEDED = {"podman": "podman", "conmon": "conmon", "containerd": "containerd", "ctr": "containerd",
          "runc": "runc"}


def require(*programs: str) -> None:
    """A clear error naming what is missing, instead of a FileNotFoundError from subprocess."""
    missing = [p for p in programs or NEEDED if not shutil.which(p)]
    if missing:
        packages = sorted({NEEDED.get(p, p) for p in missing})
        raise LabError(f"not installed: {', '.join(missing)}", "the real engines come from the distribution's "
                       "packages, which this machine does not have", "run `sudo ./lab start` from the project "
                       f"(it installs them), or `apt install {' '.join(packages)}`")


def runtime_path(runtime: str) -> str:
    """The program an engine runs: this venv's minicontainer (the code this Python imports), or runc."""
    if runtime == "minicontainer":
        return os.path.join(os.path.dirname(sys.executable), "minicontainer")
    found = shutil.which(runtime)
    if not found:
        require(runtime)
    return found


def engine_env(**extra: str) -> dict:
    """The environment of an engine: minicontainer, run by it, imports this very checkout."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return dict(os.environ, PYTHONPATH=package_parent, **extra)


# -- cgroups: below our own, never at a hierarchy's root ---------------------------------------------

def cgroup_parent(name: str) -> str:
    """The cgroup path (from each hierarchy's root) under which an engine puts its containers: below this
    process's own cgroup in every hierarchy. Hybrid hosts place a process at different depths in each: the
    deepest path, where every other is a prefix. On cgroup v2 beside our own cgroup, not below it: only a
    cgroup without processes of its own can give controllers to its children."""
    own = [line.rstrip("\n").split(":", 2)[2].rstrip("/") for line in open("/proc/self/cgroup")]
    deepest = max(own, key=len)
    if not all(deepest.startswith(path) for path in own):
        raise LabError(f"no cgroup lies below this process's own in every hierarchy: {own}",
                       "the host placed it at unrelated paths in its cgroup hierarchies",
                       "run the lab from a shell at the hierarchies' roots (`./lab start` does)")
    if len(own) == 1 and deepest:  # pure cgroup v2, not at the root
        deepest = os.path.dirname(deepest)
    return f"{deepest}/minicontainer-engines/{name}"


def hierarchies() -> list[str]:
    """Every mounted cgroup hierarchy: engines use those minicontainer has no use for (cpuset...) too."""
    found = []
    for line in open("/proc/self/mountinfo"):
        fields, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            found.append(fields.split()[4])
    return sorted(set(found))


def cgroup_dirs(path: str) -> list[str]:
    """Every directory at or below `path` in every mounted hierarchy, deepest first."""
    found = []
    for top in hierarchies():
        base = os.path.join(top, path.lstrip("/"))
        for where, dirs, _ in os.walk(base):
            found += [os.path.join(where, d) for d in dirs]
        if os.path.isdir(base):
            found.append(base)
    return sorted(found, key=lambda d: -d.count("/"))


def remove_cgroups(path: str) -> None:
    """rmdir what an engine left at or below `path` (its containers' and monitors' groups, in every
    hierarchy), then `minicontainer-engines` above it once no other engine's group is in it."""
    for directory in cgroup_dirs(path):
        os.rmdir(directory)
    for top in hierarchies():
        try:
            os.rmdir(os.path.join(top, os.path.dirname(path).lstrip("/")))
        except OSError:
            pass  # not there, or another engine's group is still in it (EBUSY)


def wait_for_processes_naming(path: str, timeout: float = 30) -> list[int]:
    """Wait until no process has `path` in its command line (an engine's state dir: conmon, and the `podman
    container cleanup` it starts when a container exits, name it); the PIDs still there at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if path.encode() in f.read() and int(pid) != os.getpid():
                        alive.append(int(pid))
            except OSError:
                continue  # gone meanwhile
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def rootfs_tarball(image: str, workdir: str) -> str:
    """An image directory as the tarball `podman import` and `docker import` take: an image made offline."""
    archive = os.path.join(workdir, "rootfs.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(image, arcname=".")
    return archive


def _run(argv: list[str], timeout: float, check: bool, env: dict, shown: str,
         cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run an engine's command; `shown` names it in errors (without the options that place its storage).
    cwd: where it runs (conmon writes a file named "oom" into its working directory after an OOM kill)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise LabError(f"{shown} did not finish within {timeout:.0f} s",
                       "the engine or the container hangs", "run `lab.reset()` and try again") from None
    if check and out.returncode != 0:
        raise LabError(f"{shown} failed ({out.returncode}): {out.stderr.strip()[-800:]}",
                       "the engine refused, or the runtime failed", "read the engine's message above")
    return out


# -- Podman: podman -> conmon -> the runtime --------------------------------------------------------

class Podman:
    """Podman with its images, containers and state in `workdir` (vfs storage: no overlay mounts on the
    host), cgroups below ours (--cgroup-parent, never libpod_parent/ at a hierarchy's root), no network of
    its own unless asked. `runtime` picks the OCI runtime per call; conmon is each container's monitor."""

    def __init__(self, workdir: str = f"{LAB_DIR}/podman", rundir: str = f"{RUN_DIR}/podman",
                 hooks_dir: str | None = None):
        require("podman", "conmon", "runc")
        self.workdir, self.rundir, self.parent = workdir, rundir, cgroup_parent("podman")
        os.makedirs(workdir, exist_ok=True)
        self.confs = {}
        for runtime in RUNTIMES:  # one per default runtime: a pod's infra container takes the default one
            self.confs[runtime] = os.path.join(workdir, f"containers-{runtime}.conf")
            with open(self.confs[runtime], "w") as f:
                # runtime_supports_json: only runtimes named here get --log-format json (their errors then
                # reach `podman` as text it can show).
                f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                        f'[engine]\nruntime = "{runtime}"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                        'runtime_supports_json = ["minicontainer", "runc"]\n'
                        f'[engine.runtimes]\nminicontainer = ["{runtime_path("minicontainer")}"]\n')
        self.base = ["podman", "--root", os.path.join(workdir, "storage"), "--runroot", rundir,
                     "--storage-driver", "vfs", "--tmpdir", os.path.join(rundir, "tmp")]
        if hooks_dir:
            self.base += ["--hooks-dir", hooks_dir]

    def __call__(self, *args: str, timeout: float = 60, check: bool = True,
                 runtime: str = "minicontainer") -> subprocess.CompletedProcess:
        return _run([*self.base, *args], timeout, check, engine_env(CONTAINERS_CONF=self.confs[runtime]),
                    " ".join(["podman", *args[:3]]), cwd=self.workdir)

    def run(self, runtime: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """`podman run` with the runtime named, no network and our cgroup parent: ARGS as for podman run."""
        return self("run", "--runtime", runtime, "--network", "none", "--cgroup-parent", self.parent, *ULIMITS,
                    *args, runtime=runtime, **kwargs)

    def import_image(self, image: str, name: str = "localhost/busybox:lab") -> str:
        """The lab's image as a Podman image (once: kept in the workdir for later runs)."""
        if self("image", "exists", name, check=False).returncode != 0:
            self("import", rootfs_tarball(image, self.workdir), name, timeout=300)
            os.unlink(os.path.join(self.workdir, "rootfs.tar"))
        return name

    def remove_containers(self) -> None:
        """Every pod and container, and their cgroups; the images stay."""
        self("pod", "rm", "--all", "--force", check=False)
        self("rm", "--all", "--force", "--time", "0", check=False)
        self.remove_cgroups_if_unused()

    def remove_cgroups_if_unused(self) -> None:
        """Its cgroups (each container's monitor group, podman/conmon, stays after the container is gone), once
        it has no container left. A cleanup that conmon started when a container exited may still run, and
        would make the group again after ours is gone: wait for it first."""
        if self("ps", "--all", "--quiet", check=False).stdout.split():
            return
        wait_for_processes_naming(self.rundir)
        remove_cgroups(self.parent)


# -- containerd: (dockerd, or the kubelet through CRI ->) containerd -> runc shim -> the runtime -------

class Containerd:
    """A containerd of our own: root, state and socket in directories of its own, its CRI plugin (which wants
    CNI) off, driven with ctr in a namespace of its own. Its runc shim (containerd-shim-runc-v2) runs the
    runtime named by --runc-binary and keeps that runtime's state under /run/containerd/runc/NAMESPACE."""

    def __init__(self, workdir: str = f"{LAB_DIR}/containerd", rundir: str = f"{RUN_DIR}/containerd",
                 namespace: str = "minicontainer-lab"):
        require("containerd", "ctr", "runc")
        self.workdir, self.rundir, self.namespace = workdir, rundir, namespace
        self.socket = os.path.join(rundir, "containerd.sock")
        self.shim_root = f"/run/containerd/runc/{namespace}"
        self.parent = cgroup_parent("containerd")
        self.daemon = None

    def start(self) -> Containerd:
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs(self.rundir, exist_ok=True)
        self.had_run_containerd = os.path.isdir("/run/containerd")
        config = os.path.join(self.rundir, "config.toml")
        with open(config, "w") as f:
            f.write(f'version = 2\nroot = "{self.workdir}/root"\nstate = "{self.rundir}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.socket}"\n')
        self.log = open(os.path.join(self.rundir, "containerd.log"), "w")
        self.daemon = subprocess.Popen(["containerd", "--config", config], stdout=self.log, stderr=self.log,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(self.rundir, "containerd.pid"), "w") as f:
            f.write(str(self.daemon.pid))
        deadline = time.monotonic() + 30
        while self("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                self.stop()
                raise LabError("containerd did not start", f"see {self.rundir}/containerd.log",
                               "run `lab.reset()` and try again")
            time.sleep(0.05)
        return self

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __call__(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ctr", "--address", self.socket, "--namespace", self.namespace, *args], timeout, check,
                    engine_env(), " ".join(["ctr", *args[:3]]))

    def run(self, runtime: str, image: str, name: str, command: list[str], *options: str,
            **kwargs) -> subprocess.CompletedProcess:
        """`ctr run --rootfs IMAGE NAME COMMAND` through the runc shim, with RUNTIME as its runc binary."""
        return self("run", "--rootfs", "--runc-binary", runtime_path(runtime), "--cgroup", f"{self.parent}/{name}",
                    *options, image, name, *command, **kwargs)

    def task_pid(self, name: str) -> int:
        for line in self("task", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                return int(fields[1])
        raise LabError(f"no task {name}", "it ended or was never started", "start it with run(..., '-d')")

    def wait_stopped(self, name: str, timeout: float = 10) -> None:
        """Until the shim reports the task STOPPED (it reaped PID 1)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self("task", "ls").stdout.splitlines()[1:]:
                if line.split()[:1] == [name] and line.split()[-1] == "STOPPED":
                    return
            time.sleep(0.05)
        raise LabError(f"task {name} did not stop within {timeout:.0f} s", "its PID 1 ignores the signal",
                       "send SIGKILL")

    def remove_all(self) -> None:
        for name in self("task", "ls", "--quiet", check=False).stdout.split():
            self("task", "kill", "--signal", "KILL", name, check=False)
            deadline = time.monotonic() + 10
            while self("task", "delete", name, check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        for name in self("container", "ls", "--quiet", check=False).stdout.split():
            self("container", "delete", name, check=False)

    def stop(self) -> None:
        """Every task and container deleted, the daemon stopped, its shims' leftovers and cgroups removed."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.remove_all()
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.log.close()
        self.daemon = None
        remove_cgroups(self.parent)
        # Its shims' sockets and the runtime's root: empty directories once every task is deleted.
        top = self.shim_root if getattr(self, "had_run_containerd", True) else "/run/containerd"
        for where, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            if not os.listdir(where):
                os.rmdir(where)
        shutil.rmtree(self.rundir, ignore_errors=True)


def reset() -> list[str]:
    """What a killed notebook kernel left of the lesson's engines: containers, pods, a containerd and its
    tasks. Podman needs no daemon to clean up; a containerd is started again to reach its shims."""
    removed = []
    if os.path.isdir(f"{LAB_DIR}/podman") and shutil.which("podman"):
        podman = Podman()
        if podman("ps", "--all", "--quiet", check=False).stdout.split():
            removed.append("podman containers")
        podman.remove_containers()
    pid_file = f"{RUN_DIR}/containerd/containerd.pid"
    if os.path.exists(pid_file) and shutil.which("containerd"):
        pid = open(pid_file).read().strip()
        try:
            if open(f"/proc/{pid}/comm").read().strip() == "containerd":
                os.kill(int(pid), 15)  # the old daemon; a new one reaches its shims again
                time.sleep(0.5)
        except (OSError, ValueError):
            pass  # gone already
        Containerd().start().stop()
        removed.append("containerd")
    return removed
