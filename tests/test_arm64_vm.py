"""The runtime on arm64: the tests of what differs there, inside an arm64 Debian 12 guest under qemu (TCG).

The runtime writes architecture-specific things: system call numbers it calls through syscall(2)
(pivot_root, bpf, keyctl, clone3), glibc's thread-id slot that clone_fork fills, the seccomp filter's
architecture check and call numbers, the device cgroup's BPF program, and C compiled statically on the
machine (the init, the lessons' payloads). tests/vm/ builds an arm64 Debian root from Debian's packages
once (cached, rebuilt when its recipe changes: see harness.DebianRootGuest) and boots it with the checkout
shared at its path; everything below builds there from the guest's own arm64 gcc, libc and busybox. Every
inner test must pass: one skipped there counts as a failure here.

MINICONTAINER_ARM64_FULL=1 runs the wider set by hand instead (hours under TCG): the unit layer, the
container, stage, security, escape, kernel and cgroup tests, and every lesson under nbval.
"""

from __future__ import annotations

import os

import pytest
from conftest import REPO
from test_notebooks import ids as LESSONS
from vm import harness

# What runs inside on every CI run, chosen for the arm64-specific code it drives; about 12 minutes of
# guest time with the boot (Python there is some 20x slower than here).
INNER = [
    "tests/unit",  # the policy tables, the seccomp program's layout and the device program, compiled here
    # syscall(2) by number: pivot_root's error path and clone3 with glibc's thread-id slot.
    "tests/test_kernel.py::test_pivot_root_error_names_call_and_cause",
    "tests/test_kernel.py::test_a_clone3_child_is_born_in_its_cgroup_and_knows_its_own_thread_id",
    # Containers start (clone3 from the shared helper, pivot_root, the seccomp filter on) and pass back what ran.
    "tests/test_container.py::test_hostname_is_isolated",
    "tests/test_container.py::test_exit_status_and_env_pass_through",
    "tests/test_container.py::test_pid1_is_born_in_its_cgroup_when_one_v2_directory_holds_it_and_no_one_watches",
    # The init as PID 1: a static binary built here.
    "tests/test_init.py::test_init_is_pid_1_and_the_command_pid_2[init]",
    # The seccomp filter checks arm64's audit architecture and numbers: ordinary programs run, an added call
    # is allowed; the device cgroup's BPF program (bpf(2) by number) refuses a disk.
    "tests/test_security.py::test_the_allow_list_runs_ordinary_programs",
    "tests/test_security.py::test_allow_syscall_adds_a_call",
    "tests/test_security.py::test_the_v2_device_program_refuses_a_disk_and_goes_with_its_cgroup",
    # Escapes made of raw system calls from the static payload, each contained, and each getting through with
    # its defence off (so the filter really matches arm64's numbers, and the payload really makes the call).
    *[f"tests/test_escapes.py::{test}[{attack}]"
      for attack in ("keyctl", "clone3-userns", "io-uring", "chroot-escape", "mknod-disk")
      for test in ("test_contained_with_the_defaults", "test_gets_through_without_its_defence")],
]
FULL_SET = [
    "tests/unit", "tests/test_container.py", "tests/test_stage.py", "tests/test_security.py",
    "tests/test_escapes.py", "tests/test_kernel.py", "tests/test_cgroups.py",
    *[f"tests/test_notebooks.py::test_nbval[{lesson}]" for lesson in LESSONS],
]
FULL = os.environ.get("MINICONTAINER_ARM64_FULL") == "1"
VM_TIMEOUT = 4 * 3600 if FULL else 1080  # the whole VM, boot included
# The inner suite's per-test limit: a container start alone takes seconds here.
INNER_TEST_TIMEOUT = 600


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(VM_TIMEOUT + harness.ARM64.build_timeout + 300)  # + building the root on a first run
def test_the_runtime_on_arm64():
    try:
        result = harness.run_pytest(["-p", "no:cacheprovider", "-q", "-rfEs", f"--timeout={INNER_TEST_TIMEOUT}",
                                     *(FULL_SET if FULL else INNER)],
                                    REPO, None, timeout=VM_TIMEOUT, guest=harness.ARM64)
    except harness.Unavailable as e:
        pytest.skip(str(e))
    failed = harness.verdict(result, "on arm64")
    if failed:
        pytest.fail(failed, pytrace=False)
