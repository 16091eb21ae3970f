"""The step list: complete, unique per container, in an order the kernel allows, and documented."""

from __future__ import annotations

import pytest

from minicontainer.process import steps
from minicontainer.security import Security
from minicontainer.spec import ContainerSpec

IMAGE = "/nonexistent-image"  # plans are made from the spec alone: no kernel, no files


def spec(rootfs=IMAGE, **fields) -> ContainerSpec:
    return ContainerSpec(rootfs, ["sh"], rootless=fields.pop("rootless", False), **fields)  # as root would run it


SPECS = {
    "default": spec(),
    "limits and a bridge": spec(memory="64M", cpus=0.5, pids=10, network="bridge"),
    "user namespace": spec(namespaces=("user", "mnt", "pid", "uts", "ipc", "net")),
    "no rootfs": spec(None),
    "chroot, read-only, tty": spec(root_switch="chroot", read_only_root=True, tty=True),
    "everything off": spec(security=Security.off()),
    "rootless": spec(namespaces=("user", "mnt", "pid"), rootless=True, rootless_cgroup=False),
}


def names(spec) -> list[str]:
    return [s.name for s in steps.plan(spec)]


@pytest.mark.parametrize("kind", SPECS)
def test_a_plan_has_unique_names_and_ends_in_exec(kind):
    plan = names(SPECS[kind])
    assert len(plan) == len(set(plan)) and plan[-1] == "exec"


@pytest.mark.parametrize("kind", SPECS)
def test_every_prerequisite_in_a_plan_comes_before_the_step(kind):
    plan = names(SPECS[kind])
    for step in steps.plan(SPECS[kind]):
        for needed in step.after:
            if needed in plan:
                assert plan.index(needed) < plan.index(step.name), (step.name, needed)


def test_every_prerequisite_names_a_step():
    known = {s.name for s in steps.STEPS}
    assert all(needed in known for s in steps.STEPS for needed in s.after)


def test_the_order_a_container_needs():
    plan = names(SPECS["default"])
    order = ["cgroup", "devices", "pid namespace", "fork PID 1", "join cgroup", "unshare mnt", "unshare uts",
             "unshare cgroup", "mounts private", "hostname", "overlay", "proc", "dev", "sys", "mask paths",
             "pivot_root", "bounding set", "seccomp", "capabilities", "no_new_privs", "close fds", "exec"]
    assert [n for n in plan if n in order] == order
    assert "limits" not in plan and "network" not in plan  # not asked for


def test_with_a_user_namespace_the_intermediate_makes_pid_1():
    plan = steps.plan(SPECS["user namespace"])
    by_name = {s.name: s.process for s in plan}
    assert by_name["user namespace"] == by_name["fork PID 1"] == by_name["join cgroup"] == steps.INTERMEDIATE
    assert by_name["id maps"] == steps.HELPER
    assert names(SPECS["user namespace"]).index("join cgroup") < names(SPECS["user namespace"]).index(
        "user namespace")  # while it may still write to cgroup.procs


def test_without_a_rootfs_there_is_no_mount_of_an_image():
    plan = names(SPECS["no rootfs"])
    assert "fresh proc" in plan and not {"overlay", "pivot_root", "dev"} & set(plan)


def test_switches_pick_their_steps():
    plan = names(SPECS["chroot, read-only, tty"])
    assert {"chroot", "read-only root", "console", "terminal"} <= set(plan) and "pivot_root" not in plan
    off = names(SPECS["everything off"])
    assert not {"bounding set", "seccomp", "no_new_privs", "close fds", "devices", "mask paths"} & set(off)
    assert "capabilities" in off  # inheritable and ambient are emptied even then


def test_exec_gets_the_defences_in_the_init_order():
    plan = names(spec(user="1000", security=Security(apparmor_profile="docker-default")))
    assert [n for n in plan if n in steps.PROCESS_DEFENCES] == list(steps.PROCESS_DEFENCES)


def test_rootless_has_no_cgroup_steps():
    plan = names(SPECS["rootless"])
    assert not {"cgroup", "limits", "devices", "join cgroup"} & set(plan) and "user namespace" in plan


def test_rootless_in_a_delegated_cgroup_has_its_cgroup_and_limits_but_no_device_program():
    plan = names(spec(namespaces=("user", "mnt", "pid"), rootless=True, rootless_cgroup=True, memory="32M"))
    assert {"cgroup", "limits", "join cgroup"} <= set(plan) and "devices" not in plan


def test_rootless_means_a_user_namespace_even_where_none_was_asked_for():
    assert "user" in spec(namespaces=("mnt", "pid"), rootless=True, rootless_cgroup=False).namespaces
    assert "user" not in spec(namespaces=("mnt", "pid")).namespaces  # root's own: none added


def test_the_table_lists_every_step():
    table = steps.table()
    assert table.count("\n") == len(steps.STEPS) + 1
    for step in steps.STEPS:
        assert f"| {step.name} | {step.process} | {step.when} |" in table
