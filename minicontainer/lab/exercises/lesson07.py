"""Exercises of notebooks/07-claims.ipynb."""

from __future__ import annotations

from ... import namespaces
from .. import Exercise, claims
from . import running

VERDICT_WORDS = ("true", "false", "partly")


def check_predictions(answer) -> list[str]:
    if not isinstance(answer, dict):
        return [f"expected the dict predictions (sentence number -> your verdict), got {type(answer).__name__}"]
    problems = []
    for number in claims.VERDICTS:
        given = answer.get(number)
        if not given:
            problems.append(f"no prediction for sentence {number}: predictions[{number}] is {given!r}")
        elif str(given).strip().lower() not in VERDICT_WORDS:
            problems.append(f"predictions[{number}] is {given!r}: say \"true\", \"false\" or \"partly\"")
    return problems


def _cgroup_of(box) -> str:
    return claims.memory_cgroup(box.pid)


def check_experiment(answer) -> list[str]:
    if not (isinstance(answer, tuple) and answer and answer[0] in (7, 9, 11)):
        return ["expected a tuple that starts with the sentence's number, 7, 9 or 11, e.g. (11, box_a, box_b); "
                f"got {answer!r}"[:300]]
    number, *boxes = answer
    wanted = 1 if number == 9 else 2
    if len(boxes) != wanted:
        return [f"sentence {number} needs {wanted} container(s) after its number, got {len(boxes)}"]
    problems = [problem for box in boxes for problem in running(box)]
    if problems:
        return problems
    if number == 7:
        first, second = map(_cgroup_of, boxes)
        if first != second:
            return [f"each container is in a cgroup of its own ({first} and {second}): the kernel agrees with the "
                    "sentence here"]
        return []
    if number == 11:
        shared = set(namespaces.shared_with(boxes[1].pid, boxes[0].pid)) - set(namespaces.shared_with(boxes[0].pid))
        if not shared:
            return ["the two containers share no namespace that is not also this notebook's: each has its own of "
                    "every kind it was given"]
        return []
    stats = boxes[0].stats()
    if stats["pids_limit"] is None:
        return ["the container's cgroup has no limit on its number of processes (pids.max is max)"]
    if not stats["pids_refused"]:
        return [f"its pids limit ({stats['pids_limit']}) has refused no fork yet: pids.events counts none; its "
                f"command must try to start more processes than that and keep running"]
    return []


EXERCISES = [
    Exercise("claims-predictions", "Write a prediction (\"true\", \"false\" or \"partly\") for every sentence of the "
             "explainer in `predictions`, then read your score against the verdicts.",
             hints=("Each sentence's section has a cell that sets predictions[N]; run it with your guess in place "
                    "of None.",
                    "predictions is a dict from the sentence's number (1 to 20) to one of the words \"true\", "
                    "\"false\" or \"partly\"."),
             checker=check_predictions),
    Exercise("claims-experiment", "Show the kernel's evidence on sentence 7, 11 or 9 with containers you start, "
             "and answer (number, containers...).",
             hints=("For 7: notebook 03 moves a process into a cgroup. For 11: notebook 06 builds a pod. For 9: what "
                    "does a shell loop that starts many background processes meet under a small limit?",
                    "Container.cgroup.add(pid) writes a PID to cgroup.procs; ContainerSpec(join={kind: pid}) enters "
                    "another container's namespace; ContainerSpec(pids=N) writes pids.max, and stats() reports "
                    "pids_refused from pids.events."),
             checker=check_experiment),
]
