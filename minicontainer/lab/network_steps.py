"""The inside half of a container's network, run from a notebook: in a fresh process that enters the
container's network namespace (the notebook's own process never calls setns).

Also where a learner's own `plug_in(pid, lease)` runs (lesson 04's exercise): in a fresh process that
starts in the host's network namespace, may move links out of it, and enters the container's with
`enter_net(pid)` when it is ready to."""

from __future__ import annotations

import inspect as source_code
import json
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from dataclasses import asdict

from .. import kernel, namespaces, network, security
from ..errors import LabError
from ..network import Lease, configure_inside, loopback_up
from ..process import spawn


def inside(pid: int, lease: Lease | dict | None = None) -> None:
    """From a notebook: run the inside step in a fresh process that enters pid's network namespace
    (the notebook's own process never calls setns). With a lease: configure_inside; without: lo up."""
    data = asdict(lease) if isinstance(lease, Lease) else lease
    out = spawn.run_forked("minicontainer.lab.network_steps", str(pid), json.dumps(data), capture_output=True,
                           text=True, timeout=30)
    if out.returncode != 0:
        raise LabError(f"configuring the network inside process {pid} failed: {out.stderr.strip()[-300:]}",
                       "the process exited, or the veth end is not in its namespace yet", "check both")


# What a lesson can take away for a moment, to see what breaks; each is undone on the way out.
TAKE_AWAY = {"eth0 up": "ip link set eth0 down, inside", "default route": "ip route del default, inside",
             "bridge port": "ip link set HOST-END nomaster: the veth's host end unplugged from the bridge"}


@contextmanager
def without(pid: int, lease: Lease, take_away=()):
    """Take parts of a container's network away (TAKE_AWAY's names) and put them back after."""
    take_away = [take_away] if isinstance(take_away, str) else list(take_away)
    unknown = set(take_away) - set(TAKE_AWAY)
    if unknown:
        raise LabError(f"cannot take away {', '.join(sorted(unknown))}", "not a part this knows",
                       f"use some of: {', '.join(TAKE_AWAY)}")
    try:
        for part in take_away:
            if part == "bridge port":
                _bridge_port(lease, plugged=False)
            else:
                _inside_op(pid, part, lease)
        yield
    finally:
        if "bridge port" in take_away:
            _bridge_port(lease, plugged=True)
        if {"eth0 up", "default route"} & set(take_away):
            _inside_op(pid, "restore", lease)  # link down also flushed the routes through it


@network.netlink_step
def _bridge_port(lease: Lease, plugged: bool) -> None:
    with network.netlink() as ipr:
        master = ipr.link_lookup(ifname=network.BRIDGE)[0] if plugged else 0
        ipr.link("set", index=ipr.link_lookup(ifname=lease.host_if)[0], master=master)


def _inside_op(pid: int, op: str, lease: Lease) -> None:
    out = spawn.run_forked("minicontainer.lab.network_steps", "--op", str(pid), op, json.dumps(asdict(lease)),
                           capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise LabError(f"{op!r} inside process {pid} failed: {out.stderr.strip()[-300:]}",
                       "the process exited, or its eth0 is not configured yet", "run the cells above first")


def _do_inside(op: str, lease: dict) -> None:
    with network.netlink() as ipr:
        index = ipr.link_lookup(ifname="eth0")[0]
        if op == "eth0 up":
            ipr.link("set", index=index, state="down")
        elif op == "default route":
            ipr.route("del", dst="0.0.0.0/0", gateway=lease["gateway"])
        else:  # restore
            ipr.link("set", index=index, state="up")
            ipr.route("replace", dst="0.0.0.0/0", gateway=lease["gateway"])


def host_address_off_the_bridge() -> str:
    """An address of the host on another network than the lab's: from a container, reaching it takes
    a route out of the lab subnet (the host answers for all its addresses, whichever interface)."""
    import ipaddress

    from .. import inspect
    for entry in inspect.network("self")["addresses"]:
        address = ipaddress.ip_address(entry["address"].split("/")[0])
        if entry["link"] != "lo" and not address.is_loopback and address not in network.SUBNET:
            return str(address)
    raise LabError("the host has no IPv4 address outside the lab subnet", "it is on no network but the lab's",
                   "connect the host (or the lab VM) to a network, then run this again")


def run_learner(function, pid: int, lease: Lease, timeout: float = 30) -> None:
    """Run a learner's function(pid, lease) in a fresh process (host's network namespace to begin
    with); its error, if any, comes back as a LabError naming the line that failed."""
    try:
        source = textwrap.dedent(source_code.getsource(function))
    except (OSError, TypeError):
        raise LabError(f"cannot read the source of {function!r}", "only a function defined with def can be "
                       "run in a fresh process", "define it with def, in a cell") from None
    request = json.dumps({"name": function.__name__, "source": source, "pid": pid, "lease": asdict(lease)})
    try:
        out = spawn.run_forked("minicontainer.lab.network_steps", "--function", input=request, capture_output=True,
                               text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{function.__name__}() did not return within {timeout:.0f} s", "it waits for something",
                       "make it return once eth0 is configured") from None
    try:
        reply = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise LabError(f"{function.__name__}() ended its process without an answer: {out.stderr.strip()[-300:]}",
                       "it exited or crashed the process", "return normally from the function") from None
    if reply.get("error"):
        raise LabError.from_dict(reply["error"])


def enter_net(pid: int) -> None:
    """setns(2) into pid's network namespace: from now on this process's netlink sockets, and its
    packets, are the container's. Sockets opened before keep the namespace they were opened in."""
    security.make_non_dumpable()  # no reach into this host process from the container (05)
    # A rootless container's user namespace first, where it has one of its own: the rights to its network
    # namespace are held there (a user without root has them only inside it).
    namespaces.enter(namespaces.open_namespaces(pid, ["user", "net"]))


def _run_function(request: dict) -> dict:
    from pyroute2 import IPRoute

    from ..process import learner
    from ..process.messages import RunFunction
    message = RunFunction(request["name"], request["source"])
    where = f"<your function {message.name}>"
    scope = {"__name__": "learner", "os": os, "kernel": kernel, "IPRoute": IPRoute, "enter_net": enter_net,
             "LabError": LabError}
    try:
        exec(compile(message.source, where, "exec"), scope)
        scope[message.name](request["pid"], Lease(**request["lease"]))
    except BaseException as e:  # noqa: BLE001  every learner mistake becomes a message
        return {"error": learner.learner_error(message, where, e).to_dict()}
    return {}


if __name__ == "__main__":
    if sys.argv[1] == "--op":  # python -m minicontainer.lab.network_steps --op PID OP LEASE-JSON (see without())
        enter_net(int(sys.argv[2]))
        _do_inside(sys.argv[3], json.loads(sys.argv[4]))
    elif sys.argv[1] == "--function":  # python -m minicontainer.lab.network_steps --function < REQUEST-JSON
        print(json.dumps(_run_function(json.load(sys.stdin))))
    else:  # python -m minicontainer.lab.network_steps PID LEASE-JSON|null (see inside())
        enter_net(int(sys.argv[1]))
        lease_data = json.loads(sys.argv[2])
        configure_inside(lease_data) if lease_data else loopback_up()
