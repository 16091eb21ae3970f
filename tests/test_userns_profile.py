"""vagrant/userns-profile.sh: user namespaces for the lab's own interpreter, where AppArmor restricts them.

Ubuntu 23.10 and later refuse user namespaces to unprivileged programs that no AppArmor profile allows them
(an Ubuntu kernel patch). The script lets the rootless lesson make one without switching that off for the
whole host: a copy of the distribution's Python and a profile attached to that copy's path alone.

Loading a profile changes the kernel's policy, so this runs only inside a test VM (the Debian 13 guest:
AppArmor on, its 4.1 parser). Debian's kernel has no such restriction, so what is proven here is that the
profile loads and attaches to the copy and to nothing else, that a rootless container starts under it, and
that the doctor sees it; that Ubuntu then lets the copy make user namespaces has not been run here.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO
from test_rootless import UNPRIVILEGED

from minicontainer import doctor

SCRIPT = os.path.join(REPO, "vagrant", "userns-profile.sh")
PROFILES = "/sys/kernel/security/apparmor/profiles"

pytestmark = pytest.mark.skipif(
    os.environ.get("MINICONTAINER_IN_TEST_VM") != "1" or not os.path.exists(PROFILES),
    reason="loads an AppArmor profile: only inside a test VM whose kernel runs AppArmor (the Debian 13 guest)")


def label(python: str) -> str:
    """The AppArmor label a process running this interpreter gets (the LSM's own file where LSMs stack)."""
    read = "import os; p = '/proc/self/attr/apparmor/current'; " \
           "print(open(p if os.path.exists(p) else '/proc/self/attr/current').read().strip())"
    return subprocess.run([python, "-c", read], capture_output=True, text=True, check=True).stdout.strip()


def loaded() -> list[str]:
    with open(PROFILES) as f:
        return [line.strip() for line in f if line.startswith("minicontainer-userns ")]


@pytest.fixture
def profile():
    for _ in range(2):  # provisioning runs again on every `vagrant provision`: the second run must hold too
        out = subprocess.run([SCRIPT, "--always"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    try:
        yield
    finally:
        out = subprocess.run([SCRIPT, "--remove"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert not loaded() and not os.path.exists(doctor.USERNS_PYTHON)


def test_the_profile_attaches_to_the_labs_copy_of_python_and_to_nothing_else(profile):
    assert loaded() == ["minicontainer-userns (unconfined)"]
    assert label(doctor.USERNS_PYTHON) == "minicontainer-userns (unconfined)"
    # The distribution's interpreter, which every other Python program runs, stays outside it.
    assert label("/usr/bin/python3") == "unconfined"
    assert doctor.unprivileged_python() == doctor.USERNS_PYTHON


def test_a_rootless_container_starts_under_the_profile(profile, image):
    out = subprocess.run(UNPRIVILEGED + ["env", f"PYTHONPATH={REPO}", doctor.USERNS_PYTHON, "-m", "minicontainer.cli",
                                         "run", "--rootless", image, "--", "sh", "-c", "id -u; cat /proc/self/uid_map"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    uid, uid_map = out.stdout.strip().splitlines()
    assert uid == "0" and uid_map.split() == ["0", "20000", "1"]


def test_the_doctor_sees_the_profile_and_a_stale_copy(profile):
    assert doctor.check_userns_profile().ok
    # After an upgrade of Python the copy no longer matches the stdlib it loads: the doctor says so.
    with open(doctor.USERNS_PYTHON, "ab") as f:
        f.write(b"\0")
    check = doctor.check_userns_profile()
    assert not check.ok and "older than /usr/bin/python3" in check.detail and "userns-profile.sh" in check.fix


def test_without_the_profile_the_doctor_says_what_to_run():
    assert not loaded()
    check = doctor.check_userns_profile()
    assert not check.ok and "not loaded" in check.detail and "userns-profile.sh" in check.fix
