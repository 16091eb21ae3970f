"""Solutions to the lab's exercises. Try first: the notebooks never import this by themselves.

    from minicontainer.lab import solutions
    solutions.show("cgroups-lab-48m")     # print the solution's code
    box = solutions.solve("cgroups-lab-48m")
"""

from __future__ import annotations

import inspect as source_code
import os

from .. import namespaces, rootfs
from ..container import Container
from ..spec import ContainerSpec

IMAGE = rootfs.DEFAULT_ROOTFS


def welcome_pid_namespace():
    link = os.readlink("/proc/self/ns/pid")          # "pid:[4026531836]"
    return int(link.split("[")[1].rstrip("]"))


def welcome_memory_cgroup():
    lines = [line.split(":", 2) for line in open("/proc/self/cgroup").read().splitlines()]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):      # cgroup v1: the memory hierarchy's line
            return path
    return next(path for _, controllers, path in lines if controllers == "")  # v2: the one tree


def namespaces_lab_hostname():
    kinds = tuple(k for k in namespaces.DEFAULT_KINDS if k != "net")
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], hostname="lab", namespaces=kinds))


def namespaces_pid_mnt_only():
    return Container.start(ContainerSpec(None, ["sleep", "600"], namespaces=("pid", "mnt")))


def rootfs_motd():
    return Container.start(ContainerSpec(IMAGE, ["sh", "-c", "echo hello > /etc/motd; exec sleep 600"]))


def rootfs_no_escape():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], root_switch="pivot_root"))


def cgroups_lab_48m():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], hostname="lab", memory="48M"))


def cgroups_half_cpu_20_pids():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], cpus=0.5, pids=20))


def network_reachable():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], network="bridge"))


def network_publish_8081():
    serve = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"
    return Container.start(ContainerSpec(IMAGE, ["sh", "-c", serve], network="bridge",
                                         publish=[("127.0.0.1", 8081, 80, "tcp")]))


def security_only_net_raw():
    from ..security import Security
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], security=Security(capabilities=["net_raw"])))


def security_guarded_user():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], user="1000"))


def pod_shared_network():
    pod_a = Container.start(ContainerSpec(IMAGE, ["sleep", "600"]))
    pod_b = Container.start(ContainerSpec(IMAGE, ["sleep", "600"], join={"net": pod_a.pid}))
    return pod_a, pod_b


SOLVERS = {
    "welcome-pid-namespace": welcome_pid_namespace,
    "welcome-memory-cgroup": welcome_memory_cgroup,
    "namespaces-lab-hostname": namespaces_lab_hostname,
    "namespaces-pid-mnt-only": namespaces_pid_mnt_only,
    "rootfs-motd": rootfs_motd,
    "rootfs-no-escape": rootfs_no_escape,
    "cgroups-lab-48m": cgroups_lab_48m,
    "cgroups-half-cpu-20-pids": cgroups_half_cpu_20_pids,
    "network-reachable": network_reachable,
    "network-publish-8081": network_publish_8081,
    "security-only-net-raw": security_only_net_raw,
    "security-guarded-user": security_guarded_user,
    "pod-shared-network": pod_shared_network,
}


def solve(key: str):
    """Run the solution: the answer the checker expects (a value, or a running container)."""
    return SOLVERS[key]()


def show(key: str) -> None:
    """Print the solution's code."""
    print(source_code.getsource(SOLVERS[key]))
