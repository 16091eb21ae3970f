"""Every exercise checker, three ways: nothing done, a wrong answer, the solution."""

from __future__ import annotations

import pytest

from minicontainer import namespaces
from minicontainer.container import Container
from minicontainer.lab import all_exercises, check, solutions
from minicontainer.rootfs import DEFAULT_ROOTFS as IMAGE
from minicontainer.security import Security
from minicontainer.spec import ContainerSpec


def start(**spec) -> Container:
    rootfs = spec.pop("rootfs", IMAGE)
    return Container.start(ContainerSpec(rootfs, spec.pop("command", ["sleep", "600"]), **spec))


# A wrong answer for each exercise, and words the checker must use to say what is wrong.
WRONG = {
    "welcome-pid-namespace": (lambda: namespaces.ns_inode("self", "net"), "net namespace"),
    "welcome-memory-cgroup": (lambda: "/no/such/group", "is not the path"),
    "namespaces-lab-hostname": (lambda: start(hostname="box"), "not 'lab'"),
    "namespaces-pid-mnt-only": (lambda: start(rootfs=None, namespaces=("pid", "mnt", "uts")), "own uts namespace"),
    "rootfs-motd": (lambda: start(command=["sh", "-c", "echo bye > /etc/motd; exec sleep 600"]), "says 'bye'"),
    "rootfs-no-escape": (lambda: start(root_switch="chroot"), "still the host's /"),
    "cgroups-lab-48m": (lambda: start(hostname="lab", memory="64M"), "64 MiB"),
    "cgroups-half-cpu-20-pids": (lambda: start(cpus=0.5, pids=30), "pids limit is 30"),
    "network-reachable": (lambda: start(), "no address on the lab subnet"),
    "network-publish-8081": (lambda: start(network="bridge", publish=[("127.0.0.1", 8082, 80, "tcp")],
                                           command=["sh", "-c", "mkdir /w; echo hi > /w/index.html; "
                                                                "exec httpd -f -p 80 -h /w"]),
                             "no firewall rule forwards 127.0.0.1:8081"),
    "security-only-net-raw": (lambda: start(), "also holds"),
    "security-guarded-user": (lambda: start(security=Security(no_new_privs=False), user="1000"), "no_new_privs is off"),
    "pod-shared-network": (lambda: (start(), start()), "network namespace of its own"),
}


def test_every_exercise_has_a_solution_and_a_wrong_answer():
    assert set(all_exercises()) == set(solutions.SOLVERS) == set(WRONG)


def stopped(answer) -> None:
    for container in answer if isinstance(answer, tuple) else [answer]:
        if isinstance(container, Container):
            container.stop(grace=0.5)


@pytest.mark.parametrize("key", sorted(WRONG))
def test_checker_three_ways(image, key):
    nothing = check(key, None)
    assert not nothing.ok and nothing.hint and "nothing to check yet" in str(nothing)

    make_wrong, words = WRONG[key]
    wrong = make_wrong()
    try:
        result = check(key, wrong)
        assert not result.ok
        assert any(words in problem for problem in result.problems), result.problems
    finally:
        stopped(wrong)

    right = solutions.solve(key)
    try:
        result = check(key, right)
        assert result.ok, result.problems
    finally:
        stopped(right)


def test_a_finished_container_is_not_accepted(image):
    box = start(command=["true"], hostname="lab", memory="48M")
    box.wait(10)
    result = check("cgroups-lab-48m", box)
    assert not result.ok and "not running" in result.problems[0]


def test_a_wrong_type_gets_advice_not_a_traceback():
    result = check("cgroups-lab-48m", "a string")
    assert not result.ok and "expected a running Container" in result.problems[0]
