"""The runtime on arm64 (the lab VM of an Apple Silicon laptop): an arm64 Debian 12 guest under qemu (TCG here).

What differs on arm64 is what the runtime writes by architecture: the system call numbers it calls through
syscall(2) (pivot_root, bpf, keyctl, clone3, from kernel.SYSCALL_NUMBERS), glibc's thread-id slot that
clone_fork fills, the seccomp filter's architecture check and call numbers, the device cgroup's BPF program,
and C compiled statically on the machine (the init, the lessons' attack payloads). tests/vm/ builds an arm64
Debian root from Debian's packages (harness.DebianRootGuest: about a minute, nothing of arm64 runs on this
machine, cached until its recipe changes) and boots it with the checkout shared at its path; the guest's own
gcc, libc and busybox build everything there. Every inner test must pass: one skipped there counts as failed.

CI runs the arm64-specific set below, about 4 minutes with the boot. MINICONTAINER_GUEST_FULL=1 runs the
whole set by hand instead (about 20 minutes on 2 cores): the unit layer, the container, stage, security,
escape, kernel and cgroup tests, and every lesson under nbval. docs/tested-on.md has its last result.
"""

from __future__ import annotations

import pytest
from conftest import REPO
from test_notebooks import ids as LESSONS
from vm import harness

CI_SET = [
    "tests/unit",  # the policy tables, the seccomp program's layout and the device program
    # syscall(2) by number: pivot_root's error path and clone3 with glibc's thread-id slot.
    "tests/test_kernel.py::test_pivot_root_error_names_call_and_cause",
    "tests/test_kernel.py::test_a_clone3_child_is_born_in_its_cgroup_and_knows_its_own_thread_id",
    # Containers start (clone3 from the shared helper, pivot_root, the seccomp filter on) and pass back what ran.
    "tests/test_container.py::test_hostname_is_isolated",
    "tests/test_container.py::test_exit_status_and_env_pass_through",
    "tests/test_container.py::test_pid1_is_born_in_its_cgroup_when_one_v2_directory_holds_it_and_no_one_watches",
    # The init as PID 1: a static binary built there.
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
    # Lessons as a learner on a Mac runs them: namespaces and mounts; system calls and the filter.
    "tests/test_notebooks.py::test_nbval[01-namespaces]",
    "tests/test_notebooks.py::test_nbval[05-security]",
]
FULL_SET = [
    "tests/unit", "tests/test_container.py", "tests/test_stage.py", "tests/test_security.py",
    "tests/test_escapes.py", "tests/test_kernel.py", "tests/test_cgroups.py", "tests/test_claims.py",
    *[f"tests/test_notebooks.py::test_nbval[{lesson}]" for lesson in LESSONS],
    # Python 3.11 there: the os.unshare branch (3.12+) has nothing to run on, and would only skip.
    *[f"--deselect=tests/test_kernel.py::{test}[{branch}]" for branch in ("ctypes", "os")
      for test in ("test_unshare_uts_on_each_branch", "test_setns_into_container_on_each_branch")],
]

VM_TIMEOUT = 2 * 3600 if harness.FULL else 900  # the whole VM, boot included


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(VM_TIMEOUT + harness.ARM64.build_timeout + 300)  # + building the root when its recipe changed
def test_the_runtime_on_arm64():
    harness.run_set(harness.ARM64, FULL_SET if harness.FULL else CI_SET, REPO, VM_TIMEOUT, "arm64", "aarch64",
                    "6.1.")
