"""Solutions to the exercises of notebooks/03-cgroups.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def cgroups_lab_48m():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], hostname="lab", memory="48M"))


def cgroups_half_cpu_20_pids():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], cpus=0.5, pids=20))


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "cgroups-lab-48m": cgroups_lab_48m,
    "cgroups-half-cpu-20-pids": cgroups_half_cpu_20_pids,
}

WRONG = {
    "cgroups-lab-48m": (lambda: box(hostname="lab", memory="64M"), "64 MiB"),
    "cgroups-half-cpu-20-pids": (lambda: box(cpus=0.5, pids=30), "pids limit is 30"),
}
