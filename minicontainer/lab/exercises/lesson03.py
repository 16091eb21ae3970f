"""Exercises of notebooks/03-cgroups.ipynb: join a cgroup, set a memory limit, read an OOM kill.

The two steps the learner writes run in a fresh staged container in place of the runtime's own
("join cgroup" in PID 1, "limits" in the helper); the checkers judge what the kernel then shows:
/proc/PID/cgroup, cgroup.procs, and what a memory hog meets."""

from __future__ import annotations

from ... import inspect
from ...errors import LabError
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec
from .. import Exercise, cgroup_steps
from . import Problems, running, staged_attempt


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


def check_join(answer) -> list[str]:
    """PID 1, after the learner's "join cgroup", must be in the container's group in every hierarchy."""
    spec = ContainerSpec(IMAGE, ["sleep", "600"], memory="32M", pids=16)
    try:
        with staged_attempt(spec, "join cgroup", answer, start=False) as stage:
            where = cgroup_steps.membership(stage.pid)
            problems = []
            for controller in sorted(stage.cgroup.dirs):
                if controller not in where:
                    continue
                wanted = _relative(stage.cgroup, controller)
                if where[controller] != wanted:
                    problems.append(f"PID 1 is in {where[controller]} for {controller}, not in the container's "
                                    f"cgroup {wanted} (/proc/{stage.pid}/cgroup)")
            if stage.pid not in stage.cgroup.procs():
                problems.append(f"the container's cgroup.procs does not list PID 1 ({stage.pid})")
            return problems
    except Problems as e:  # the kernel refused a write: PID 1 stayed where it was, at least in one tree
        return e.problems + ["so PID 1 is not in the container's cgroup (in every tree)"]


def _relative(group, controller: str) -> str:
    """A group's directory as /proc/PID/cgroup names it: relative to its hierarchy's mount."""
    mount = group.layout.controllers[controller].mount
    return "/" + group.dirs[controller][len(mount):].lstrip("/")


# 8 MiB fits under 32 MiB (exit 3 if it did not); 64 MiB must meet the OOM killer.
HOG = "head -c 8m /dev/zero | tail > /dev/null || exit 3; head -c 64m /dev/zero | tail > /dev/null; exit 0"


def check_memory_limit(answer) -> list[str]:
    """The learner's "limits" must hold the container to 32 MiB: 8 MiB fits, 64 MiB meets the OOM killer."""
    spec = ContainerSpec(IMAGE, ["sh", "-c", HOG], memory="32M")
    with staged_attempt(spec, "limits", answer, start=False) as stage:
        cgroup_steps.no_swap(stage.cgroup.dirs["memory"])  # swap would let the hog page out instead
        try:
            box = stage.start()
        except LabError as e:
            raise Problems(f"after your limits step, the container could not start: {e.what}") from None
        try:
            code = box.wait(timeout=30)
        except TimeoutError:
            return ["the 64 MiB process was not OOM-killed: it was still running after 30 s (held back, not "
                    "stopped: a throttle such as memory.high?)"]
        finally:
            box.stop(grace=0)
    problems = []
    if code == 3:
        problems.append("a process using only 8 MiB did not finish: the limit is far below 32 MiB (in bytes?)")
    if not box.final_stats.get("oom_kills"):
        problems.append("the 64 MiB process was not OOM-killed (the group's oom_kill counter stayed 0): no "
                        "32 MiB ceiling on the container's memory cgroup")
    return problems


def _killed_inside(command: str):
    """A running container in which `command` (run with exec) has had a process SIGKILLed: by the OOM
    killer or by kill -9. The command's processes are the OOM killer's first choice (oom_score_adj
    1000, inherited; raising it needs no privilege), so a second kill that may follow the first,
    before the first victim's memory is freed, still spares PID 1 and the group lives on to be read."""
    from ...stage import Stage
    stage = Stage(ContainerSpec(IMAGE, ["sleep", "600"], memory="16M"))
    try:
        stage.run_until("limits")
        cgroup_steps.keep_going_after_oom(stage.cgroup.dirs["memory"])
        cgroup_steps.no_swap(stage.cgroup.dirs["memory"])
        box = stage.start()
    except BaseException:
        stage.teardown()
        raise
    try:
        box.exec(["sh", "-c", "echo 1000 > /proc/self/oom_score_adj; " + command], timeout=30)
    except BaseException:
        box.stop(grace=0)
        raise
    return box


def check_oom_kills(answer) -> list[str]:
    """oom_kills(memory_dir) must give the kernel's own count: at least 1 where the OOM killer acted, 0
    where a process met a plain SIGKILL (both exit 137)."""
    if not callable(answer):
        return [f"expected a function oom_kills(memory_dir), got {type(answer).__name__}"]
    cases = (("head -c 64m /dev/zero | tail > /dev/null", "the OOM killer killed {kernel}"),
             ("sleep 600 & kill -9 $!; wait", "a process was killed by a plain SIGKILL, no OOM kill (the kernel "
              "counts {kernel})"))
    problems = []
    for command, story in cases:
        box = _killed_inside(command)
        try:
            kernel_count = box.stats()["oom_kills"]
            try:
                given = answer(box.cgroup.dirs["memory"])
            except Exception as e:  # the learner's bug gets named, not a traceback
                problems.append(f"your function raised {type(e).__name__}: {e}")
                continue
            if given != kernel_count:
                problems.append(f"in a group where {story.format(kernel=kernel_count)}, it returned {given!r}")
        finally:
            box.stop(grace=0)
    return problems


EXERCISES = [
    Exercise("cgroups-lab-48m", "Start a container `box` whose hostname is `lab` and whose memory limit is 48M.",
             hints=("Both are things a container is given when it starts, and the cells above started containers "
                    "with each.",
                    "ContainerSpec has a field for each (help(ContainerSpec) lists them); Container.start starts "
                    "it, with a command that keeps running."),
             checker=check_memory_48m_lab),
    Exercise("cgroups-join", "Write `my_join(ctx)`, the \"join cgroup\" step: PID 1 puts itself into the "
             "container's cgroup (in every hierarchy).",
             hints=("Which file of a cgroup did the kernel change when the runtime's step moved PID 1? Each tree "
                    "has its own directory for the group.",
                    "cgroup.procs, in each directory of ctx.paths['cgroup_dirs']; `man 7 cgroups`, 'Creating "
                    "cgroups and moving processes', says what to write there."),
             checker=check_join),
    Exercise("cgroups-memory-limit", "Write `my_limits(ctx)`, the \"limits\" step for memory: hold the container "
             "to ctx.spec.memory bytes, on cgroup v1 and v2.",
             hints=("A limit is a number written into a file of the group's memory directory. Some of those files "
                    "only make the kernel reclaim, or slow the group down, and never OOM-kill; you need the "
                    "ceiling. Its name differs between v1 and v2.",
                    "memory.max (v2) or memory.limit_in_bytes (v1), in ctx.cgroup.dirs['memory']: only one of "
                    "them exists there. It takes a number of bytes."),
             checker=check_memory_limit),
    Exercise("cgroups-oom-kills", "Write `oom_kills(memory_dir)`: how many processes the OOM killer killed in "
             "that memory cgroup, from the kernel's counters (v1 and v2).",
             hints=("An exit status of 137 only says SIGKILL. The group itself counts what happened to it: which "
                    "of its files counts the kills the OOM killer made?",
                    "memory.events (v2) or memory.oom_control (v1), in memory_dir: lines of a name and a number, "
                    "among them oom_kill."),
             checker=check_oom_kills),
]
