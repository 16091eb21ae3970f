"""Solutions to the exercises of notebooks/01-namespaces.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ... import namespaces
from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def namespaces_lab_hostname():
    kinds = tuple(k for k in namespaces.DEFAULT_KINDS if k != "net")
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], hostname="lab", namespaces=kinds))


def namespaces_pid_mnt_only():
    return Container.start(ContainerSpec(None, ["sleep", "600"], namespaces=("pid", "mnt")))


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "namespaces-lab-hostname": namespaces_lab_hostname,
    "namespaces-pid-mnt-only": namespaces_pid_mnt_only,
}

WRONG = {
    "namespaces-lab-hostname": (lambda: box(hostname="box"), "not 'lab'"),
    "namespaces-pid-mnt-only": (lambda: box(rootfs=None, namespaces=("pid", "mnt", "uts")), "own uts namespace"),
}
