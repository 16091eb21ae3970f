"""Exercises of notebooks/06-putting-it-together.ipynb."""

from __future__ import annotations

import os
import re

from ... import namespaces
from .. import Exercise
from . import running

NS_LINK = re.compile(r"^/proc/(\d+)/ns/([a-z_]+)$")


def check_pod(answer) -> list[str]:
    if not (isinstance(answer, tuple) and len(answer) == 3):
        return [f"expected a triple (pod_a, pod_b, link), got {type(answer).__name__}"
                + (f" of {len(answer)}" if isinstance(answer, tuple) else "")]
    a, b, link = answer
    problems = running(a) + running(b)
    if problems:
        return problems
    shared = set(namespaces.shared_with(b.pid, a.pid))
    if "net" not in shared:
        problems.append("pod_b has a network namespace of its own, not pod_a's")
    for kind in ("pid", "mnt", "uts", "ipc"):
        if kind in shared:
            problems.append(f"pod_b also shares pod_a's {kind} namespace; only the network one was asked for")
    match = NS_LINK.match(link) if isinstance(link, str) else None
    if not match:
        problems.append(f"link should be the path of a namespace file under /proc, got {link!r}")
    elif not os.path.exists(link):
        problems.append(f"{link} does not exist: no process {match.group(1)} is running, or no kind "
                        f"{match.group(2)!r}")
    elif os.stat(link).st_ino != namespaces.identities(b.pid).get("net"):
        problems.append(f"{link} is not the network namespace pod_b is in: it names another namespace, "
                        "or another kind")
    return problems


EXERCISES = [
    Exercise("pod-shared-network", "Start `pod_a`, then `pod_b` sharing only pod_a's network namespace, and "
             "name the file under /proc through which pod_b entered it.",
             hints=("A process enters a namespace that already exists through a file that names it (notebook 01, "
                    "'Entering a namespace: setns'). Which of pod_a's files names its network namespace?",
                    "ContainerSpec's join field, {kind: PID}: the runtime enters that process's namespace of that "
                    "kind with setns(2), through its link in /proc/PID/ns."),
             checker=check_pod),
]
