"""Solutions to the exercises of notebooks/02-rootfs.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

import os

from ... import kernel
from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def rootfs_motd():
    return Container.start(ContainerSpec(IMAGE, ["sh", "-c", "echo hello > /etc/motd; exec sleep 600"]))


def my_pivot_root(ctx):
    """The overlay becomes the root mount of the namespace; the old root is detached from it."""
    os.makedirs(ctx.root + "/old-root", exist_ok=True)   # put_old: a directory under new_root
    kernel.pivot_root(ctx.root, ctx.root + "/old-root")  # ctx.root is a mount point: the overlay
    os.chdir("/")                                        # the working directory was in the old tree
    kernel.umount2("/old-root", kernel.MNT_DETACH)       # the old root, now at /old-root, goes
    os.rmdir("/old-root")


def pivot_root_keeping_the_old_root(ctx):
    os.makedirs(ctx.root + "/old-root", exist_ok=True)
    kernel.pivot_root(ctx.root, ctx.root + "/old-root")
    os.chdir("/")


def blank_pivot_root(ctx):
    ...


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "rootfs-motd": rootfs_motd,
    "rootfs-pivot-root": my_pivot_root,
}

WRONG = {
    "rootfs-motd": (lambda: box(command=["sh", "-c", "echo bye > /etc/motd; exec sleep 600"]), "says 'bye'"),
    "rootfs-pivot-root": (lambda: pivot_root_keeping_the_old_root, "the old root is still mounted at /old-root"),
}

# The notebook's template for the function the learner writes, as handed out.
BLANK = {"rootfs-pivot-root": blank_pivot_root}
