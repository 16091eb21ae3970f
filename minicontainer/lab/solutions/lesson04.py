"""Solutions to the exercises of notebooks/04-network.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec


def network_reachable():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], network="bridge"))


def network_publish_8081():
    serve = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"
    return Container.start(ContainerSpec(IMAGE, ["sh", "-c", serve], network="bridge",
                                         publish=[("127.0.0.1", 8081, 80, "tcp")]))


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "network-reachable": network_reachable,
    "network-publish-8081": network_publish_8081,
}

WRONG = {
    "network-reachable": (lambda: box(), "no address on the lab subnet"),
    "network-publish-8081": (lambda: box(network="bridge", publish=[("127.0.0.1", 8082, 80, "tcp")],
                                         command=["sh", "-c", "mkdir /w; echo hi > /w/index.html; "
                                                  "exec httpd -f -p 80 -h /w"]),
                             "no firewall rule forwards 127.0.0.1:8081"),
}
