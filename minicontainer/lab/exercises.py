"""The lab's exercises, by notebook. Every checker reads /proc or cgroupfs (through inspect)."""

from __future__ import annotations

import ipaddress
import os
import time

from .. import inspect, namespaces
from ..container import Container
from . import Exercise


def _running(answer) -> list[str]:
    """Problems if the answer is not a running container; [] if it is."""
    if not isinstance(answer, Container):
        return [f"expected a running Container (from Container.start), got {type(answer).__name__}"]
    if not answer.running() or not os.path.exists(f"/proc/{answer.pid}"):
        return ["the container is not running any more: give it a command that lasts, e.g. ['sleep', '600']"]
    return []


# -- 00-welcome ------------------------------------------------------------------------------

def check_pid_namespace(answer) -> list[str]:
    truth = namespaces.ns_inode("self", "pid")
    if not isinstance(answer, int):
        return [f"expected a number (the inode in 'pid:[NUMBER]'), got {answer!r}"]
    if answer == truth:
        return []
    for kind, inode in namespaces.identities("self").items():
        if inode == answer:
            return [f"{answer} is this kernel's {kind} namespace, not its pid namespace"]
    return [f"{answer} is not one of this kernel's namespaces"]


def check_memory_cgroup(answer) -> list[str]:
    membership = inspect.cgroups("self")
    key = next((k for k in membership if "memory" in k.split(",")), "")  # v2: the one "" tree
    truth = membership[key]
    if not isinstance(answer, str):
        return [f"expected a path such as '/a/b', got {answer!r}"]
    if answer == truth:
        return []
    if answer in membership.values():
        return [f"{answer!r} is this kernel's cgroup in another hierarchy, not the memory one"]
    return [f"{answer!r} is not the path after the second ':' on the memory line of /proc/self/cgroup"]


# -- 01-namespaces -----------------------------------------------------------------------------

def check_lab_hostname_host_network(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    ours, theirs = namespaces.identities("self"), namespaces.identities(answer.pid)
    if ours["uts"] == theirs["uts"]:
        problems.append("it shares this kernel's UTS namespace: its hostname would be the host's")
    elif inspect.hostname(answer.pid) != "lab":
        problems.append(f"its hostname is {inspect.hostname(answer.pid)!r}, not 'lab'")
    if ours["net"] != theirs["net"]:
        problems.append("it has its own network namespace; the task wants the host's")
    return problems


def check_pid_and_mount_only(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    ours, theirs = namespaces.identities("self"), namespaces.identities(answer.pid)
    for kind in ("pid", "mnt"):
        if ours[kind] == theirs[kind]:
            problems.append(f"it shares this kernel's {kind} namespace; it needs its own")
    for kind in ("uts", "ipc", "net", "cgroup", "user"):
        if ours[kind] != theirs[kind]:
            problems.append(f"it has its own {kind} namespace; the task wants only pid and mnt")
    return problems


# -- 02-rootfs ---------------------------------------------------------------------------------

def _lower_dir(pid: int) -> str | None:
    """The image under the container's overlay root, read from its mountinfo."""
    for mount in inspect.mounts(pid):
        if mount.mount_point == "/" and mount.fstype == "overlay":
            options = dict(o.split("=", 1) for o in mount.super_options.split(",") if "=" in o)
            return options.get("lowerdir")
    return None


def check_motd(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    inside, deadline = None, time.monotonic() + 3  # a container just started may not have written it yet
    while time.monotonic() < deadline and (inside or "").strip() != "hello":
        try:
            with open(f"/proc/{answer.pid}/root/etc/motd") as f:  # the file as the container sees it
                inside = f.read()
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    if inside is None:
        return ["/etc/motd does not exist in the container"]
    if inside.strip() != "hello":
        problems.append(f"/etc/motd in the container says {inside.strip()!r}, not 'hello'")
    lower = _lower_dir(answer.pid)
    if lower is None:
        problems.append("its root is not an overlay: writes would change the image itself")
    elif os.path.exists(os.path.join(lower, "etc/motd")):
        problems.append(f"the image ({lower}) has an etc/motd: it was changed, the upper dir should hold it")
    return problems


def check_no_escape(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    if namespaces.ns_inode(answer.pid, "mnt") == namespaces.ns_inode("self", "mnt"):
        return ["it shares this kernel's mount namespace"]
    if inspect.mount_namespace_root_is_host(answer.pid):
        problems.append("the root of its mount namespace is still the host's /: a chroot can be climbed out of "
                        "(switch the root with pivot_root and detach the old one)")
    return problems


# -- 03-cgroups --------------------------------------------------------------------------------

def check_memory_48m_lab(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    stats = inspect.cgroup_stats(inspect.cgroup_of(answer.pid))
    if stats["memory_limit"] != 48 << 20:
        seen = "none" if stats["memory_limit"] is None else f"{stats['memory_limit'] / 2**20:g} MiB"
        problems.append(f"its cgroup's memory limit is {seen}, not 48 MiB")
    if inspect.hostname(answer.pid) != "lab":
        problems.append(f"its hostname is {inspect.hostname(answer.pid)!r}, not 'lab'")
    return problems


def check_half_cpu_20_pids(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    stats = inspect.cgroup_stats(inspect.cgroup_of(answer.pid))
    if stats["cpu_limit"] != 0.5:
        problems.append(f"its CPU quota is {stats['cpu_limit'] or 'unlimited'} CPUs, not 0.5")
    if stats["pids_limit"] != 20:
        problems.append(f"its pids limit is {stats['pids_limit'] or 'unlimited'}, not 20")
    return problems


# -- 04-network ---------------------------------------------------------------------------------

def _lab_address(pid: int) -> str | None:
    from .. import network
    for entry in inspect.network(pid)["addresses"]:
        address = entry["address"].split("/")[0]
        if entry["link"] != "lo" and ipaddress.ip_address(address) in network.SUBNET:
            return address
    return None


def check_reachable_on_bridge(answer) -> list[str]:
    from .. import network
    problems = _running(answer)
    if problems:
        return problems
    address = _lab_address(answer.pid)
    if address is None:
        return [f"it has no address on the lab subnet {network.SUBNET} (is it on the bridge?)"]
    gateway = str(next(network.SUBNET.hosts()))
    if not any(r["dst"] == "0.0.0.0/0" and r["via"] == gateway for r in inspect.network(answer.pid)["routes"]):
        problems.append(f"it has no default route via the bridge ({gateway})")
    # A real ping, from a probe container on the same bridge.
    from ..rootfs import DEFAULT_ROOTFS
    from ..spec import ContainerSpec
    with Container.start(ContainerSpec(DEFAULT_ROOTFS, ["sleep", "30"], network="bridge")) as probe:
        if probe.exec(["ping", "-c", "1", "-W", "2", address]).returncode != 0:
            problems.append(f"a container on the bridge cannot ping it at {address}")
    return problems


def check_published_8081(answer) -> list[str]:
    import urllib.request

    from .. import network
    problems = _running(answer)
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


# -- 05-security --------------------------------------------------------------------------------

def check_only_net_raw(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    bounding = set(inspect.process(answer.pid).capabilities["bounding"])
    if "CAP_NET_RAW" not in bounding:
        problems.append("CAP_NET_RAW is missing from its bounding set: ping would fail")
    extra = sorted(bounding - {"CAP_NET_RAW"})
    if extra:
        problems.append(f"its bounding set also holds {', '.join(extra)}")
    return problems


def check_guarded_user(answer) -> list[str]:
    problems = _running(answer)
    if problems:
        return problems
    status = inspect.status(answer.pid)
    if status.get("NoNewPrivs") != "1":
        problems.append("no_new_privs is off (NoNewPrivs: 0 in /proc/PID/status)")
    if status.get("Seccomp") != "2":
        problems.append("it has no seccomp filter (Seccomp: 0)")
    uid = status["Uid"].split()[0]
    if uid != "1000":
        problems.append(f"it runs as uid {uid}, not 1000")
    return problems


# -- 06-putting-it-together ---------------------------------------------------------------------

def check_pod(answer) -> list[str]:
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return [f"expected a pair (pod_a, pod_b), got {type(answer).__name__}"]
    problems = _running(answer[0]) + _running(answer[1])
    if problems:
        return problems
    a, b = answer
    shared = set(namespaces.shared_with(b.pid, a.pid))
    if "net" not in shared:
        problems.append("pod_b has a network namespace of its own, not pod_a's")
    for kind in ("pid", "mnt", "uts", "ipc"):
        if kind in shared:
            problems.append(f"pod_b also shares pod_a's {kind} namespace; only net was asked for")
    return problems


EXERCISES = [
    Exercise("welcome-pid-namespace", "Set `my_pid_ns` to the inode number of this kernel's PID namespace.",
             "readlink /proc/self/ns/pid (os.readlink) and take the number between the brackets", check_pid_namespace),
    Exercise("welcome-memory-cgroup", "Set `my_memory_cgroup` to this kernel's cgroup path for the memory "
             "controller.", "read /proc/self/cgroup: the memory line on v1, the line starting 0:: on v2; "
             "the path is the part after the second ':'", check_memory_cgroup),
    Exercise("namespaces-lab-hostname", "Start a container `box` whose hostname is `lab` but which shares the "
             "host's network namespace.", "ContainerSpec(..., hostname=..., namespaces=...) without 'net'",
             check_lab_hostname_host_network),
    Exercise("namespaces-pid-mnt-only", "Start a namespace-only process `proc` (no rootfs) with its own PID "
             "and mount namespaces and every other namespace shared.",
             "ContainerSpec(None, [...], namespaces=('pid', 'mnt'))", check_pid_and_mount_only),
    Exercise("rootfs-motd", "Start a container `box` in which /etc/motd says hello, without changing the image.",
             "the command can write the file itself: sh -c 'echo hello > /etc/motd; sleep 600'", check_motd),
    Exercise("rootfs-no-escape", "Start a container `box` from which the chroot escape cannot reach the host.",
             "root_switch='pivot_root' (the default) detaches the host's tree", check_no_escape),
    Exercise("cgroups-lab-48m", "Start a container `box` whose hostname is `lab` and whose memory limit is 48M.",
             "ContainerSpec(..., hostname=..., memory=...)", check_memory_48m_lab),
    Exercise("cgroups-half-cpu-20-pids", "Start a container `box` limited to half a CPU and at most 20 "
             "processes.", "cpus and pids in ContainerSpec", check_half_cpu_20_pids),
    Exercise("network-reachable", "Start a container `b` that other containers on the lab bridge can reach.",
             "ContainerSpec(..., network='bridge')", check_reachable_on_bridge),
    Exercise("network-publish-8081", "Serve the text `hi` on port 80 of a container `web`, published on the "
             "host's 127.0.0.1:8081.", "busybox httpd -f -p 80 -h DIR; publish=[('127.0.0.1', 8081, 80, 'tcp')]",
             check_published_8081),
    Exercise("security-only-net-raw", "Start a container `pinger` whose only capability is CAP_NET_RAW.",
             "Security(capabilities=[...]) in the spec", check_only_net_raw),
    Exercise("security-guarded-user", "Start a container `guarded` running as uid 1000 with no_new_privs and "
             "seccomp on.", "user='1000' with the default Security", check_guarded_user),
    Exercise("pod-shared-network", "Start `pod_a`, then `pod_b` sharing only pod_a's network namespace.",
             "ContainerSpec(..., join={'net': pod_a.pid})", check_pod),
]
