"""Exercises of notebooks/05-security.ipynb."""

from __future__ import annotations

from ... import inspect
from .. import Exercise
from . import running


def check_only_net_raw(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    bounding = set(inspect.process(answer.pid).capabilities["bounding"])
    if "CAP_NET_RAW" not in bounding:
        problems.append("CAP_NET_RAW is missing from its bounding set: ping would fail")
    extra = sorted(bounding - {"CAP_NET_RAW"})
    if extra:
        problems.append(f"its bounding set also holds {', '.join(extra)}")
    return problems


def check_guarded_user(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    status = inspect.status(answer.pid)
    if status.get("NoNewPrivs") != "1":
        problems.append("no_new_privs is off (NoNewPrivs: 0 in /proc/PID/status)")
    if status.get("Seccomp") != "2":
        problems.append("it has no seccomp filter (Seccomp: 0)")
    uid = status["Uid"].split()[0]
    if uid != "1000":
        problems.append(f"it runs as uid {uid}, not 1000")
    return problems


EXERCISES = [
    Exercise("security-only-net-raw", "Start a container `pinger` whose only capability is CAP_NET_RAW.",
             "Security(capabilities=[...]) in the spec", check_only_net_raw),
    Exercise("security-guarded-user", "Start a container `guarded` running as uid 1000 with no_new_privs and "
             "seccomp on.", "user='1000' with the default Security", check_guarded_user),
]
