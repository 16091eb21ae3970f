"""Exercises of notebooks/01-namespaces.ipynb."""

from __future__ import annotations

from ... import inspect, namespaces
from .. import Exercise
from . import running


def check_lab_hostname_host_network(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    ours, theirs = namespaces.identities("self"), namespaces.identities(answer.pid)
    if ours["uts"] == theirs["uts"]:
        problems.append("it shares this kernel's UTS namespace: its hostname would be the host's")
    elif inspect.hostname(answer.pid) != "lab":
        problems.append(f"its hostname is {inspect.hostname(answer.pid)!r}, not 'lab'")
    if ours["net"] != theirs["net"]:
        problems.append("it has its own network namespace; the task wants the host's")
    return problems


def check_pid_and_mount_only(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    ours, theirs = namespaces.identities("self"), namespaces.identities(answer.pid)
    for kind in ("pid", "mnt"):
        if ours[kind] == theirs[kind]:
            problems.append(f"it shares this kernel's {kind} namespace; it needs its own")
    for kind in ("uts", "ipc", "net", "cgroup", "user"):
        if ours[kind] != theirs[kind]:
            problems.append(f"it has its own {kind} namespace; the task wants only pid and mnt")
    return problems


EXERCISES = [
    Exercise("namespaces-lab-hostname", "Start a container `box` whose hostname is `lab` but which shares the "
             "host's network namespace.", "ContainerSpec(..., hostname=..., namespaces=...) without 'net'",
             check_lab_hostname_host_network),
    Exercise("namespaces-pid-mnt-only", "Start a namespace-only process `proc` (no rootfs) with its own PID "
             "and mount namespaces and every other namespace shared.",
             "ContainerSpec(None, [...], namespaces=('pid', 'mnt'))", check_pid_and_mount_only),
]
