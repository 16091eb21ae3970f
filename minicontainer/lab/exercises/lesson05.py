"""Exercises of notebooks/05-security.ipynb: the learner writes a defence's step, which runs in a
fresh staged container instead of the runtime's own; the checker judges the started command from
/proc/PID/status."""

from __future__ import annotations

from ... import inspect
from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...security import Security
from ...spec import ContainerSpec
from .. import Exercise, payloads
from . import Problems, staged_attempt


def _capabilities(pid: int) -> dict[str, set[str]]:
    return {kind: set(caps) for kind, caps in inspect.process(pid).capabilities.items()}


def check_bounding_set(step) -> list[str]:
    """Keep only CAP_NET_RAW, with no_new_privs off, so that only the bounding set stops root's execve
    from taking every capability back (and seccomp off: without no_new_privs, loading a filter needs
    CAP_SYS_ADMIN, which an attempt that cuts the effective set early has dropped)."""
    problems = []
    spec = ContainerSpec(IMAGE, ["sleep", "600"], security=Security(capabilities=["net_raw"], no_new_privs=False,
                                                                      seccomp=None))
    with staged_attempt(spec, "bounding set", step) as box:
        caps = _capabilities(box.pid)
    extra = sorted(caps["bounding"] - {"CAP_NET_RAW"})
    if extra:
        problems.append(f"its bounding set (CapBnd) still holds {len(extra)} capabilities besides CAP_NET_RAW, "
                        f"e.g. {', '.join(extra[:3])}")
    regained = sorted((caps["effective"] | caps["permitted"]) - {"CAP_NET_RAW"})
    if regained:
        problems.append(f"the command holds {', '.join(regained[:3])}... in CapEff/CapPrm, though those sets "
                        "were cut before exec: root's execve of the command gave them back from the bounding set")
    if "CAP_NET_RAW" not in caps["bounding"] or "CAP_NET_RAW" not in caps["effective"]:
        problems.append("CAP_NET_RAW is gone too: the container was to keep it (ctx.spec.security.kept)")
    if caps["inheritable"] or caps["ambient"]:
        problems.append("its inheritable or ambient set is not empty")
    return problems


def check_no_new_privs(step) -> list[str]:
    """As uid 1000, exec a setuid-root program (the container's command): its effective uid must stay 1000."""
    problems = []
    spec = ContainerSpec(IMAGE, ["/attacks-setuid", "pause"], user="1000:1000",
                         binds=[(payloads.build_setuid("attacks"), "/attacks-setuid", True)])
    with staged_attempt(spec, "no_new_privs", step) as box:
        status = inspect.status(box.pid)
    real, effective = status["Uid"].split()[:2]
    if effective != real:
        problems.append(f"the setuid-root program ran with effective uid {effective} (real uid {real}): its "
                        "execve still honoured the setuid bit")
    if status.get("NoNewPrivs") != "1":
        problems.append("NoNewPrivs is 0 in /proc/PID/status: nothing the command starts is held back either")
    return problems


def _a_step(answer):
    if isinstance(answer, Container):
        raise Problems("this exercise wants the step function itself (def my_...(ctx)), not a container")
    return answer


EXERCISES = [
    Exercise("security-bounding-set", "Write my_bounding_set(ctx), run instead of the 'bounding set' step, so that "
             "the container's root keeps only the capabilities ctx.spec.security.kept names, even across execve.",
             hints=("Which of the five sets does root's execve fill the others from? That one must lose every "
                    "capability the container does not keep, before the command runs.",
                    "prctl(2) (kernel.prctl) has an option that drops one capability from that set per call; "
                    "kernel.CAPABILITIES gives the capabilities' names by number, and "
                    "/proc/sys/kernel/cap_last_cap the highest number this kernel has."),
             checker=lambda answer: check_bounding_set(_a_step(answer))),
    Exercise("security-no-new-privs", "Write my_no_new_privs(ctx), run instead of the 'no_new_privs' step, so that a "
             "setuid-root program the container's uid 1000 starts does not run as root.",
             hints=("Nothing can strip the setuid bit from every file; but a process can promise the kernel that no "
                    "execve, by it or by its children, will ever grant privileges again.",
                    "prctl(2) has an option for that promise (`man 2 prctl` lists them): call kernel.prctl with "
                    "the option's constant, which kernel names PR_ as the man page does."),
             checker=lambda answer: check_no_new_privs(_a_step(answer))),
]
