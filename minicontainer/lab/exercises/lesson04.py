"""Exercises of notebooks/04-network.ipynb."""

from __future__ import annotations

import ipaddress
import time

from ... import inspect
from ...container import Container
from .. import Exercise
from . import running


def _lab_address(pid: int) -> str | None:
    from ... import network
    for entry in inspect.network(pid)["addresses"]:
        address = entry["address"].split("/")[0]
        if entry["link"] != "lo" and ipaddress.ip_address(address) in network.SUBNET:
            return address
    return None


def check_reachable_on_bridge(answer) -> list[str]:
    from ... import network
    problems = running(answer)
    if problems:
        return problems
    address = _lab_address(answer.pid)
    if address is None:
        return [f"it has no address on the lab subnet {network.SUBNET} (is it on the bridge?)"]
    gateway = str(next(network.SUBNET.hosts()))
    if not any(r["dst"] == "0.0.0.0/0" and r["via"] == gateway for r in inspect.network(answer.pid)["routes"]):
        problems.append(f"it has no default route via the bridge ({gateway})")
    # A real ping, from a probe container on the same bridge.
    from ...rootfs import DEFAULT_ROOTFS
    from ...spec import ContainerSpec
    with Container.start(ContainerSpec(DEFAULT_ROOTFS, ["sleep", "30"], network="bridge")) as probe:
        if probe.exec(["ping", "-c", "1", "-W", "2", address]).returncode != 0:
            problems.append(f"a container on the bridge cannot ping it at {address}")
    return problems


def check_published_8081(answer) -> list[str]:
    import urllib.request

    from ... import network
    problems = running(answer)
    if problems:
        return problems
    address = _lab_address(answer.pid)
    rules = network.firewall().show()
    if address is None:
        return ["it is not on the lab bridge"]
    if "8081" not in rules or address not in rules:
        problems.append(f"no firewall rule forwards 127.0.0.1:8081 to its address {address}")
    try:
        body = ""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and body.strip() != "hi":
            try:
                body = urllib.request.urlopen("http://127.0.0.1:8081/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        if body.strip() != "hi":
            problems.append(f"http://127.0.0.1:8081/ answers {body.strip()[:40]!r}, not 'hi'")
    except OSError as e:
        problems.append(f"http://127.0.0.1:8081/ does not answer: {e}")
    return problems


EXERCISES = [
    Exercise("network-reachable", "Start a container `b` that other containers on the lab bridge can reach.",
             "ContainerSpec(..., network='bridge')", check_reachable_on_bridge),
    Exercise("network-publish-8081", "Serve the text `hi` on port 80 of a container `web`, published on the "
             "host's 127.0.0.1:8081.", "busybox httpd -f -p 80 -h DIR; publish=[('127.0.0.1', 8081, 80, 'tcp')]",
             check_published_8081),
]
