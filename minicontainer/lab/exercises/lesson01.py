"""Exercises of notebooks/01-namespaces.ipynb: write the id maps of a user namespace; say, from
/proc alone, which namespaces a process does not share with you; write the unshare of the UTS step."""

from __future__ import annotations

import os
import random
import socket

from ... import inspect, namespaces
from ...container import Container
from ...errors import LabError
from ...spec import ContainerSpec
from .. import Exercise
from . import Problems, running, staged_attempt

# The container the id-maps exercise builds: its own user namespace, uid 0 inside = 100000 outside.
ID_MAP_SPEC = dict(namespaces=("user", "mnt", "pid", "uts", "ipc"), uid_map="0 100000 65536")


def _intermediate_of(stage) -> int:
    """The process that unshared the user namespace (the maps are its)."""
    if not stage.intermediate_pid or not os.path.exists(f"/proc/{stage.intermediate_pid}"):
        raise Problems("the stage's user-namespace process is gone")
    return stage.intermediate_pid


def expected_id_maps() -> dict[str, list[str]]:
    """Root maps 65536 ids from 100000; an unprivileged user may map only its own uid and gid, one each."""
    if os.geteuid() == 0:
        return {"uid_map": ["0", "100000", "65536"], "gid_map": ["0", "100000", "65536"]}
    return {"uid_map": ["0", str(os.geteuid()), "1"], "gid_map": ["0", str(os.getegid()), "1"]}


def check_id_maps(answer) -> list[str]:
    from ...rootfs import DEFAULT_ROOTFS
    spec = ContainerSpec(DEFAULT_ROOTFS, ["sleep", "600"], **ID_MAP_SPEC)
    expected = expected_id_maps()
    problems = []
    with staged_attempt(spec, "id maps", answer, start=False) as stage:
        pid = _intermediate_of(stage)
        maps = {}
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}") as f:
                maps[name] = f.read().split()
        for name, fields in maps.items():
            if not fields:
                problems.append(f"its {name} is empty: nothing is mapped, so inside every id shows as the "
                                "overflow id 65534 and setresuid/setresgid(0) would fail")
            elif fields != expected[name]:
                problems.append(f"its {name} maps {' '.join(fields[:3])} (inside outside count), not "
                                f"{' '.join(expected[name])}")
        if problems:
            return problems
        try:
            box = stage.start()
        except Exception as e:  # noqa: BLE001  the stage says what failed
            return [f"the container could not start after your maps: {e}"]
        try:
            outside = inspect.status(box.pid)
            inside = box.exec(["id"]).stdout.strip()
            uid, gid = expected["uid_map"][1], expected["gid_map"][1]
            if outside["Uid"].split()[0] != uid or outside["Gid"].split()[0] != gid:
                problems.append(f"from the host its PID 1 is uid {outside['Uid'].split()[0]} and gid "
                                f"{outside['Gid'].split()[0]}, not {uid} and {gid}")
            if not inside.startswith("uid=0(root) gid=0(root)"):
                problems.append(f"inside, `id` says {inside!r}, not root")
        finally:
            box.stop(grace=0)
    return problems


def mystery_container() -> Container:
    """A process in new namespaces of three kinds picked at random: which ones? Read /proc to say."""
    kinds = tuple(random.sample(sorted(namespaces.KINDS), 3))
    return Container.start(ContainerSpec(None, ["sleep", "600"], namespaces=kinds, hostname=None))


def check_which_differ(answer) -> list[str]:
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return ["expected the pair (mystery, my_kinds)"]
    box, kinds = answer
    problems = running(box)
    if problems:
        return problems
    if not isinstance(kinds, (set, frozenset, list, tuple)) or not all(isinstance(k, str) for k in kinds):
        return [f"my_kinds should be a set of kind names such as {{'uts'}}, got {kinds!r}"]
    shared = set(namespaces.shared_with(box.pid))
    own = set(namespaces.identities(box.pid)) - shared
    for kind in sorted(set(kinds) - set(namespaces.KINDS)):
        problems.append(f"{kind!r} is not a namespace kind (they are the names in /proc/PID/ns)")
    for kind in sorted(set(kinds) & shared):
        problems.append(f"you named {kind}, which it shares with this kernel")
    missing = own - set(kinds)
    if missing:
        problems.append(f"it has {len(missing)} more namespace(s) of its own that you did not name")
    return problems


# The container the UTS exercise builds. With a user namespace: a step that forgot to unshare cannot
# rename this machine, since PID 1 then holds no CAP_SYS_ADMIN over the host's UTS namespace.
UTS_SPEC = dict(namespaces=("user", "mnt", "pid", "uts", "ipc"), hostname="named-inside")


def check_unshare_uts(answer) -> list[str]:
    from ...rootfs import DEFAULT_ROOTFS
    spec = ContainerSpec(DEFAULT_ROOTFS, ["sleep", "600"], **UTS_SPEC)
    ours = socket.gethostname()
    with staged_attempt(spec, "unshare uts", answer, start=False) as stage:
        mine, theirs = namespaces.identities("self"), namespaces.identities(stage.pid)
        if theirs["uts"] == mine["uts"]:
            return ["PID 1 is still in this machine's UTS namespace: the hostname step would rename the host "
                    "(here the user namespace stops it)"]
        extra = [kind for kind in ("ipc", "net", "cgroup") if kind in theirs and theirs[kind] != mine[kind]]
        if extra:
            return [f"your step also gave PID 1 a new {', '.join(extra)} namespace: this step is the UTS one's only"]
        try:
            box = stage.start()
        except LabError as e:
            return [f"after your step, the container could not start: {e.what}"]
        try:
            inside = inspect.hostname(box.pid)
        finally:
            box.stop(grace=0)
    problems = []
    if inside != UTS_SPEC["hostname"]:
        problems.append(f"inside, the kernel says the hostname is {inside!r}, not {UTS_SPEC['hostname']!r}")
    if socket.gethostname() != ours:
        problems.append(f"this machine's hostname changed from {ours!r} to {socket.gethostname()!r}")
    return problems


EXERCISES = [
    Exercise("namespaces-id-maps", "Write `my_id_maps(ctx)`: the step that maps root inside the container's user "
             "namespace to uid and gid 100000 outside, 65536 ids of each (without root on this machine: to your own "
             "uid and gid, one id each, all an unprivileged user may map).",
             hints=("Root inside is a real user outside only once the kernel has a map for the user namespace. "
                    "The section on user namespaces above named the files that hold the maps, and what a "
                    "line of them says.",
                    "/proc/PID/uid_map, with the PID the template reads from ctx.paths; `man 7 user_namespaces` "
                    "('User and group ID mappings') gives the rules for writing it: from outside, in one write; and, "
                    "without root, what to write to /proc/PID/setgroups first."),
             checker=check_id_maps),
    Exercise("namespaces-which-differ", "`mystery` is a process in new namespaces of three kinds. Set `my_kinds` "
             "to the set of kinds it does not share with this kernel, found from /proc.",
             hints=("Two processes are in the same namespace when the kernel names it the same for both. "
                    "Notebook 00 showed where /proc lists the namespaces of a process, one entry per kind.",
                    "/proc/PID/ns holds one symbolic link per kind; os.readlink reads one. mystery.pid is its "
                    "PID, and `man 7 namespaces` describes the directory."),
             checker=check_which_differ),
    Exercise("namespaces-unshare-uts", "Write `my_unshare_uts(ctx)`, the step \"unshare uts\": afterwards PID 1 is in "
             "a UTS namespace of its own, which the runtime's next step names.",
             hints=("A process leaves its namespace of a kind for a new one with one system call, the one this "
                    "notebook's stage has been calling step by step. Which kind holds the hostname?",
                    "kernel.unshare(flags) is unshare(2); the flags are kernel.CLONE_NEW* constants, one per kind: "
                    "`man 2 unshare` says which one is the UTS namespace's. Unshare that kind only."),
             checker=check_unshare_uts),
]
