"""Networking: a lab bridge, a veth pair per container, addresses, routes, NAT and published ports.

Netlink through pyroute2 (IPRoute), never the `ip` command. Host-side steps run in the
container's helper; the steps inside the container's network namespace run in its init
before exec (or, from a notebook, in a fresh process that enters the namespace).
The namespace is never named (no /run/netns bind mount): it lives and dies with the
container, and the veth pair with it.

Firewall rules live in the lab's own nftables table (or iptables chains, where nft is
missing). One exception: where another firewall's forward chain drops by policy (Docker
sets iptables' FORWARD to DROP when it is the one that switched ip_forward on), an accept in
our own table cannot override it (every base chain on a hook must accept), so two accept rules
for the lab bridge, tagged, go into that chain; they are recorded and removed with the rest.
The one global setting changed, net.ipv4.ip_forward, is recorded and restored when the last lab
network goes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import functools
import ipaddress
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from . import state
from .errors import LabError

BRIDGE = os.environ.get("MINICONTAINER_BRIDGE", "mcbr0")
# A /24 that home and office LANs rarely use (not 192.168.x, 10.0.x or Docker's 172.17.x).
SUBNET = ipaddress.ip_network(os.environ.get("MINICONTAINER_SUBNET", "10.213.77.0/24"))
TABLE = "minicontainer"
NETWORK_STATE = os.path.join(state.STATE_ROOT, ".network")  # not a container name (those start alnum)
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
# Link kinds of the fallback devices (tunl0, gre0, sit0, ip6tnl0...) that a loaded tunnel module puts in
# every new network namespace, down and without an address, unless net.core.fb_tunnels_only_for_init_net
# is 1 (only the initial namespace gets them) or 2 (no namespace does).
FALLBACK_TUNNEL_KINDS = frozenset({"ipip", "gre", "gretap", "erspan", "sit", "ip6tnl", "ip6gre", "vti", "vti6"})


@dataclass
class Lease:
    """One container's place on the lab network."""
    address: str        # e.g. 10.213.77.2
    prefix: int         # e.g. 24
    gateway: str        # the bridge's address
    host_if: str        # the veth end on the host, attached to the bridge
    peer_if: str        # the end moved into the container (renamed eth0 there)


def netlink():
    """A netlink socket (pyroute2's IPRoute) in the caller's network namespace: use it with `with`."""
    try:
        from pyroute2 import IPRoute
    except ImportError:
        raise LabError("pyroute2 is not installed", "the network layer talks netlink through pyroute2",
                       "pip install pyroute2 (./lab setup installs it)") from None
    return IPRoute()


def _netlink_error(what: str, e: Exception) -> LabError:
    return LabError(f"{what} failed: {e}", "not root, or the kernel lacks veth/bridge support",
                    "run as root; modprobe veth bridge")


def netlink_step(function):
    """Run a netlink step where pyroute2 can: pyroute2 drives its socket with its own asyncio loop,
    which cannot run inside a thread whose loop already runs (a Jupyter kernel's main thread)."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return function(*args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(1) as worker:
            return worker.submit(function, *args, **kwargs).result()
    return run


@contextmanager
def network_lock():
    """One container at a time changes the shared parts (bridge, addresses, firewall, sysctls)."""
    os.makedirs(NETWORK_STATE, exist_ok=True)
    with open(os.path.join(NETWORK_STATE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- addresses -----------------------------------------------------------------------------

def leases_in_use() -> dict[str, dict]:
    """Container name -> its network state, for containers whose helper still runs."""
    used = {}
    for name in state.all_names():
        info = state.read_state(name) or {}
        if info.get("network") and state.process_alive(info.get("helper_pid"), info.get("helper_start")):
            used[name] = info["network"]
    return used


def allocate(name: str) -> Lease:
    """The lowest free address of the lab subnet (the first one is the bridge's)."""
    taken = {lease["lease"]["address"] for lease in leases_in_use().values() if lease.get("lease")}
    hosts = list(SUBNET.hosts())
    gateway = str(hosts[0])
    for host in hosts[1:]:
        if str(host) not in taken:
            suffix = str(host).rsplit(".", 1)[1]
            return Lease(str(host), SUBNET.prefixlen, gateway, f"mcv{suffix}h", f"mcv{suffix}c")
    raise LabError(f"the lab subnet {SUBNET} is full", "every address has a running container",
                   "stop some containers, or set MINICONTAINER_SUBNET to a larger subnet")


# -- host side: bridge and veth --------------------------------------------------------------

@netlink_step
def ensure_bridge() -> None:
    """The lab bridge with the gateway address, up; ip_forward on (recorded first, to restore)."""
    with netlink() as ipr:
        if not ipr.link_lookup(ifname=BRIDGE):
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            index = ipr.link_lookup(ifname=BRIDGE)[0]
            ipr.addr("add", index=index, address=str(next(SUBNET.hosts())), prefixlen=SUBNET.prefixlen)
            ipr.link("set", index=index, state="up")
    saved = os.path.join(NETWORK_STATE, "sysctl.json")
    if not os.path.exists(saved):
        with open(IP_FORWARD) as f, open(saved, "w") as out:
            json.dump({IP_FORWARD: f.read().strip()}, out)
    with open(IP_FORWARD, "w") as f:
        f.write("1")  # routing between the bridge and the host's uplink (outbound NAT)
    # Published ports DNAT 127.0.0.1 to the bridge; the kernel drops loopback-sourced packets on
    # other interfaces unless route_localnet is set. Set on our bridge only: it goes with the bridge.
    with open(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet", "w") as f:
        f.write("1")


@netlink_step
def create_veth(lease: Lease) -> None:
    """A veth pair: two linked virtual interfaces; the host end is plugged into the bridge."""
    with netlink() as ipr:
        ipr.link("add", ifname=lease.host_if, kind="veth", peer={"ifname": lease.peer_if})
        host_index = ipr.link_lookup(ifname=lease.host_if)[0]
        ipr.link("set", index=host_index, master=ipr.link_lookup(ifname=BRIDGE)[0], state="up")


@netlink_step
def move_into(ifname: str, pid: int) -> None:
    """Move an interface into the network namespace of process pid."""
    with netlink() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], net_ns_pid=pid)


def claim(name: str, publish: list | None = None) -> Lease:
    """Reserve an address for container `name`, recorded in its state (so its helper releases it)."""
    with network_lock():
        lease = allocate(name)
        info = state.read_state(name) or {"name": name}
        state.write_state(name, {**info, "network": {"lease": asdict(lease), "publish": publish or []}})
    return lease


def connect(name: str, pid: int, publish: list | None = None) -> Lease:
    """Host side of network='bridge' for the container whose init is pid: all but the inside."""
    lease = claim(name, publish)
    with network_lock():
        try:
            ensure_bridge()
            create_veth(lease)
            move_into(lease.peer_if, pid)
        except Exception as e:
            raise _netlink_error("connecting the container to the lab bridge", e) from None
        apply_firewall()
    return lease


def disconnect(name: str) -> None:
    """Remove the container's veth and rules; the last one out removes bridge, table and sysctls."""
    with network_lock():
        info = state.read_state(name)
        lease = (info or {}).get("network", {}).get("lease")
        if lease:
            info.pop("network")
            state.write_state(name, info)
            # Gone anyway once the namespace is freed, but the kernel frees namespaces lazily.
            delete_link(lease["host_if"])
        apply_firewall()
        if not leases_in_use():
            teardown()


@netlink_step
def delete_link(ifname: str) -> bool:
    with netlink() as ipr:
        from pyroute2 import NetlinkError
        for index in ipr.link_lookup(ifname=ifname):
            try:
                ipr.link("del", index=index)
            except NetlinkError as e:
                # The kernel deletes both ends of a veth when the container's namespace is freed,
                # which can happen between the lookup and the delete (seen under slow emulation).
                if e.code != errno.ENODEV:
                    raise
                return False
            return True
    return False


def leftovers() -> bool:
    """Is any shared piece of the lab network still here (bridge, firewall table, saved sysctls)?"""
    table = shutil.which("nft") and subprocess.run(["nft", "list", "table", "ip", TABLE],
                                                    capture_output=True).returncode == 0
    return bool(os.path.exists(f"/sys/class/net/{BRIDGE}") or table or os.path.exists(HOLES)
                or os.path.exists(os.path.join(NETWORK_STATE, "sysctl.json")))


def teardown() -> list[str]:
    """Remove the bridge and the lab's firewall rules, restore ip_forward. What was removed."""
    removed = [f"bridge {BRIDGE}"] if delete_link(BRIDGE) else []
    removed += firewall().remove()
    removed += ForwardHoles().close()  # recorded by the nft path even if the backend chosen now differs
    saved = os.path.join(NETWORK_STATE, "sysctl.json")
    if os.path.exists(saved):
        with open(saved) as f:
            for path, value in json.load(f).items():
                with open(path, "w") as out:
                    out.write(value)
                removed.append(f"sysctl {path} restored to {value}")
        os.remove(saved)
    return removed


# -- inside the container's network namespace ---------------------------------------------

def loopback_up() -> None:
    """ip link set lo up: until then not even 127.0.0.1 works in a new network namespace."""
    with netlink() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def configure_inside(lease: dict) -> None:
    """In the container's network namespace: lo up, the veth end renamed eth0 with its address,
    up, and a default route through the bridge."""
    with netlink() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        index = ipr.link_lookup(ifname=lease["peer_if"])[0]
        ipr.link("set", index=index, ifname="eth0")
        ipr.addr("add", index=index, address=lease["address"], prefixlen=lease["prefix"])
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=lease["gateway"])


@netlink_step
def describe() -> dict:
    """Links, addresses and routes of the calling process's network namespace, as plain data."""
    with netlink() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        links = []
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            links.append({"name": link.get_attr("IFLA_IFNAME"), "state": link.get_attr("IFLA_OPERSTATE"),
                          "kind": info.get_attr("IFLA_INFO_KIND") if info else "",
                          "master": names.get(link.get_attr("IFLA_MASTER"), "")})
        addresses = [{"link": names.get(a["index"]), "address": f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"}
                     for a in ipr.get_addr(family=2)]
        routes = [{"dst": f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}",
                   "via": r.get_attr("RTA_GATEWAY") or "", "link": names.get(r.get_attr("RTA_OIF"), "")}
                  for r in ipr.get_routes(family=2, table=254)]
    return {"links": links, "addresses": addresses, "routes": routes}


# -- the firewall: NAT for outbound traffic, DNAT for published ports -------------------------

def published_rules() -> list[tuple[str, int, str, int, str]]:
    """(host ip, host port, container ip, container port, protocol) for every running container."""
    rules = []
    for network in leases_in_use().values():
        for host_ip, host_port, ctr_port, proto in network.get("publish", []):
            rules.append((host_ip, int(host_port), network["lease"]["address"], int(ctr_port), proto))
    return rules


class Nftables:
    """Everything in one table of our own: `nft delete table ip minicontainer` removes it all."""
    name = "nftables"

    def ruleset(self, published) -> str:
        # No forward chain: with policy accept it would change nothing, and an accept in it cannot
        # override another table's drop. ForwardHoles handles a forward chain that drops.
        dnat = "".join(f"    ip daddr {hip} {proto} dport {hport} dnat to {cip}:{cport}\n"
                       for hip, hport, cip, cport, proto in published)
        return (f"table ip {TABLE} {{\n"
                f"  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n{dnat}  }}\n"
                f"  chain output {{ type nat hook output priority -100; policy accept;\n{dnat}  }}\n"
                f"  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n"
                f"    ip saddr {SUBNET} oifname != \"{BRIDGE}\" masquerade\n"
                f"    ip saddr 127.0.0.0/8 oifname \"{BRIDGE}\" masquerade\n  }}\n"
                f"}}\n")

    def apply(self, published) -> None:
        self.remove()
        _run(["nft", "-f", "-"], self.ruleset(published))
        ForwardHoles().open()

    def remove(self) -> list[str]:
        removed = ForwardHoles().close()
        if subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True).returncode == 0:
            _run(["nft", "delete", "table", "ip", TABLE])
            removed.append(f"nftables table ip {TABLE}")
        return removed

    def show(self) -> str:
        return subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True, text=True).stdout


HOLE_TAG = f"MC-LAB {BRIDGE} (minicontainer)"  # the comment on every rule we add to another firewall's chain
HOLES = os.path.join(NETWORK_STATE, "forward-holes.json")


class ForwardHoles:
    """Accept rules for the lab bridge in other firewalls' forward chains whose policy is drop.

    A packet is forwarded only if every base chain on the forward hook accepts it, whatever its
    table. Docker sets iptables' FORWARD policy to DROP when it switches ip_forward on itself (if
    forwarding was already on, it leaves the policy alone); on an iptables-nft host that chain is the
    nft chain `ip filter FORWARD`. Where a forward chain drops by policy, the lab's traffic needs a
    rule in that very chain. Each rule
    added is recorded in HOLES before the next one, and close() removes exactly those, nothing else.
    Rules go in with the tool that owns the chain: iptables-nft refuses to list a chain holding rules
    it cannot read back, and Docker reloads its rules with iptables.
    """

    def accept_rules(self) -> list[tuple[str, list[str]]]:
        """(nft syntax, iptables arguments) of the two rules: out of the bridge, and the replies back."""
        return [(f'iifname "{BRIDGE}" accept', ["-i", BRIDGE]),
                (f'oifname "{BRIDGE}" ct state established,related accept',
                 ["-o", BRIDGE, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"])]

    def dropping_chains(self) -> list[dict]:
        """Forward base chains with policy drop, other than ours: nft's view, and legacy iptables'."""
        found = []
        listed = subprocess.run(["nft", "-j", "list", "chains"], capture_output=True, text=True)
        iptables_nft = "nf_tables" in subprocess.run(["iptables", "--version"], capture_output=True,
                                                     text=True).stdout if shutil.which("iptables") else False
        for item in json.loads(listed.stdout or '{"nftables": []}')["nftables"]:
            chain = item.get("chain")
            if not chain or chain.get("hook") != "forward" or chain.get("policy") != "drop":
                continue
            if chain["family"] not in ("ip", "inet") or (chain["family"], chain["table"]) == ("ip", TABLE):
                continue
            owned_by_iptables = iptables_nft and (chain["family"], chain["table"], chain["name"]) == (
                "ip", "filter", "FORWARD")
            found.append({"tool": "iptables" if owned_by_iptables else "nft", "family": chain["family"],
                          "table": chain["table"], "chain": chain["name"]})
        # Legacy iptables (x_tables) is invisible to nft. Reading ip_tables_names loads no module.
        if shutil.which("iptables-legacy") and os.path.exists("/proc/net/ip_tables_names"):
            with open("/proc/net/ip_tables_names") as f:
                has_filter = "filter" in f.read().split()
            if has_filter and "-P FORWARD DROP" in subprocess.run(
                    ["iptables-legacy", "-S", "FORWARD"], capture_output=True, text=True).stdout:
                found.append({"tool": "iptables-legacy", "family": "ip", "table": "filter", "chain": "FORWARD"})
        return found

    def open(self) -> None:
        holes = self.recorded()
        for chain in self.dropping_chains():
            # Inserted in reverse so that they end up in order at the top of the chain.
            for nft_rule, iptables_args in reversed(self.accept_rules()):
                if chain["tool"] == "nft":
                    out = subprocess.run(["nft", "--echo", "--handle", "insert", "rule", chain["family"],
                                          chain["table"], chain["chain"], *nft_rule.split(), "comment",
                                          f'"{HOLE_TAG}"'], capture_output=True, text=True)
                    if out.returncode != 0:
                        raise _firewall_error(["nft", "insert", "rule"], out.stderr)
                    hole = {**chain, "handle": int(out.stdout.split("# handle")[1].split()[0])}
                else:
                    rule = [*iptables_args, "-m", "comment", "--comment", HOLE_TAG, "-j", "ACCEPT"]
                    _run([chain["tool"], "-I", chain["chain"], "1", *rule])
                    hole = {**chain, "rule": rule}
                holes.append(hole)
                self.record(holes)

    def close(self) -> list[str]:
        removed = []
        for hole in self.recorded():
            where = f"{hole['family']} {hole['table']} {hole['chain']}"
            if hole["tool"] == "nft":
                # Delete by handle only if that handle still carries our tag (the chain may have been
                # flushed and refilled by its owner since).
                listed = subprocess.run(["nft", "-j", "-a", "list", "chain", hole["family"], hole["table"],
                                         hole["chain"]], capture_output=True, text=True)
                ours = any(item.get("rule", {}).get("handle") == hole["handle"]
                           and item["rule"].get("comment") == HOLE_TAG
                           for item in json.loads(listed.stdout or '{"nftables": []}')["nftables"])
                if ours:
                    _run(["nft", "delete", "rule", hole["family"], hole["table"], hole["chain"], "handle",
                          str(hole["handle"])])
                    removed.append(f"accept rule for {BRIDGE} in nft chain {where}")
            elif subprocess.run([hole["tool"], "-D", hole["chain"], *hole["rule"]],
                                capture_output=True).returncode == 0:
                removed.append(f"accept rule for {BRIDGE} in {hole['tool']} chain {hole['chain']}")
        if os.path.exists(HOLES):
            os.remove(HOLES)
        return removed

    def recorded(self) -> list[dict]:
        if not os.path.exists(HOLES):
            return []
        with open(HOLES) as f:
            return json.load(f)

    def record(self, holes: list[dict]) -> None:
        os.makedirs(NETWORK_STATE, exist_ok=True)
        with open(HOLES + ".new", "w") as f:
            json.dump(holes, f)
        os.replace(HOLES + ".new", HOLES)


class Iptables:
    """Chains of our own, reached by one jump rule per built-in chain; nothing else is touched."""
    name = "iptables"
    CHAINS = {("nat", "PREROUTING"): "MC-PREROUTING", ("nat", "OUTPUT"): "MC-OUTPUT",
              ("nat", "POSTROUTING"): "MC-POSTROUTING", ("filter", "FORWARD"): "MC-FORWARD"}

    def apply(self, published) -> None:
        self.remove()
        for (table, builtin), chain in self.CHAINS.items():
            _run(["iptables", "-t", table, "-N", chain])
            _run(["iptables", "-t", table, "-I", builtin, "1", "-j", chain])
        for hip, hport, cip, cport, proto in published:
            for chain in ("MC-PREROUTING", "MC-OUTPUT"):
                _run(["iptables", "-t", "nat", "-A", chain, "-d", hip, "-p", proto, "--dport", str(hport),
                      "-j", "DNAT", "--to-destination", f"{cip}:{cport}"])
        _run(["iptables", "-t", "nat", "-A", "MC-POSTROUTING", "-s", str(SUBNET), "!", "-o", BRIDGE,
              "-j", "MASQUERADE"])
        _run(["iptables", "-t", "nat", "-A", "MC-POSTROUTING", "-s", "127.0.0.0/8", "-o", BRIDGE, "-j", "MASQUERADE"])
        # FORWARD may drop by policy (Docker sets DROP when it turned ip_forward on): our jump comes
        # first and accepts lab traffic.
        _run(["iptables", "-A", "MC-FORWARD", "-i", BRIDGE, "-j", "ACCEPT"])
        _run(["iptables", "-A", "MC-FORWARD", "-o", BRIDGE, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
              "-j", "ACCEPT"])

    def remove(self) -> list[str]:
        removed = []
        for (table, builtin), chain in self.CHAINS.items():
            if subprocess.run(["iptables", "-t", table, "-n", "-L", chain], capture_output=True).returncode == 0:
                subprocess.run(["iptables", "-t", table, "-D", builtin, "-j", chain], capture_output=True)
                _run(["iptables", "-t", table, "-F", chain])
                _run(["iptables", "-t", table, "-X", chain])
                removed.append(f"iptables chain {table}/{chain}")
        return removed

    def show(self) -> str:
        return "".join(subprocess.run(["iptables", "-t", t, "-S"], capture_output=True, text=True).stdout
                       for t in ("nat", "filter"))


def _run(command: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise _firewall_error(command, done.stderr)


def _firewall_error(command: list[str], stderr: str) -> LabError:
    return LabError(f"{' '.join(command[:4])} failed: {stderr.strip()[-300:]}",
                    "the firewall tool refused the rules (kernel lacks nf_tables/NAT modules?)",
                    "modprobe nf_tables nf_nat; run `minicontainer doctor`")


def firewall():
    """nftables where the nft command exists (current distributions), else iptables."""
    choice = os.environ.get("MINICONTAINER_FIREWALL")  # "nftables" or "iptables", to test both
    if shutil.which("nft") and choice in (None, "nftables"):
        return Nftables()
    if shutil.which("iptables") and choice in (None, "iptables"):
        return Iptables()
    raise LabError("neither nft nor iptables is installed", "NAT and port publishing need one of them",
                   "apt-get install nftables")


def apply_firewall() -> None:
    """Load the lab's rules for the containers running now (atomically replaced each time)."""
    if leases_in_use():
        firewall().apply(published_rules())
    else:
        firewall().remove()


def parse_publish(text: str) -> tuple[str, int, int, str]:
    """HOSTPORT:CTRPORT or IP:HOSTPORT:CTRPORT, optionally /udp; bound to 127.0.0.1 by default."""
    spec, _, proto = text.partition("/")
    parts = spec.split(":")
    try:
        host_ip, host_port, ctr_port = (["127.0.0.1"] + parts if len(parts) == 2 else parts)
        ipaddress.ip_address(host_ip)
        host_port, ctr_port = int(host_port), int(ctr_port)
        assert 0 < host_port < 65536 and 0 < ctr_port < 65536 and proto in ("", "tcp", "udp")
    except (ValueError, AssertionError):
        raise LabError(f"--publish {text!r} is not HOSTPORT:CTRPORT", "ports are 1-65535; the host address "
                       "defaults to 127.0.0.1", "write it like 8080:80, or 127.0.0.1:8080:80/tcp") from None
    return host_ip, host_port, ctr_port, proto or "tcp"
