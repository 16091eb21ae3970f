"""Exercises of notebooks/00-welcome.ipynb."""

from __future__ import annotations

from ... import inspect, namespaces
from .. import Exercise


def check_pid_namespace(answer) -> list[str]:
    truth = namespaces.ns_inode("self", "pid")
    if not isinstance(answer, int):
        return [f"expected a number (the inode in 'pid:[NUMBER]'), got {answer!r}"]
    if answer == truth:
        return []
    for kind, inode in namespaces.identities("self").items():
        if inode == answer:
            return [f"{answer} is this kernel's {kind} namespace, not its pid namespace"]
    return [f"{answer} is not one of this kernel's namespaces"]


def check_memory_cgroup(answer) -> list[str]:
    membership = inspect.cgroups("self")
    key = next((k for k in membership if "memory" in k.split(",")), "")  # v2: the one "" tree
    truth = membership[key]
    if not isinstance(answer, str):
        return [f"expected a path such as '/a/b', got {answer!r}"]
    if answer == truth:
        return []
    if answer in membership.values():
        return [f"{answer!r} is this kernel's cgroup in another hierarchy, not the memory one"]
    return [f"{answer!r} is not the path of a cgroup this kernel is in"]


EXERCISES = [
    Exercise("welcome-pid-namespace", "Set `my_pid_ns` to the inode number of this kernel's PID namespace.",
             hints=("The kernel names each namespace a process is in by a number, one entry per kind. Which part "
                    "of /proc/self did this lesson read for namespaces?",
                    "/proc/self/ns/pid is a symbolic link: os.readlink gives the text it points to. The answer "
                    "is a number (an int), not that text."),
             checker=check_pid_namespace),
    Exercise("welcome-memory-cgroup", "Set `my_memory_cgroup` to this kernel's cgroup path for the memory "
             "controller.",
             hints=("The kernel records which control group a process is in, per hierarchy. Which file of "
                    "/proc/self did this lesson read for that, and which of its lines covers memory here?",
                    "/proc/self/cgroup, read with open(). `man 7 cgroups` (the part on /proc/[pid]/cgroup) "
                    "says what the fields of a line mean, on cgroup v1 and on v2."),
             checker=check_memory_cgroup),
]
