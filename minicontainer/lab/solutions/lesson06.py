"""Solutions to the exercises of notebooks/06-putting-it-together.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def pod_shared_network():
    pod_a = Container.start(ContainerSpec(IMAGE, ["sleep", "600"]))
    pod_b = Container.start(ContainerSpec(IMAGE, ["sleep", "600"], join={"net": pod_a.pid}))
    return pod_a, pod_b, f"/proc/{pod_a.pid}/ns/net"


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


def two_apart():
    """Two containers each in a network namespace of its own, and the first one's file named."""
    a, b = box(), box()
    return a, b, f"/proc/{a.pid}/ns/net"


SOLVERS = {
    "pod-shared-network": pod_shared_network,
}

WRONG = {
    "pod-shared-network": (two_apart, "network namespace of its own"),
}
