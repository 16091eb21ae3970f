"""Exercises of notebooks/06-putting-it-together.ipynb."""

from __future__ import annotations

from ... import namespaces
from .. import Exercise
from . import running


def check_pod(answer) -> list[str]:
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return [f"expected a pair (pod_a, pod_b), got {type(answer).__name__}"]
    problems = running(answer[0]) + running(answer[1])
    if problems:
        return problems
    a, b = answer
    shared = set(namespaces.shared_with(b.pid, a.pid))
    if "net" not in shared:
        problems.append("pod_b has a network namespace of its own, not pod_a's")
    for kind in ("pid", "mnt", "uts", "ipc"):
        if kind in shared:
            problems.append(f"pod_b also shares pod_a's {kind} namespace; only net was asked for")
    return problems


EXERCISES = [
    Exercise("pod-shared-network", "Start `pod_a`, then `pod_b` sharing only pod_a's network namespace.",
             "ContainerSpec(..., join={'net': pod_a.pid})", check_pod),
]
