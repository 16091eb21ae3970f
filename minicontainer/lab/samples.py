"""Samplers: a cgroup's CPU and memory counters read again and again for a bounded time.

Plain reads of cgroupfs files, no thread and no fork, so they are safe in a Jupyter kernel. Each
sampler stops at its time limit, or early when the cgroup is gone or holds no process any more
(the container ended). pictures.cpu_throttling and pictures.memory_over_time draw what they return.

Files read (v2 | v1):
  CPU:    cpu.stat usage_usec, nr_periods, nr_throttled, throttled_usec; cpu.max
        | cpu.stat nr_periods, nr_throttled, throttled_time (ns); cpuacct.usage (ns);
          cpu.cfs_quota_us, cpu.cfs_period_us
  memory: memory.current, memory.max, memory.events oom_kill
        | memory.usage_in_bytes, memory.limit_in_bytes, memory.oom_control oom_kill
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

from .. import inspect
from ..cgroups import Cgroup
from ..cgroups.files import read_file, read_keyed
from ..errors import LabError

MAX_SECONDS = 120.0     # a sampler in a lesson must end soon, whatever it is asked
MIN_INTERVAL = 0.02     # below this the reads themselves are what is measured
V1_UNLIMITED = 1 << 62  # v1 shows "no memory limit" as a huge page-aligned number


@dataclass
class Samples:
    """What a sampler read: one dict per sample, with t in seconds since the first read."""
    kind: str                   # "cpu" or "memory"
    version: int                # the cgroup version the files came from
    files: dict[str, str]       # what each value was read from
    limit: float | None         # CPUs (cpu) or bytes (memory); None: no limit set
    rows: list[dict] = field(default_factory=list)
    stopped: str = ""           # why sampling ended before its time ("" if it ran to the end)

    def __len__(self) -> int:
        return len(self.rows)


def _check_bounds(seconds, interval) -> tuple[float, float]:
    try:
        seconds, interval = float(seconds), float(interval)
    except (TypeError, ValueError):
        raise LabError(f"seconds={seconds!r} and interval={interval!r} must be numbers",
                       "they say how long to sample and how often", "e.g. seconds=3, interval=0.2") from None
    if not 0 < seconds <= MAX_SECONDS or not MIN_INTERVAL <= interval <= seconds:
        raise LabError(f"cannot sample for {seconds} s every {interval} s",
                       f"seconds must be more than 0 and at most {MAX_SECONDS:g}; the interval at least "
                       f"{MIN_INTERVAL} s and no longer than seconds",
                       "e.g. seconds=3, interval=0.2")
    return seconds, interval


def _resolve(target) -> tuple[Cgroup, object]:
    """A Cgroup from a Container, a Cgroup, a PID (its cgroup, from /proc/PID/cgroup) or a directory."""
    container = target if isinstance(getattr(target, "cgroup", None), Cgroup) else None
    if container is not None:
        return container.cgroup, container
    if isinstance(target, Cgroup):
        return target, None
    if isinstance(target, int) and not isinstance(target, bool):
        return inspect.cgroup_of(target), None
    if isinstance(target, str) and os.path.isdir(target):
        # One directory: on v2 it has every controller's files; on v1 it is one hierarchy's.
        names = os.listdir(target)
        dirs = {c: target for c in ("memory", "cpu", "cpuacct")
                if any(n.startswith(c + ".") for n in names)}
        return Cgroup(os.path.basename(target), dirs=dirs), None
    raise LabError(f"cannot find a cgroup from {target!r}",
                   "give a Container, a Cgroup (container.cgroup), a PID or a cgroup directory",
                   "e.g. sample_cpu(box.cgroup, seconds=3)")


def _version(directory: str) -> int:
    """Read from the directory itself: only a cgroup2 directory has cgroup.controllers."""
    return 2 if os.path.exists(os.path.join(directory, "cgroup.controllers")) else 1


def _empty(group: Cgroup) -> bool:
    try:
        return not group.procs()
    except OSError:
        return True


def _sample(seconds, interval, group, container, read_one) -> tuple[list[dict], str]:
    rows, stopped = [], ""
    start = time.monotonic()
    while True:
        now = time.monotonic()
        try:
            row = read_one()
        except OSError as e:  # a removed cgroup: ENOENT, or ENODEV for a file opened as it went
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                raise
            stopped = "the cgroup is gone (the container ended)"
            break
        row["t"] = now - start
        rows.append(row)
        if _empty(group):
            stopped = "the cgroup holds no process any more (the container ended)"
            break
        if now - start >= seconds:
            break
        time.sleep(max(0.0, min(interval, seconds - (time.monotonic() - start))))
    if stopped and container is not None and hasattr(container, "wait"):
        # The helper reads the counters once more just before it removes the cgroup (final_stats).
        try:
            container.wait(timeout=2)
        except (TimeoutError, LabError):
            pass
        final = getattr(container, "final_stats", None) or {}
        if final:
            rows.append({"t": time.monotonic() - start, "final": final})
    return rows, stopped


def _controller_dir(group, controller: str, reads: str) -> str:
    """The group's directory for a controller, or a LabError saying the sampler needs it."""
    directory = group.dirs.get(controller)
    if directory is None:
        raise LabError(f"cgroup {group.name} has no {controller} controller here", f"the sampler reads {reads}",
                       "give the container's cgroup (box.cgroup); `minicontainer doctor` lists the controllers")
    return directory


def sample_cpu(target, seconds: float = 3.0, interval: float = 0.2) -> Samples:
    """Read a cgroup's CPU counters every `interval` s for at most `seconds` s (see the module doc)."""
    seconds, interval = _check_bounds(seconds, interval)
    group, container = _resolve(target)
    cpu_dir = _controller_dir(group, "cpu", "cpu.stat, which the cpu controller writes")
    version = _version(cpu_dir)
    stat = os.path.join(cpu_dir, "cpu.stat")
    if version == 2:
        files = {"usage": stat + " usage_usec", "throttled": stat + " nr_throttled, throttled_usec",
                 "quota": os.path.join(cpu_dir, "cpu.max")}
        quota, period = read_file(files["quota"]).split()
        limit = None if quota == "max" else int(quota) / int(period)
    else:
        acct_dir = group.dirs.get("cpuacct", cpu_dir)
        usage_file = os.path.join(acct_dir, "cpuacct.usage")
        files = {"usage": usage_file if os.path.exists(usage_file) else "",
                 "throttled": stat + " nr_throttled, throttled_time",
                 "quota": os.path.join(cpu_dir, "cpu.cfs_quota_us")}
        quota = int(read_file(files["quota"]))
        limit = None if quota < 0 else quota / int(read_file(os.path.join(cpu_dir, "cpu.cfs_period_us")))

    def read_one() -> dict:
        counters = read_keyed(stat)
        if version == 2:
            usage, throttled_usec = counters.get("usage_usec"), counters.get("throttled_usec", 0)
        else:
            usage = int(read_file(files["usage"])) // 1000 if files["usage"] else None  # ns -> µs
            throttled_usec = counters.get("throttled_time", 0) // 1000
        return {"usage_usec": usage, "periods": counters.get("nr_periods", 0),
                "throttled": counters.get("nr_throttled", 0), "throttled_usec": throttled_usec}

    rows, stopped = _sample(seconds, interval, group, container, read_one)
    for row in rows:  # the helper's last reading, in the same keys
        final = row.pop("final", None)
        if final:
            row.update(usage_usec=final.get("cpu_usage_usec"), periods=final.get("cpu_periods") or 0,
                       throttled=final.get("cpu_throttled") or 0, throttled_usec=final.get("cpu_throttled_usec") or 0)
    return Samples("cpu", version, files, limit, rows, stopped)


def sample_memory(target, seconds: float = 3.0, interval: float = 0.1) -> Samples:
    """Read a cgroup's memory use, limit and OOM kills every `interval` s for at most `seconds` s."""
    seconds, interval = _check_bounds(seconds, interval)
    group, container = _resolve(target)
    directory = _controller_dir(group, "memory", "the memory controller's files")
    version = _version(directory)
    names = (("memory.current", "memory.max", "memory.events") if version == 2 else
             ("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.oom_control"))
    files = dict(zip(("usage", "limit", "oom_kill"), (os.path.join(directory, n) for n in names), strict=True))
    # The kernel's own high-water mark, which also sees what happens between two samples: memory.peak
    # (v2, Linux 5.19+), memory.max_usage_in_bytes (v1).
    peak_file = os.path.join(directory, "memory.peak" if version == 2 else "memory.max_usage_in_bytes")
    if os.path.exists(peak_file):
        files["peak"] = peak_file
    text = read_file(files["limit"])
    limit = None if text == "max" or int(text) >= V1_UNLIMITED else int(text)

    def read_one() -> dict:
        # oom_kill: memory.events on v2; memory.oom_control on v1 (Linux 4.13+)
        row = {"bytes": int(read_file(files["usage"])), "oom_kills": read_keyed(files["oom_kill"]).get("oom_kill", 0)}
        if "peak" in files:
            row["kernel_peak"] = int(read_file(files["peak"]))
        return row

    rows, stopped = _sample(seconds, interval, group, container, read_one)
    for row in rows:
        final = row.pop("final", None)
        if final:
            row.update(bytes=final.get("memory_current"), oom_kills=final.get("oom_kills") or 0)
    rows = [row for row in rows if row.get("bytes") is not None or row.get("oom_kills")]
    return Samples("memory", version, files, limit, rows, stopped)
