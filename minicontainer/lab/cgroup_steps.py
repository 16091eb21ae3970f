"""Lesson 03's view of cgroups: a process's membership, a group's limit files, and counters that
outlive the container. Read-only helpers over /proc and cgroupfs, so a notebook cell stays short
and shows the kernel's files, not the runtime's bookkeeping."""

from __future__ import annotations

import os

from .. import inspect
from ..cgroups import detect
from ..errors import LabError

CONTROLLERS = ("memory", "cpu", "pids")
# The file that holds each controller's ceiling, by cgroup version (v1 splits cpu into quota and period).
LIMIT_FILES = {2: {"memory": "memory.max", "cpu": "cpu.max", "pids": "pids.max"},
               1: {"memory": "memory.limit_in_bytes", "cpu": "cpu.cfs_quota_us", "pids": "pids.max"}}


def limit_file(controller: str) -> str:
    """The name of a controller's limit file on this host (memory.max on v2, memory.limit_in_bytes on v1)."""
    return LIMIT_FILES[detect().version_of(controller) or 2][controller]


def membership(pid: int) -> dict[str, str]:
    """Which group a process is in, per controller the lesson uses, as /proc/PID/cgroup says
    (v2: one line "0::/path" for all; v1: one line per hierarchy)."""
    layout, lines = detect(), inspect.cgroups(pid)
    found = {}
    for controller in CONTROLLERS:
        if layout.version_of(controller) == 2:
            found[controller] = lines.get("", "?")
        else:
            found[controller] = next((path for key, path in lines.items() if controller in key.split(",")), "?")
    return found


def limits(group) -> dict[str, str]:
    """Each limit file of a container's group and what the kernel reads back from it now."""
    shown = {}
    for controller in CONTROLLERS:
        directory = group.dirs.get(controller)
        if directory is None:
            continue
        name = limit_file(controller)
        try:
            with open(os.path.join(directory, name)) as f:
                shown[name] = f.read().strip()
        except FileNotFoundError:
            shown[name] = "(no such file: the group does not exist)"
    return shown


def counters(box) -> dict:
    """A container's cgroup counters: live while it runs, the last ones (read just before the helper
    removed the group) once it has ended."""
    if box.exit_code is None:
        try:
            return box.stats()
        except LabError:
            pass  # it ended between the two looks; its final counters are kept
    return box.final_stats


def no_swap(directory: str) -> None:
    """Keep a checker's container out of swap, so a memory hog meets the OOM killer rather than the
    disk (v2: memory.swap.max 0; v1: swappiness 0), whatever the learner's step wrote."""
    for name, value in (("memory.swap.max", "0"), ("memory.swappiness", "0")):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write(value)


def keep_going_after_oom(directory: str) -> None:
    """v2 only: memory.oom.group 0, so the OOM killer takes one process, not the whole group (v1
    always takes one). A checker uses it to leave a container alive after an OOM kill, to look at."""
    path = os.path.join(directory, "memory.oom.group")
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("0")
