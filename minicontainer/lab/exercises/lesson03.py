"""Exercises of notebooks/03-cgroups.ipynb."""

from __future__ import annotations

from ... import inspect
from .. import Exercise
from . import running


def check_memory_48m_lab(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    stats = inspect.cgroup_stats(inspect.cgroup_of(answer.pid))
    if stats["memory_limit"] != 48 << 20:
        seen = "none" if stats["memory_limit"] is None else f"{stats['memory_limit'] / 2**20:g} MiB"
        problems.append(f"its cgroup's memory limit is {seen}, not 48 MiB")
    if inspect.hostname(answer.pid) != "lab":
        problems.append(f"its hostname is {inspect.hostname(answer.pid)!r}, not 'lab'")
    return problems


def check_half_cpu_20_pids(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    stats = inspect.cgroup_stats(inspect.cgroup_of(answer.pid))
    if stats["cpu_limit"] != 0.5:
        problems.append(f"its CPU quota is {stats['cpu_limit'] or 'unlimited'} CPUs, not 0.5")
    if stats["pids_limit"] != 20:
        problems.append(f"its pids limit is {stats['pids_limit'] or 'unlimited'}, not 20")
    return problems


EXERCISES = [
    Exercise("cgroups-lab-48m", "Start a container `box` whose hostname is `lab` and whose memory limit is 48M.",
             "ContainerSpec(..., hostname=..., memory=...)", check_memory_48m_lab),
    Exercise("cgroups-half-cpu-20-pids", "Start a container `box` limited to half a CPU and at most 20 "
             "processes.", "cpus and pids in ContainerSpec", check_half_cpu_20_pids),
]
