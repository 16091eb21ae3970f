"""Exercises of notebooks/04-network.ipynb."""

from __future__ import annotations

import ipaddress
import os
import time

from ... import inspect
from ...container import Container
from ...errors import LabError
from .. import Exercise
from . import running

# Without root (a class host's learner), neither exercise can be checked: both work in the host's network namespace.
NEEDS_ROOT = ("this exercise works in the host's network namespace (a veth end, the lab bridge, NAT rules), which "
              "needs root on this machine, and you run without it: do it in the lab VM; here, section 8's user-mode "
              "network is yours to try")


def _lab_address(pid: int) -> str | None:
    from ... import network
    for entry in inspect.network(pid)["addresses"]:
        address = entry["address"].split("/")[0]
        if entry["link"] != "lo" and ipaddress.ip_address(address) in network.SUBNET:
            return address
    return None


def check_plug_in(function) -> list[str]:
    """The learner's plug_in(pid, lease), run for real on a fresh container with a veth pair on the
    bridge; judged by where the kernel has the veth end and by real pings both ways."""
    from ... import network
    from ...rootfs import DEFAULT_ROOTFS
    from ...spec import ContainerSpec
    from ..network_steps import host_address_off_the_bridge, run_learner
    if not callable(function):
        return [f"expected a function (def plug_in(pid, lease): ...), got {type(function).__name__}"]
    if os.geteuid() != 0:
        return [NEEDS_ROOT]
    try:
        outside = host_address_off_the_bridge()
    except LabError:
        outside = None  # a host on no other network: the way-out check cannot be made here
    box = Container.start(ContainerSpec(DEFAULT_ROOTFS, ["sleep", "120"], hostname="plugged"))
    try:
        lease = network.claim(box.name)  # recorded in box's state: its helper removes the veth pair
        with network.network_lock():
            network.ensure_bridge()
            network.create_veth(lease)
            network.apply_firewall()
        try:
            run_learner(function, box.pid, lease)
        except LabError as e:
            return [f"your function failed: {e.what}", f"({e.cause})"]
        problems = []
        host_links = {link["name"] for link in inspect.network("self")["links"]}
        inside_links = {link["name"]: link for link in inspect.network(box.pid)["links"]}
        if lease.peer_if in host_links:
            problems.append(f"the veth end {lease.peer_if} is still in the host's network namespace")
        if "eth0" not in inside_links:
            problems.append(f"the container has no eth0 (its interfaces: {', '.join(sorted(inside_links))})")
        with Container.start(ContainerSpec(DEFAULT_ROOTFS, ["sleep", "30"], network="bridge")) as probe:
            if probe.exec(["ping", "-c", "1", "-W", "2", lease.address]).returncode != 0:
                problems.append(f"a container on the bridge gets no answer from {lease.address}")
        if outside and box.exec(["ping", "-c", "1", "-W", "2", outside]).returncode != 0:
            problems.append(f"from inside, {outside} (the host, on another network than the bridge) is unreachable")
        return problems
    finally:
        box.stop(grace=0)


def check_published_8081(answer) -> list[str]:
    from ... import network
    if os.geteuid() != 0:
        return [NEEDS_ROOT]
    problems = running(answer)
    if problems:
        return problems
    if _lab_address(answer.pid) is None:
        return [f"it has no address on the lab subnet {network.SUBNET}: is it on the bridge?"]
    import urllib.request
    body, error = "", None
    deadline = time.monotonic() + 5  # the server may still be starting
    while time.monotonic() < deadline and body.strip() != "hi":
        try:
            body = urllib.request.urlopen("http://127.0.0.1:8081/", timeout=2).read().decode()
        except OSError as e:
            error = e
            time.sleep(0.2)
    if body.strip() == "hi":
        return []
    if body:
        return [f"http://127.0.0.1:8081/ answers {body.strip()[:40]!r}, not 'hi'"]
    return [f"nothing answers at http://127.0.0.1:8081/ ({error})"]


EXERCISES = [
    Exercise("network-plug-in", "Write plug_in(pid, lease): move the veth end lease.peer_if into the network "
             "namespace of process pid, and there make it eth0 with lease's address, up, with a default route "
             "through lease.gateway.",
             hints=("Two network namespaces are involved, and a netlink socket talks to the one it was opened in. "
                    "Which one holds lease.peer_if now, and which one must hold it when you rename it?",
                    "IPRoute's link_lookup(ifname=...) finds an interface's index; link('set', ..., "
                    "net_ns_pid=...) moves it. enter_net(pid) switches namespaces; there, link('set', ...), "
                    "addr('add', ...) and route('add', ...) do the rest (pyroute2's docs give their arguments)."),
             checker=check_plug_in),
    Exercise("network-publish-8081", "Serve the text `hi` on port 80 of a container `web2`, published on the "
             "host's 127.0.0.1:8081.",
             hints=("Two parts: a server inside that answers on port 80, and something that leads the host's port "
                    "8081 to the container's. Section 6 did both, for another port and page.",
                    "ContainerSpec's network and publish fields (section 6's cell shows their form); busybox "
                    "httpd serves the index.html of the directory given with -h."),
             checker=check_published_8081),
]
