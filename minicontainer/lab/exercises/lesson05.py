"""Exercises of notebooks/05-security.ipynb: the learner writes a defence's step, which runs in a
fresh staged container instead of the runtime's own; the checker judges the started command from
/proc/PID/status."""

from __future__ import annotations

import os

from ... import inspect
from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...security import Security
from ...spec import ContainerSpec
from .. import Exercise, payloads
from . import Problems, staged_attempt

SETUID_TARGET = "/attacks-setuid"  # where exercise 5.2's container finds its setuid-root program


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


def check_nosuid_bind(step) -> list[str]:
    """As uid 1000, with no_new_privs off, exec a setuid-root program from the bind the learner's step made:
    its effective uid must stay 1000, and the kernel's mount table must show that bind nosuid and read-only."""
    if os.geteuid() != 0:
        return ["this check runs the program as uid 1000 inside the container, and a container of yours, without "
                "root, is rootless: its user namespace maps one id only (root inside, you outside), so there is "
                "no uid 1000 to run it as. Do this exercise in the lab VM, where you are root"]
    problems = []
    spec = ContainerSpec(IMAGE, [SETUID_TARGET, "pause"], user="1000:1000", security=Security(no_new_privs=False),
                         binds=[(payloads.build_setuid("attacks"), SETUID_TARGET, True)])
    with staged_attempt(spec, "binds", step) as box:
        status = inspect.status(box.pid)
        mount = next((m for m in inspect.mounts(box.pid) if m.mount_point == SETUID_TARGET), None)
    real, effective = status["Uid"].split()[:2]
    if mount is None:
        return [f"no mount at {SETUID_TARGET} in the container: the program ran from the image, if at all"]
    options = mount.options.split(",")
    if effective != real:
        problems.append(f"the setuid-root program ran with effective uid {effective} (real uid {real}): the mount it "
                        f"ran from honours setuid bits (its options: {mount.options})")
    if "nosuid" not in options:
        problems.append(f"the bind at {SETUID_TARGET} has options {mount.options}: no nosuid")
    if "ro" not in options:
        problems.append(f"the bind at {SETUID_TARGET} is writable ({mount.options}); it was to be read-only")
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
    Exercise("security-nosuid-bind", "Write my_binds(ctx), run instead of the 'binds' step, so that the setuid-root "
             "program bound into the container read-only does not run as root for its uid 1000, with no_new_privs "
             "switched off.",
             hints=("Whether a setuid bit counts is also the mount's decision, not only the file's: which mount "
                    "option ignores it? And a bind mount is picky about when it takes options.",
                    "kernel.mount(source, target, None, kernel.MS_BIND) makes the bind; its options (kernel.MS_NOSUID, "
                    "kernel.MS_RDONLY) take a second call with kernel.MS_REMOUNT | kernel.MS_BIND: `man 8 mount`, "
                    "'Bind mount operation', says why."),
             checker=lambda answer: check_nosuid_bind(_a_step(answer))),
]
