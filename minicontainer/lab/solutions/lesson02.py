"""Solutions to the exercises of notebooks/02-rootfs.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

import os
import stat

from ... import kernel
from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec
from .. import layers


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


def my_convert_whiteouts(directory):
    """Each OCI mark of an untarred layer becomes overlayfs's own, at any depth; the marks go."""
    for top, _dirs, files in os.walk(directory):
        for name in files:
            mark = os.path.join(top, name)
            if name == ".wh..wh..opq":                        # this directory hides the layers below
                os.setxattr(top, layers.OPAQUE_XATTR, b"y")  # trusted.*, or user.* without root
                os.remove(mark)
            elif name.startswith(".wh."):                     # NAME of the layers below is deleted
                os.remove(mark)
                os.mknod(os.path.join(top, name[len(".wh."):]), stat.S_IFCHR, os.makedev(0, 0))


def whiteouts_removed_only(directory):
    """Takes the marks away as if they were leftovers of the tar, and makes nothing in their place."""
    for top, _dirs, files in os.walk(directory):
        for name in files:
            if name.startswith(".wh."):
                os.remove(os.path.join(top, name))


def blank_convert_whiteouts(directory):
    """Under directory (an untarred layer), turn each .wh.NAME into overlayfs's whiteout for NAME and each
    .wh..wh..opq into the opaque mark on its directory; the marks themselves go."""
    pass


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "rootfs-motd": rootfs_motd,
    "rootfs-pivot-root": my_pivot_root,
    "rootfs-whiteouts": my_convert_whiteouts,
}

WRONG = {
    "rootfs-motd": (lambda: box(command=["sh", "-c", "echo bye > /etc/motd; exec sleep 600"]), "says 'bye'"),
    "rootfs-pivot-root": (lambda: pivot_root_keeping_the_old_root, "the old root is still mounted at /old-root"),
    "rootfs-whiteouts": (lambda: whiteouts_removed_only, "which the top layer deletes, shows through the overlay"),
}

# The notebook's template for the function the learner writes, as handed out.
BLANK = {"rootfs-pivot-root": blank_pivot_root, "rootfs-whiteouts": blank_convert_whiteouts}
