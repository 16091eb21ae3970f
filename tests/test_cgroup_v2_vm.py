"""cgroup v2 for real on every run: the cgroup tests and every lesson again, inside a VM that has cgroup v2 only.

A v1 or hybrid host never runs the runtime's v2 code. tests/vm/ boots Debian's kernel under qemu
over a read-only view of this machine's / (same Python, venv and checkout), set up as a learner's
systemd machine is: / rshared, the tests in the leaf lab.service/main, every controller available
to lab.service but none enabled in it, so the runtime must delegate them itself. Every inner test
must pass: one skipped there counts as a failure here.
"""

from __future__ import annotations

import os
import sys

import pytest
from conftest import REPO
from vm import harness

from minicontainer.lab import payloads

# What runs inside, chosen for the cgroup code it drives; the VM runs Python about 15x slower.
INNER = [
    "tests/test_cgroups.py",    # the interface itself: create and delegate, limits, stats, freeze, kill, rmdir
    "tests/test_container.py",  # limits enforced (OOM, pids, CPU), exec joins the cgroup, kill -9 cleans up
    "tests/test_rootless.py",   # an unprivileged user's container, and its limits in a cgroup delegated to it
    # A class host's learner, in a delegated cgroup: the lessons the host cannot run that way (it delegates none).
    *[f"tests/test_learner_lessons.py::test_every_cell_runs_for_a_learner_without_root[{lesson}]"
      for lesson in ("00-welcome", "03-cgroups", "06-putting-it-together", "07-claims")],
    # Two learners: cgroups delegated to each (writes refused across, pids.max, cpu.max), and the attacks that
    # only a delegated cgroup's limits stop, run by one (the rest of the file runs on the host).
    *[f"tests/test_learner_isolation.py::{test}" for test in (
        "test_a_cannot_write_into_bs_cgroup_nor_lift_its_own_limits",
        "test_as_fork_loop_stops_at_its_task_limit_and_b_still_forks",
        "test_as_cpu_burn_is_throttled_to_its_quota_and_b_is_not",
        "test_as_escape_attempts_are_contained[fork-bomb]", "test_as_escape_attempts_are_contained[memory-4x]")],
    # The CLI's cgroup paths: limits seen in cgroupfs, OOM exit 137, exec, doctor's mode, cleanup of a
    # dead helper's cgroup (the bad-input cases parse text only and stay out).
    "tests/test_cli.py::test_done_when_command",
    "tests/test_cli.py::test_exit_code_passes_through",
    "tests/test_cli.py::test_exec_and_ps",
    "tests/test_cli.py::test_doctor_explains_this_host",
    "tests/test_cli.py::test_cleanup_removes_what_a_killed_helper_left",
    # The checkers that read cgroupfs.
    "tests/test_exercises.py::test_checker_three_ways[welcome-memory-cgroup]",
    "tests/test_exercises.py::test_checker_three_ways[cgroups-lab-48m]",
    "tests/test_exercises.py::test_checker_three_ways[cgroups-join]",
    "tests/test_exercises.py::test_checker_three_ways[cgroups-memory-limit]",
    "tests/test_exercises.py::test_checker_three_ways[cgroups-oom-kills]",
    "tests/test_exercises.py::test_a_finished_container_is_not_accepted",
    # Every lesson, as a learner runs it on the lab's target: cgroup v2 alone, a shared /, the runtime
    # delegating controllers itself; the network over a dummy uplink (each lesson takes minutes here).
    *[f"tests/test_notebooks.py::test_nbval[{lesson}]" for lesson in (
        "00-welcome", "01-namespaces", "02-rootfs", "03-cgroups", "04-network", "05-security",
        "06-putting-it-together", "07-claims")],
    # The device cgroup's v2 form, a BPF program: refuses a host disk, in exec too, goes with its cgroup.
    "tests/test_security.py::test_the_v2_device_program_refuses_a_disk_and_goes_with_its_cgroup",
    "tests/test_security.py::test_a_new_node_of_a_host_device_in_the_container_cannot_be_opened",
    "tests/test_security.py::test_exec_is_in_the_device_cgroup_too",
    "tests/test_escapes.py::test_contained_with_the_defaults[mknod-disk]",
    "tests/test_escapes.py::test_gets_through_without_its_defence[mknod-disk]",
    # The staged container's cgroup steps under v2: the same end state as run; a dead caller leaves nothing.
    "tests/test_stage.py::test_a_stage_ends_in_the_state_run_makes",
    "tests/test_stage.py::test_a_kernel_restart_in_the_middle_of_a_stage_leaves_nothing",
    "tests/test_stage.py::test_a_created_container_that_is_never_started_leaves_nothing",
    # Real engines on cgroup v2, beside runc: Podman (exec -t, an OOM kill), containerd's shim, Docker (its
    # cpu.shares 0), the config's cgroup mount; lesson 08 and its hook. Not here: Podman's default network
    # (iptables extensions this VM's kernel has no modules for), and the pod test: Podman 4.3 with cgroupfs
    # attaches a deny-all device program to a pod's own cgroup on v2, so runc cannot even reopen /dev/null
    # in a pod there (minicontainer starts there: it binds the host's nodes where mknod is refused).
    *[f"tests/test_engines.py::{name}" for name in (
        "test_podman_run_rm_passes_output_and_exit_code",
        "test_podman_detached_exec_stop_and_rm_see_the_same_kernel_state_as_under_runc",
        "test_podman_memory_limit_and_oom_kill_as_under_runc",
        "test_podman_exec_t_gets_a_terminal_of_its_own_in_the_containers_devpts",
        "test_containerd_runs_minicontainer_through_its_runc_shim_as_it_runs_runc",
        "test_docker_run_with_runtime_minicontainer_as_with_runc")],
    "tests/test_oci_lifecycle.py::test_create_start_kill_delete_as_runc_does",
    "tests/test_oci_lifecycle.py::test_the_containers_own_cgroups_at_sys_fs_cgroup_as_runc_mounts_them",
    "tests/test_notebooks.py::test_nbval[08-real-stack]",
    "tests/test_exercises.py::test_checker_three_ways[engines-own-hook]",
]
VM_TIMEOUT = 2300  # seconds for the whole VM: about 30 minutes on 2 idle cores, 20 of them the lessons


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(VM_TIMEOUT + 300)  # + installing qemu and downloading the kernel on a first run
def test_cgroup_v2_in_a_vm(image):
    # The guest writes only to a tmpfs: build what it would otherwise build on every run.
    for source in sorted(os.listdir(payloads.SOURCES)):
        if source.endswith(".c"):
            payloads.build(source[:-2])
    try:
        result = harness.run_pytest(["-p", "no:cacheprovider", "-q", "-rfEs", *INNER], REPO, sys.executable,
                                    timeout=VM_TIMEOUT)
    except harness.Unavailable as e:
        pytest.skip(str(e))
    failed = harness.verdict(result, "under cgroup v2")
    if failed:
        pytest.fail(failed, pytrace=False)
