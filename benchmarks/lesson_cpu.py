"""Benchmark: the CPU a lesson's code cells take, on this machine's own CPU (the per-core half of sizing a class).

Runs each lesson's code cells in order, in a kernel of its own (nbclient), as root or, with --uid, as an
unprivileged user with a home of its own (a class host's learner: every container rootless). The run sits in a
cgroup made for it below this process's own. That cgroup holds the kernel, the runtime's helpers and every
container (their cgroups go below it, or they stay in it), so its CPU counter (cgroup v2 cpu.stat's usage_usec,
v1 cpuacct.usage) is what the lesson cost. Sampled every half second for the busiest second. Prints per lesson:
wall time, CPU seconds, the mean and the busiest second's CPUs in use, the cells that failed (a failed cell
costs less than a passing one), and how many learners one core serves if each takes the lesson over
--minutes (the instructor guide's 3-hour plan gives a lesson 20 to 40). Nothing here asserts a speed.

    sudo .venv/bin/python benchmarks/lesson_cpu.py [--uid 20000] [--minutes 30] [NOTEBOOK...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_EVERY = 0.5

# Runs in the measured cgroup: every code cell in order, on past errors; prints how many failed.
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, timeout=900, kernel_name="python3", allow_errors=True,
               resources={"metadata": {"path": sys.argv[2]}}).execute()
code = [c for c in notebook.cells if c.cell_type == "code"]
failed = sum(any(o.get("output_type") == "error" for o in c.get("outputs", [])) for c in code)
print(f"{failed}/{len(code)}")
"""


def _cgroup_mounts() -> list[tuple[str, set[str]]]:
    """(mount point, its controllers or name=) of each cgroup hierarchy; cgroup2's set is empty."""
    found = []
    for line in open("/proc/self/mountinfo"):
        fields, _, rest = line.partition(" - ")
        fstype, _, options = rest.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            found.append((fields.split()[4], set(options.split(",")) if fstype == "cgroup" else set()))
    return found


class Probe:
    """The cgroups of one run, below our own. Pure v2: a parent (its counter takes in what the runtime puts beside
    the run, in the parent) with the run in a leaf. v1 or hybrid: one directory in every hierarchy, at the same
    path below the deepest of our own (the engines of lesson 08 need the paths to nest), counted by cpuacct."""

    def __init__(self):
        lines = [line.rstrip("\n").split(":", 2) for line in open("/proc/self/cgroup")]
        mounts, name = _cgroup_mounts(), f"lesson-cpu-{os.getpid()}"
        self.made: list[str] = []  # every directory made, parents first
        if len(lines) == 1 and not lines[0][1]:
            mount = next(point for point, options in mounts if not options)
            self.top = os.path.join(mount + lines[0][2].rstrip("/"), name)
            self.leaves, self.counter = [os.path.join(self.top, "run")], (self.top, "cpu.stat")
            self._make(self.leaves[0])
            return
        below = max((path for _, _, path in lines), key=len).rstrip("/") + "/" + name
        self.leaves, self.counter = [], None
        for _, controllers, _ in lines:
            wanted = set(controllers.split(",")) if controllers else set()
            mount = next((point for point, options in mounts if options == wanted or (wanted and wanted <= options)),
                         None)
            if mount is None:
                continue  # a hierarchy this mount namespace does not show
            leaf = mount + below
            self._make(leaf)
            self.leaves.append(leaf)
            if "cpuacct" in wanted:
                self.counter = (leaf, "cpuacct.usage")
        if self.counter is None:
            raise SystemExit("no cpuacct hierarchy to count the run's CPU time in")
        self.top = None

    def _make(self, leaf: str) -> None:
        missing = []
        path = leaf
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for directory in reversed(missing):
            os.mkdir(directory)
            self.made.append(directory)
            # A new v1 cpuset takes no task until it has CPUs and memory nodes: its parent's.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if os.path.exists(os.path.join(directory, knob)):
                    with open(os.path.join(os.path.dirname(directory), knob)) as f, \
                            open(os.path.join(directory, knob), "w") as g:
                        g.write(f.read())

    def cpu_seconds(self) -> float:
        directory, counter = self.counter
        with open(os.path.join(directory, counter)) as f:
            text = f.read()
        if counter == "cpuacct.usage":
            return int(text) / 1e9
        return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6

    def remove(self) -> None:
        """Wait for every process of the run to end, then remove every cgroup under and of ours, deepest first."""
        trees = [self.top] if self.top else self.leaves
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(open(os.path.join(d, "cgroup.procs")).read().strip()
                       for tree in trees for d, _, _ in os.walk(tree)):
                break
            time.sleep(0.2)
        for tree in trees:
            for directory, _, _ in sorted(os.walk(tree), key=lambda entry: -entry[0].count("/")):
                if directory not in self.made:
                    os.rmdir(directory)  # made by the run (the runtime's own, or an engine's)
        for directory in reversed(self.made):
            os.rmdir(directory)


def run_lesson(notebook: str, uid: int | None) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, the busiest second's CPUs, failed/all code cells) of one lesson."""
    probe = Probe()
    home = tempfile.mkdtemp(prefix="lesson-cpu-home-")
    try:
        lab = os.path.join(home, "lab")
        shutil.copytree(os.path.dirname(os.path.abspath(notebook)), lab)
        command = [sys.executable, "-c", RUNNER, os.path.join(lab, os.path.basename(notebook)), lab]
        env = {**os.environ, "HOME": home}
        if uid is not None:
            subprocess.run(["chown", "-R", f"{uid}:{uid}", home], check=True)
            env = {"HOME": home, "PATH": "/usr/local/bin:/usr/bin:/bin", "MINICONTAINER_LAB": "class"}
            command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command]
        samples, done = [], threading.Event()

        def sample():
            while not done.wait(SAMPLE_EVERY):
                samples.append((time.monotonic(), probe.cpu_seconds()))
        sampler = threading.Thread(target=sample, daemon=True)
        started, cpu_before = time.monotonic(), probe.cpu_seconds()
        sampler.start()
        # Moved into the run's cgroups before it starts anything: everything it forks is counted there.
        enter = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 1; shift; '
                 'n=$((n-1)); done; exec "$@"')
        process = subprocess.run(["sh", "-c", enter, "sh", str(len(probe.leaves)), *probe.leaves, *command],
                                 capture_output=True, text=True, cwd=lab, env=env, timeout=3600)
        done.set()
        sampler.join()
        wall, cpu = time.monotonic() - started, probe.cpu_seconds() - cpu_before
        window = max(1, int(1 / SAMPLE_EVERY))
        busiest = max(((b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[window:], strict=False)),
                      default=cpu / wall)
        failed = process.stdout.strip().splitlines()[-1] if process.returncode == 0 and process.stdout.strip() \
            else f"the run failed: {process.stderr.strip()[-200:]}"
        return wall, cpu, busiest, failed
    finally:
        probe.remove()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="lessons to run (default: every lesson)")
    parser.add_argument("--uid", type=int, help="run as this unprivileged uid, as a class host's learner")
    parser.add_argument("--minutes", type=float, default=30, help="how long a learner takes over a lesson")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the run's cgroup is made below this process's own")
    notebooks = args.notebooks or sorted(os.path.join(REPO, "notebooks", n) for n in
                                         os.listdir(os.path.join(REPO, "notebooks")) if n.endswith(".ipynb"))
    model = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                           text=True).stdout.strip()
    print(f"CPU: {model or 'unknown'}, {os.cpu_count()} cores; as {'uid ' + str(args.uid) if args.uid else 'root'}; "
          f"a lesson taken over {args.minutes:g} minutes")
    print(f"{'lesson':<26} {'wall s':>7} {'CPU s':>7} {'mean CPUs':>9} {'busiest 1 s':>11} {'failed cells':>12} "
          f"{'learners/core':>13}")
    for notebook in notebooks:
        wall, cpu, busiest, failed = run_lesson(notebook, args.uid)
        per_core = args.minutes * 60 / cpu if cpu else float("inf")
        print(f"{os.path.basename(notebook)[:-6]:<26} {wall:7.1f} {cpu:7.1f} {cpu / wall:9.2f} {busiest:11.2f} "
              f"{failed:>12} {per_core:13.0f}", flush=True)


if __name__ == "__main__":
    main()
