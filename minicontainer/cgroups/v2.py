"""cgroup v2: one tree, each controller's files in the same directory.

Interface files used (Documentation/admin-guide/cgroup-v2.rst):
memory.max, memory.swap.max, memory.oom.group, memory.current, memory.peak,
memory.events; cpu.max, cpu.stat; pids.max, pids.current; io.max;
cgroup.freeze, cgroup.events, cgroup.kill, cgroup.procs, cgroup.subtree_control.
"""

from __future__ import annotations

import os
import signal
import time

from .files import read_file, read_keyed, write_file

CPU_PERIOD_US = 100_000


def enable_controllers(directory: str, controllers) -> None:
    """Write +ctrl to cgroup.subtree_control so the children of this directory get the controllers.

    v2's "no internal processes" rule: this fails with EBUSY if the directory
    itself holds processes (the root cgroup excepted).
    """
    have = set(read_file(os.path.join(directory, "cgroup.subtree_control")).split())
    missing = [c for c in controllers if c not in have]
    if missing:
        write_file(os.path.join(directory, "cgroup.subtree_control"), " ".join("+" + c for c in missing))


def available(directory: str) -> set[str]:
    return set(read_file(os.path.join(directory, "cgroup.controllers")).split())


def set_memory(directory: str, limit: int | None, swap: bool | int) -> None:
    """swap: False (none), True (unlimited), or a number: memory and swap together, in bytes (OCI's
    memory.swap; v2 limits swap alone, so it gets the difference)."""
    write_file(os.path.join(directory, "memory.max"), "max" if limit is None else str(limit))
    if os.path.exists(os.path.join(directory, "memory.swap.max")):
        # No swap unless asked: a memory hog must be OOM-killed, not slowly paged out.
        alone = "max" if swap is True else "0" if swap is False or limit is None else str(max(0, swap - limit))
        write_file(os.path.join(directory, "memory.swap.max"), alone)
    # The container is one workload: on OOM kill all of it, not one process that
    # leaves a half-working container behind.
    write_file(os.path.join(directory, "memory.oom.group"), "1")


def set_cpu(directory: str, cpus: float | None) -> None:
    quota = "max" if cpus is None else str(int(cpus * CPU_PERIOD_US))
    write_file(os.path.join(directory, "cpu.max"), f"{quota} {CPU_PERIOD_US}")


def set_pids(directory: str, limit: int | None) -> None:
    write_file(os.path.join(directory, "pids.max"), "max" if limit is None else str(limit))


def set_io(directory: str, device: str, rbps=None, wbps=None, riops=None, wiops=None) -> None:
    """io.max: "MAJ:MIN rbps=N wbps=N riops=N wiops=N" (max for no limit)."""
    fields = {"rbps": rbps, "wbps": wbps, "riops": riops, "wiops": wiops}
    write_file(os.path.join(directory, "io.max"),
               device + " " + " ".join(f"{k}={'max' if v is None else v}" for k, v in fields.items()))


def memory_stats(directory: str) -> dict:
    peak = os.path.join(directory, "memory.peak")  # Linux 5.19+
    limit = read_file(os.path.join(directory, "memory.max"))
    return {
        "memory_current": int(read_file(os.path.join(directory, "memory.current"))),
        "memory_peak": int(read_file(peak)) if os.path.exists(peak) else None,
        "memory_limit": None if limit == "max" else int(limit),
        "oom_kills": read_keyed(os.path.join(directory, "memory.events")).get("oom_kill", 0),
    }


def cpu_stats(directory: str) -> dict:
    stat = read_keyed(os.path.join(directory, "cpu.stat"))
    quota, period = read_file(os.path.join(directory, "cpu.max")).split()
    return {
        "cpu_usage_usec": stat.get("usage_usec", 0),
        "cpu_periods": stat.get("nr_periods", 0),
        "cpu_throttled": stat.get("nr_throttled", 0),
        "cpu_throttled_usec": stat.get("throttled_usec", 0),
        "cpu_limit": None if quota == "max" else int(quota) / int(period),
    }


def pids_stats(directory: str) -> dict:
    limit = read_file(os.path.join(directory, "pids.max"))
    events = os.path.join(directory, "pids.events")  # "max N": forks refused by the limit
    return {"pids_current": int(read_file(os.path.join(directory, "pids.current"))),
            "pids_limit": None if limit == "max" else int(limit),
            "pids_refused": read_keyed(events).get("max", 0) if os.path.exists(events) else None}


def frozen(directory: str) -> bool:
    return read_keyed(os.path.join(directory, "cgroup.events")).get("frozen") == 1


def freeze(directory: str, on: bool = True, timeout: float = 5.0) -> None:
    """cgroup.freeze; the freeze completes when cgroup.events says frozen 1."""
    write_file(os.path.join(directory, "cgroup.freeze"), "1" if on else "0")
    deadline = time.monotonic() + timeout
    while frozen(directory) != on and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_all(directory: str) -> None:
    """cgroup.kill (Linux 5.14+) SIGKILLs every process in the subtree at once."""
    kill_file = os.path.join(directory, "cgroup.kill")
    if os.path.exists(kill_file):
        write_file(kill_file, "1")
        return
    # Older kernels: freeze so nothing forks while we kill, then kill each one.
    freeze(directory, True, timeout=1.0)
    for pid in read_file(os.path.join(directory, "cgroup.procs")).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    freeze(directory, False, timeout=1.0)
