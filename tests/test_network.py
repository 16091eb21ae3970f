"""The lab network on the real kernel: veth, bridge, NAT, published ports, and nothing left after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest
from conftest import REPO, assert_back_to, cli, kernel_state

from minicontainer import inspect, network, state
from minicontainer.container import Container
from minicontainer.errors import LabError
from minicontainer.lab import network_steps
from minicontainer.spec import ContainerSpec

BACKENDS = [b for b, tool in (("nftables", "nft"), ("iptables", "iptables")) if shutil.which(tool)]


@pytest.fixture(params=BACKENDS or ["none installed"])
def firewall_backend(request, monkeypatch):
    if request.param == "none installed":
        pytest.fail("neither nft nor iptables is installed (./lab setup installs nftables and iptables)")
    monkeypatch.setenv("MINICONTAINER_FIREWALL", request.param)
    return request.param


def serve(image, text: str, port: int, **spec) -> Container:
    command = ["sh", "-c", f"mkdir -p /www; echo {text} > /www/index.html; exec httpd -f -p 80 -h /www"]
    return Container.start(ContainerSpec(image, command, network="bridge",
                                         publish=[("127.0.0.1", port, 80, "tcp")], **spec))


def fetch(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_two_containers_ping_each_other(image, firewall_backend):
    with Container.start(ContainerSpec(image, ["sleep", "60"], network="bridge")) as a, \
            Container.start(ContainerSpec(image, ["sleep", "60"], network="bridge")) as b:
        a_addr = next(x["address"] for x in inspect.network(a.pid)["addresses"] if x["link"] == "eth0")
        b_view = inspect.network(b.pid)
        assert {x["link"] for x in b_view["addresses"]} == {"lo", "eth0"}
        assert any(r["dst"] == "0.0.0.0/0" and r["via"] == str(next(network.SUBNET.hosts()))
                   for r in b_view["routes"])
        ping = b.exec(["ping", "-c", "2", "-W", "2", a_addr.split("/")[0]])
        assert ping.returncode == 0 and "2 packets received" in ping.stdout
        host_side = inspect.network("self")["links"]
        assert any(k["name"] == network.BRIDGE and k["kind"] == "bridge" for k in host_side)
        assert sum(k["master"] == network.BRIDGE for k in host_side) == 2  # one veth end per container


def test_published_port_reaches_the_container_from_the_host(image, firewall_backend):
    with serve(image, "hello-lab", 18081) as web:
        assert fetch("http://127.0.0.1:18081/") == "hello-lab\n"
        rules = network.firewall().show()
        assert "18081" in rules
    with pytest.raises(OSError):
        urllib.request.urlopen("http://127.0.0.1:18081/", timeout=2)
    assert web.exit_code is not None


def test_ip_forward_is_restored(image):
    with open(network.IP_FORWARD) as f:
        before = f.read()
    with Container.start(ContainerSpec(image, ["sleep", "60"], network="bridge")):
        with open(network.IP_FORWARD) as f:
            assert f.read().strip() == "1"
    with open(network.IP_FORWARD) as f:
        assert f.read() == before


def test_net_none_has_only_a_down_loopback(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        view = inspect.network(box.pid)
        assert ("lo", "DOWN") in [(k["name"], k["state"]) for k in view["links"]]
        # Beside lo, only the fallback devices of loaded tunnel modules (tunl0...), and no address.
        assert [k for k in view["links"] if k["name"] != "lo" and k["kind"] not in network.FALLBACK_TUNNEL_KINDS] == []
        assert view["addresses"] == []
        network_steps.inside(box.pid)  # lo up, from a fresh process in the container's namespace
        assert box.exec(["ping", "-c", "1", "-W", "1", "127.0.0.1"]).returncode == 0


def test_net_loopback_has_lo_up_and_nothing_else(image):
    """network='loopback' (what an OCI config's new network namespace gets, as under runc): the step's
    ioctl raised IFF_UP on lo, so 127.0.0.1 answers; no other address."""
    with Container.start(ContainerSpec(image, ["sleep", "60"], network="loopback")) as box:
        view = inspect.network(box.pid)
        assert ("lo", "UNKNOWN") in [(k["name"], k["state"]) for k in view["links"]]  # lo's operstate when up
        assert [a for a in view["addresses"] if a["link"] != "lo"] == []
        assert box.exec(["ping", "-c", "1", "-W", "1", "127.0.0.1"]).returncode == 0


@pytest.mark.slow
def test_kill_9_of_the_cli_with_a_published_port_leaves_nothing(image):
    before = kernel_state()
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--net", "bridge", "-p",
                               "18082:80", image, "--", "httpd", "-f", "-p", "80"],
                              env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    deadline = time.monotonic() + 15
    while not network.leases_in_use() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert network.leases_in_use(), "the container never got on the network"
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    assert_back_to(before, within=5)  # nothing left within 5 s, with no cleanup call


def test_cleanup_removes_network_leftovers(image):
    network.ensure_bridge()  # as a helper killed mid-way would leave it
    assert network.leftovers()
    out = cli("cleanup")
    assert f"bridge {network.BRIDGE}" in out.stdout and "ip_forward restored" in out.stdout
    assert not network.leftovers()


@pytest.mark.parametrize("args, words", [
    (["run", "--net", "bridge", "-p", "80", "--", "true"], "is not HOSTPORT:CTRPORT"),
    (["run", "--net", "bridge", "-p", "99999:80", "--", "true"], "is not HOSTPORT:CTRPORT"),
    (["run", "-p", "8080:80", "--", "true"], "needs network='bridge'"),
    (["run", "--net", "bridge", "--share", "net", "--", "true"], "needs the net namespace"),
])
def test_bad_network_input_is_explained(args, words):
    out = cli(*args)
    assert out.returncode == 125 and words in out.stderr and "what to do" in out.stderr


def test_state_records_and_releases_the_lease(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"], network="bridge")) as box:
        lease = state.read_state(box.name)["network"]["lease"]
        assert lease["address"].startswith(str(network.SUBNET.network_address)[:-1])
    assert box.name not in network.leases_in_use()
    with pytest.raises(LabError):
        network.parse_publish("a:b")


# -- beside Docker: another firewall's forward chain with policy drop -------------------------

OUTSIDE = network.Lease("198.51.100.2", 30, "198.51.100.1", "mcouth", "mcoutc")  # TEST-NET-2: never routed


def nft_ruleset() -> str:
    """The whole ruleset without counters (a Docker host's count packets while the test runs)."""
    return subprocess.run(["nft", "--stateless", "list", "ruleset"], capture_output=True, text=True, check=True).stdout


def iptables_nft() -> bool:
    return bool(shutil.which("iptables")) and "nf_tables" in subprocess.run(
        ["iptables", "--version"], capture_output=True, text=True).stdout


@contextmanager
def forward_drop(how: str):
    """FORWARD DROP as Docker leaves it, undone even if the test fails (the host never keeps it)."""
    if how == "nft table":  # a firewall of its own: a forward base chain, policy drop
        subprocess.run(["nft", "delete", "table", "ip", "mctest_drop"], capture_output=True)  # a killed run's
        subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
            "table ip mctest_drop { chain forward { type filter hook forward priority filter; policy drop; }; }"))
        try:
            yield
        finally:
            subprocess.run(["nft", "delete", "table", "ip", "mctest_drop"], check=True)
    else:  # what dockerd runs: iptables -P FORWARD DROP (on iptables-nft, the nft chain ip filter FORWARD)
        had_table = subprocess.run(["nft", "list", "table", "ip", "filter"], capture_output=True).returncode == 0
        policy = "DROP" if "-P FORWARD DROP" in subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True,
                                                               text=True).stdout else "ACCEPT"
        subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
        try:
            yield
        finally:
            subprocess.run(["iptables", "-P", "FORWARD", policy], check=True)
            if not had_table:
                subprocess.run(["nft", "delete", "table", "ip", "filter"], check=True)


@contextmanager
def outside_host(image):
    """A second network beside the bridge: a container on its own veth pair, reached by routing."""
    box = Container.start(ContainerSpec(image, ["sleep", "60"], hostname="outside"))
    try:
        with network.netlink() as ipr:
            ipr.link("add", ifname=OUTSIDE.host_if, kind="veth", peer={"ifname": OUTSIDE.peer_if})
            index = ipr.link_lookup(ifname=OUTSIDE.host_if)[0]
            ipr.addr("add", index=index, address=OUTSIDE.gateway, prefixlen=OUTSIDE.prefix)
            ipr.link("set", index=index, state="up")
        network.move_into(OUTSIDE.peer_if, box.pid)
        network_steps.inside(box.pid, OUTSIDE)
        yield box
    finally:
        network.delete_link(OUTSIDE.host_if)
        box.stop(grace=0)


def bridged_packets_filtered() -> bool:
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            return f.read().strip() == "1"
    except FileNotFoundError:  # br_netfilter not loaded
        return False


def reaches(box: Container, address: str) -> bool:
    return box.exec(["ping", "-c", "1", "-W", "2", address]).returncode == 0


@pytest.mark.parametrize("backend, how", [
    ("nftables", "nft table"),
    pytest.param("nftables", "iptables -P", marks=pytest.mark.skipif(not iptables_nft(), reason="iptables-legacy")),
    pytest.param("iptables", "iptables -P", marks=pytest.mark.skipif(not iptables_nft(), reason="iptables-legacy")),
])
def test_forward_drop_beside_docker_is_opened_for_the_bridge_only_and_restored(image, monkeypatch, backend, how):
    if not shutil.which("nft") or not shutil.which(backend.replace("nftables", "nft")):
        pytest.skip(f"needs nft and {backend}")
    monkeypatch.setenv("MINICONTAINER_FIREWALL", backend)
    before = nft_ruleset()
    with outside_host(image):
        with forward_drop(how):
            with Container.start(ContainerSpec(image, ["sleep", "60"], network="bridge")) as box, \
                    Container.start(ContainerSpec(image, ["sleep", "60"], network="bridge")) as neighbour:
                neighbour_address = state.read_state(neighbour.name)["network"]["lease"]["address"]
                assert reaches(box, OUTSIDE.address), "the lab's accept rules did not get past FORWARD DROP"
                assert reaches(box, neighbour_address)
                if backend == "nftables":
                    # Without the rules in the dropping chain, our own table's rules alone: dropped.
                    network.ForwardHoles().close()
                    assert not reaches(box, OUTSIDE.address), "FORWARD DROP did not bite: the test proves nothing"
                    if bridged_packets_filtered():  # br_netfilter: bridged IPv4 meets the forward hook too
                        assert not reaches(box, neighbour_address)
                    network.apply_firewall()
                    assert reaches(box, OUTSIDE.address) and reaches(box, neighbour_address)
            assert not os.path.exists(network.HOLES)
    assert nft_ruleset() == before
