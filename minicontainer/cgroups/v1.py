"""cgroup v1: one hierarchy (directory tree) per controller, each with its own file names.

Interface files used (Documentation/admin-guide/cgroup-v1/): memory.limit_in_bytes,
memory.memsw.limit_in_bytes, memory.swappiness, memory.usage_in_bytes,
memory.max_usage_in_bytes, memory.oom_control; cpu.cfs_quota_us, cpu.cfs_period_us,
cpu.stat; cpuacct.usage; pids.max, pids.current; blkio.throttle.*; freezer.state.
"""

from __future__ import annotations

import os
import signal
import time

from .files import read_file, read_keyed, write_file
from .v2 import pids_stats, set_pids  # noqa: F401  the pids controller's files are the same in v1 and v2

CPU_PERIOD_US = 100_000
UNLIMITED = 1 << 62  # v1 reports "no limit" as a huge page-aligned number


def set_memory(directory: str, limit: int | None, swap: bool | int) -> None:
    """swap: False (none), True (unlimited), or a number: memory and swap together, in bytes (OCI's
    memory.swap, which is v1's memsw.limit_in_bytes)."""
    write_file(os.path.join(directory, "memory.limit_in_bytes"), "-1" if limit is None else str(limit))
    memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
    if os.path.exists(memsw) and swap is not True:  # exists only with swap accounting on
        total = limit if swap is False else swap
        write_file(memsw, "-1" if total is None else str(total))
    if not swap:
        # v1 has no memory.swap.max; swappiness 0 keeps the hog in RAM so the OOM killer acts.
        write_file(os.path.join(directory, "memory.swappiness"), "0")


def set_cpu(directory: str, cpus: float | None) -> None:
    write_file(os.path.join(directory, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
    write_file(os.path.join(directory, "cpu.cfs_quota_us"), "-1" if cpus is None else str(int(cpus * CPU_PERIOD_US)))


def set_io(directory: str, device: str, rbps=None, wbps=None, riops=None, wiops=None) -> None:
    for name, value in (("read_bps", rbps), ("write_bps", wbps), ("read_iops", riops), ("write_iops", wiops)):
        write_file(os.path.join(directory, f"blkio.throttle.{name}_device"), f"{device} {value or 0}")


def memory_stats(directory: str) -> dict:
    limit = int(read_file(os.path.join(directory, "memory.limit_in_bytes")))
    return {
        "memory_current": int(read_file(os.path.join(directory, "memory.usage_in_bytes"))),
        "memory_peak": int(read_file(os.path.join(directory, "memory.max_usage_in_bytes"))),
        "memory_limit": None if limit >= UNLIMITED else limit,
        # oom_kill in memory.oom_control: Linux 4.13+
        "oom_kills": read_keyed(os.path.join(directory, "memory.oom_control")).get("oom_kill", 0),
    }


def cpu_stats(directory: str) -> dict:
    stat = read_keyed(os.path.join(directory, "cpu.stat"))
    quota = int(read_file(os.path.join(directory, "cpu.cfs_quota_us")))
    period = int(read_file(os.path.join(directory, "cpu.cfs_period_us")))
    return {
        "cpu_periods": stat.get("nr_periods", 0),
        "cpu_throttled": stat.get("nr_throttled", 0),
        "cpu_throttled_usec": stat.get("throttled_time", 0) // 1000,  # v1 counts nanoseconds
        "cpu_limit": None if quota < 0 else quota / period,
    }


def cpuacct_stats(directory: str) -> dict:
    return {"cpu_usage_usec": int(read_file(os.path.join(directory, "cpuacct.usage"))) // 1000}



def frozen(directory: str) -> bool:
    return read_file(os.path.join(directory, "freezer.state")) == "FROZEN"


def freeze(directory: str, on: bool = True, timeout: float = 5.0) -> None:
    """freezer.state: write FROZEN or THAWED; FREEZING means not done yet."""
    deadline = time.monotonic() + timeout
    while True:
        # Stuck in FREEZING (a task was forking or in the kernel): v1 wants FROZEN written again.
        write_file(os.path.join(directory, "freezer.state"), "FROZEN" if on else "THAWED")
        if frozen(directory) == on or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def kill_all(directory: str, freezer_dir: str | None) -> None:
    """v1 has no cgroup.kill: freeze (if we can) so nothing forks, SIGKILL each process, thaw."""
    if freezer_dir:
        freeze(freezer_dir, True, timeout=1.0)
    for pid in read_file(os.path.join(directory, "cgroup.procs")).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    if freezer_dir:
        freeze(freezer_dir, False, timeout=1.0)  # a frozen process cannot act on SIGKILL
