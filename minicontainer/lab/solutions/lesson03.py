"""Solutions to the exercises of notebooks/03-cgroups.ipynb, a named wrong attempt for each, and the
blank templates the notebook hands out."""

from __future__ import annotations

import os  # the stage gives the functions below os as a global, too

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def cgroups_lab_48m():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], hostname="lab", memory="48M"))


def my_join(ctx):
    # "0" is the writing process itself; its children are then born in the group.
    for directory in ctx.paths["cgroup_dirs"]:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write("0")


def my_limits(ctx):
    directory = ctx.cgroup.dirs["memory"]
    name = "memory.max" if os.path.exists(os.path.join(directory, "memory.max")) else "memory.limit_in_bytes"
    with open(os.path.join(directory, name), "w") as f:
        f.write(str(ctx.spec.memory))


def oom_kills(memory_dir):
    for name in ("memory.events", "memory.oom_control"):  # v2, v1: both have a line "oom_kill N"
        path = os.path.join(memory_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                counters = dict(line.split() for line in f.read().splitlines())
            return int(counters.get("oom_kill", 0))
    return 0


# -- wrong attempts -----------------------------------------------------------------------------

def join_the_parent(ctx):
    # The directory above the container's: the group of every container, not this one's.
    for directory in ctx.paths["cgroup_dirs"]:
        with open(os.path.join(os.path.dirname(directory), "cgroup.procs"), "w") as f:
            f.write("0")


def soft_limit(ctx):
    # Not the ceiling. memory.high (v2) throttles: above it the kernel reclaims hard and slows the group.
    # memory.soft_limit_in_bytes (v1) is a reclaim target when the host runs short. Neither OOM-kills.
    directory = ctx.cgroup.dirs["memory"]
    name = "memory.high" if os.path.exists(os.path.join(directory, "memory.high")) else "memory.soft_limit_in_bytes"
    with open(os.path.join(directory, name), "w") as f:
        f.write(str(ctx.spec.memory))


def times_at_the_limit(memory_dir):
    # memory.events "max" (v2) / memory.failcnt (v1): how often a charge hit the limit, not how many were
    # killed (v1 with swap accounting counts the hits of its memsw limit in memory.memsw.failcnt instead).
    events = os.path.join(memory_dir, "memory.events")
    if os.path.exists(events):
        with open(events) as f:
            return int(dict(line.split() for line in f.read().splitlines())["max"])
    with open(os.path.join(memory_dir, "memory.failcnt")) as f:
        return int(f.read())


# -- the notebook's templates, as handed out ----------------------------------------------------

def blank_join(ctx):
    ...


def blank_limits(ctx):
    ...


def blank_oom_kills(memory_dir):
    ...


SOLVERS = {
    "cgroups-lab-48m": cgroups_lab_48m,
    "cgroups-join": my_join,
    "cgroups-memory-limit": my_limits,
    "cgroups-oom-kills": oom_kills,
}

WRONG = {
    "cgroups-lab-48m": (lambda: Container.start(ContainerSpec(IMAGE, ["sleep", "600"], hostname="lab",
                                                              memory="64M")), "64 MiB"),
    "cgroups-join": (lambda: join_the_parent, "not in the container's cgroup"),
    "cgroups-memory-limit": (lambda: soft_limit, "not OOM-killed"),
    "cgroups-oom-kills": (lambda: times_at_the_limit, "the OOM killer killed"),
}

BLANK = {
    "cgroups-join": blank_join,
    "cgroups-memory-limit": blank_limits,
    "cgroups-oom-kills": blank_oom_kills,
}
