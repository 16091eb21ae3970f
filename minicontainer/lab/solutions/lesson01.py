"""Solutions to the exercises of notebooks/01-namespaces.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

import os

from ... import kernel
from ..exercises.lesson01 import mystery_container


def namespaces_id_maps(ctx):
    pid = ctx.paths["intermediate_pid"]
    if os.geteuid() == 0:                       # root in the parent namespace may map any range
        maps = {"uid_map": "0 100000 65536", "gid_map": "0 100000 65536"}
    else:                                       # unprivileged: our own ids only, setgroups denied first
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        maps = {"uid_map": f"0 {os.geteuid()} 1", "gid_map": f"0 {os.getegid()} 1"}
    for name, line in maps.items():             # gid_map too: setresgid(0) needs gid 0 mapped
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(line + "\n")                 # inside outside count; the kernel takes one write


def namespaces_unshare_uts(ctx):
    kernel.unshare(kernel.CLONE_NEWUTS)  # kernel: the runtime's module, a global where the step runs


def namespaces_which_differ():
    mystery = mystery_container()
    kinds = {kind for kind in os.listdir("/proc/self/ns")
             if not kind.endswith("_for_children")
             and os.readlink(f"/proc/{mystery.pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")}
    return mystery, kinds


# -- as handed out, and wrong ---------------------------------------------------------------------

def my_id_maps(ctx):
    ...


def only_the_uid_map(ctx):
    with open(f"/proc/{ctx.paths['intermediate_pid']}/uid_map", "w") as f:
        f.write("0 100000 65536\n")


def my_unshare_uts(ctx):
    ...


def unshares_ipc(ctx):
    kernel.unshare(kernel.CLONE_NEWIPC)


def the_defaults_kinds():
    from ... import namespaces
    return mystery_container(), set(namespaces.DEFAULT_KINDS)


SOLVERS = {
    "namespaces-id-maps": namespaces_id_maps,
    "namespaces-which-differ": namespaces_which_differ,
    "namespaces-unshare-uts": namespaces_unshare_uts,
}
BLANK = {"namespaces-id-maps": my_id_maps, "namespaces-unshare-uts": my_unshare_uts}
WRONG = {
    "namespaces-id-maps": (lambda: only_the_uid_map, "gid_map is empty"),
    "namespaces-which-differ": (the_defaults_kinds, "which it shares with this kernel"),
    "namespaces-unshare-uts": (lambda: unshares_ipc, "still in this machine's UTS namespace"),
}
