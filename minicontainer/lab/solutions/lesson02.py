"""Solutions to the exercises of notebooks/02-rootfs.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def rootfs_motd():
    return Container.start(ContainerSpec(IMAGE, ["sh", "-c", "echo hello > /etc/motd; exec sleep 600"]))


def rootfs_no_escape():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], root_switch="pivot_root"))


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "rootfs-motd": rootfs_motd,
    "rootfs-no-escape": rootfs_no_escape,
}

WRONG = {
    "rootfs-motd": (lambda: box(command=["sh", "-c", "echo bye > /etc/motd; exec sleep 600"]), "says 'bye'"),
    "rootfs-no-escape": (lambda: box(root_switch="chroot"), "still the host's /"),
}
