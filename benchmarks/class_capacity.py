"""Benchmark: how many learners a class host holds, per GiB of memory and per CPU core.

Simulated learners log in to the class host's hub at once (minicontainer.classroom.client: the login form,
their server, a kernel), run a lesson's code cells, and keep their server. Meanwhile each learner's systemd unit
is sampled every half second: memory.current at its highest (a spike shorter than that can be missed) and CPU
time (cpu.stat's usage_usec), which cover the learner's JupyterLab, kernel and containers. Prints per learner
and the totals; nothing here asserts a speed. Run as root on a class host (vagrant/class-host.sh):

    /opt/minicontainer/venv/bin/python benchmarks/class_capacity.py [--learners N] [--notebook PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time

from minicontainer.classroom.client import HubError, Learner, notebook_cells

CARDS = "/etc/minicontainer/class/passwords"
SAMPLE_EVERY = 0.5


def unit_cgroup(name: str) -> str | None:
    """The cgroup v2 directory of a learner's server unit, as systemd reports it."""
    out = subprocess.run(["systemctl", "show", "-p", "ControlGroup", "--value", f"jupyter-{name}-singleuser"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    return f"/sys/fs/cgroup{out}" if out else None


def read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_usec(directory: str) -> int:
    with open(os.path.join(directory, "cpu.stat")) as f:
        return int(dict(line.split() for line in f)["usage_usec"])


class Sampler(threading.Thread):
    """The highest memory.current seen in each unit's cgroup, until stopped."""

    def __init__(self, names: list[str]):
        super().__init__(daemon=True)
        self.names, self.peak, self.done = names, dict.fromkeys(names, 0), threading.Event()

    def run(self):
        while not self.done.wait(SAMPLE_EVERY):
            for name in self.names:
                directory = unit_cgroup(name)
                current = read_int(os.path.join(directory, "memory.current")) if directory else None
                self.peak[name] = max(self.peak[name], current or 0)


def one_learner(url: str, name: str, password: str, cells: list[str], results: dict) -> None:
    started = time.monotonic()
    try:
        learner = Learner(url, name, password)
        learner.log_in()
        learner.start_server()
        kernel = learner.start_kernel()
        try:
            ran = learner.run(kernel, cells, cell_timeout=600, keep_going=True)
        finally:
            learner.shutdown_kernel(kernel)
        results[name] = {"seconds": time.monotonic() - started, "cells": len(ran),
                         "failed": sum(r.status != "ok" for r in ran)}
    except HubError as e:
        results[name] = {"seconds": time.monotonic() - started, "error": str(e)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", default="http://127.0.0.1:8000/")
    parser.add_argument("--learners", type=int, default=0, help="how many of the class (default: all)")
    parser.add_argument("--notebook", default="/opt/minicontainer/checkout/notebooks/00-welcome.ipynb")
    args = parser.parse_args()
    with open(CARDS) as f:
        cards = [line.strip().split(":", 1) for line in f if ":" in line]
    cards = cards[:args.learners] if args.learners else cards
    names = [name for name, _ in cards]
    cells = notebook_cells(args.notebook)
    before = {}
    for name in names:  # a server already running counts from here
        directory = unit_cgroup(name)
        before[name] = cpu_usec(directory) if directory and os.path.isdir(directory) else 0

    sampler, results = Sampler(names), {}
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=one_learner, args=(args.hub, name, password, cells, results))
               for name, password in cards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    sampler.done.set()
    sampler.join()

    print(f"{len(names)} learners at once, {len(cells)} code cells each of {os.path.basename(args.notebook)}, "
          f"{wall:.0f} s in all; host: {os.cpu_count()} CPUs, "
          f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.1f} GiB")
    print(f"{'learner':<12}{'peak MiB':>10}{'CPU s':>8}{'wall s':>8}  cells")
    peaks, cpus = [], []
    for name in names:
        directory = unit_cgroup(name)
        peak = sampler.peak[name]  # not memory.peak: that counts from the unit's start, before this run
        cpu = (cpu_usec(directory) - before[name]) / 1e6 if directory else 0.0
        outcome = results.get(name, {})
        peaks.append(peak / 2**20)
        cpus.append(cpu)
        what = outcome.get("error") or f"{outcome.get('cells', 0)} ran, {outcome.get('failed', 0)} failed"
        print(f"{name:<12}{peak / 2**20:>10.0f}{cpu:>8.1f}{outcome.get('seconds', 0):>8.0f}  {what}")
    mean_peak, busy = statistics.mean(peaks), sum(cpus) / wall
    print(f"mean peak {mean_peak:.0f} MiB per learner: {1024 / mean_peak:.1f} learners per GiB")
    print(f"CPU: {sum(cpus):.0f} s in {wall:.0f} s, {busy:.2f} cores busy: "
          f"{len(names) / busy:.1f} learners per core, all running a cell at once" if busy else "CPU: none used")


if __name__ == "__main__":
    main()
