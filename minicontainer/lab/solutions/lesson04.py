"""Solutions to the exercises of notebooks/04-network.ipynb, and a named wrong attempt for each.

plug_in and its relatives run in a fresh process (lab/network_steps.run_learner), where IPRoute and
enter_net are given, as in the notebook."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec

IPRoute = enter_net = None  # given to the function where it runs; named here for the linter


def plug_in(pid, lease):
    with IPRoute() as host:  # a netlink socket in the host's namespace, where the peer is now
        host.link("set", index=host.link_lookup(ifname=lease.peer_if)[0], net_ns_pid=pid)
    enter_net(pid)
    with IPRoute() as inside:  # opened after setns: the container's namespace
        index = inside.link_lookup(ifname=lease.peer_if)[0]
        inside.link("set", index=index, ifname="eth0")
        inside.addr("add", index=index, address=lease.address, prefixlen=lease.prefix)
        inside.link("set", index=index, state="up")
        inside.route("add", dst="0.0.0.0/0", gateway=lease.gateway)


def plug_in_without_a_route(pid, lease):
    with IPRoute() as host:
        host.link("set", index=host.link_lookup(ifname=lease.peer_if)[0], net_ns_pid=pid)
    enter_net(pid)
    with IPRoute() as inside:
        index = inside.link_lookup(ifname=lease.peer_if)[0]
        inside.link("set", index=index, ifname="eth0")
        inside.addr("add", index=index, address=lease.address, prefixlen=lease.prefix)
        inside.link("set", index=index, state="up")


def blank_plug_in(pid, lease):
    """The notebook's template, as the learner finds it."""
    # 1. Where is lease.peer_if now? Move it to where it must be.
    ...
    # 2. Then, from a netlink socket that talks to the container's namespace:
    #    its name, its address, up, and a way out.
    ...


def network_publish_8081():
    serve = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"
    return Container.start(ContainerSpec(IMAGE, ["sh", "-c", serve], network="bridge",
                                         publish=[("127.0.0.1", 8081, 80, "tcp")]))


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "network-plug-in": plug_in,
    "network-publish-8081": network_publish_8081,
}

BLANK = {"network-plug-in": blank_plug_in}

WRONG = {
    "network-plug-in": (lambda: plug_in_without_a_route, "is unreachable"),
    "network-publish-8081": (lambda: box(network="bridge", publish=[("127.0.0.1", 8082, 80, "tcp")],
                                         command=["sh", "-c", "mkdir /w; echo hi > /w/index.html; "
                                                  "exec httpd -f -p 80 -h /w"]),
                             "nothing answers at http://127.0.0.1:8081/"),
}
