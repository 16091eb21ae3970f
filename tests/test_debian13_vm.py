"""The lab on a current distribution: a Debian 13 guest (kernel 6.12, glibc 2.41, Python 3.13, Podman 5,
libseccomp 2.6, AppArmor on) under qemu, on every CI run.

The cgroup v2 VM (test_cgroup_v2_vm.py) boots Debian 12's kernel over this machine's own Debian 12; this guest
is today's generation, built from Debian 13's packages by tests/vm/ (harness.DebianRootGuest, about a minute,
cached until its recipe changes) and booted with the checkout shared at its path. It is set up as the cgroup
v2 VM is (pure v2, / shared, the tests in a delegated leaf), with busybox as init: systemd 257 as PID 1, the
lab service and provision.sh run in the libvirt acceptance box (vagrant/acceptance.sh), by hand. Every inner
test must pass: one skipped there counts as failed.

CI runs the set below. MINICONTAINER_GUEST_FULL=1 runs the whole set by hand instead: the unit layer, the
container, stage, security, escape, kernel, cgroup, rootless, engine and OCI lifecycle tests, the AppArmor
profile's, and every lesson under nbval. docs/tested-on.md has its last result.
"""

from __future__ import annotations

import pytest
from conftest import REPO
from test_notebooks import ids as LESSONS
from vm import harness

# Linux 6.12 as Debian builds it refuses TIOCSTI to everyone (dev.tty.legacy_tiocsti=0): those two tests of
# the filter's TIOCSTI rule have nothing to show here, and would only skip.
NOT_HERE = [f"--deselect=tests/test_security.py::test_the_tiocsti_rule_needs_its_32_bit_mask[{mask}]"
            for mask in ("all 64 bits compared", "32-bit mask")]
CI_SET = [
    "tests/unit",
    # The lab's AppArmor profile for the rootless lesson, loaded into a kernel that runs AppArmor.
    "tests/test_userns_profile.py",
    "tests/test_apparmor.py",  # process.apparmorProfile, as Podman and Docker set it wherever AppArmor runs
    # Kernel 6.12's answers to every call the runtime makes, and Python 3.13's os.unshare/os.setns branch.
    "tests/test_kernel.py",
    # Containers, limits and the defences on this kernel and libseccomp.
    "tests/test_container.py",
    "tests/test_security.py",
    "tests/test_escapes.py",
    # Podman 5 and containerd 1.7 driving the runtime (libseccomp 2.6 loading Podman's own profile).
    *[f"tests/test_engines.py::{name}" for name in (
        "test_podman_run_rm_passes_output_and_exit_code",
        "test_podman_memory_limit_and_oom_kill_as_under_runc",
        "test_containerd_runs_minicontainer_through_its_runc_shim_as_it_runs_runc")],
    # Lesson 08: Podman 5 (with its AppArmor profile) and containerd drive the runtime, as on the lab VM.
    "tests/test_notebooks.py::test_nbval[08-real-stack]",
    *NOT_HERE,
]
FULL_SET = [
    "tests/unit", "tests/test_userns_profile.py", "tests/test_apparmor.py", "tests/test_container.py",
    "tests/test_stage.py", "tests/test_security.py", "tests/test_escapes.py", "tests/test_kernel.py",
    "tests/test_cgroups.py", "tests/test_claims.py", "tests/test_rootless.py", "tests/test_engines.py",
    "tests/test_oci_lifecycle.py",
    *[f"tests/test_notebooks.py::test_nbval[{lesson}]" for lesson in LESSONS],
    *NOT_HERE,
]

VM_TIMEOUT = 2 * 3600 if harness.FULL else 1200  # the whole VM, boot included


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(VM_TIMEOUT + harness.TRIXIE.build_timeout + 300)  # + building the root when its recipe changed
def test_the_lab_on_debian_13():
    harness.run_set(harness.TRIXIE, FULL_SET if harness.FULL else CI_SET, REPO, VM_TIMEOUT, "Debian 13", "x86_64",
                    "6.12.")
