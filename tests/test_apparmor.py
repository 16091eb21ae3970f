"""process.apparmorProfile: AppArmor confines the container's command, as runc does it (attr/exec before execve).

Podman and Docker name a profile wherever AppArmor runs (Ubuntu, the lab VM's distribution; Debian 13 with the
apparmor package), so without this no engine could start a container through minicontainer there. Loading a
profile changes the kernel's policy, so these run only inside a test VM whose kernel runs AppArmor (the Debian
13 guest); elsewhere the refusal is tested (test_oci.py).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from minicontainer.container import run
from minicontainer.errors import LabError
from minicontainer.security import Security
from minicontainer.spec import ContainerSpec

PROFILE = "minicontainer-test"
# Everything allowed but reading one file: enough to tell confined from unconfined. attach_disconnected: the
# container's paths lie outside the namespace AppArmor first saw (after pivot_root).
POLICY = f"""
abi <abi/4.0>,
profile {PROFILE} flags=(attach_disconnected,mediate_deleted) {{
  file,
  capability,
  network,
  mount,
  umount,
  pivot_root,
  signal,
  ptrace,
  unix,
  deny /etc/hostname r,
}}
"""

pytestmark = pytest.mark.skipif(
    os.environ.get("MINICONTAINER_IN_TEST_VM") != "1" or not os.path.exists("/sys/kernel/security/apparmor"),
    reason="loads an AppArmor profile: only inside a test VM whose kernel runs AppArmor (the Debian 13 guest)")


@pytest.fixture
def profile(tmp_path):
    policy = tmp_path / PROFILE
    policy.write_text(POLICY)
    out = subprocess.run(["apparmor_parser", "-r", str(policy)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    try:
        yield PROFILE
    finally:
        subprocess.run(["apparmor_parser", "-R", str(policy)], capture_output=True, timeout=120)


def confined(image: str, profile: str) -> tuple[str, str]:
    """(the command's AppArmor label, what reading /etc/hostname said) in a container under the profile."""
    result = run(ContainerSpec(image, ["sh", "-c", "cat /proc/self/attr/current; echo; cat /etc/hostname 2>&1"],
                               security=Security(apparmor_profile=profile)))
    assert result.code in (0, 1), result.stderr
    label, said = result.stdout.split("\n", 1)
    return label.strip(), said.strip()


def test_the_command_runs_confined_in_the_profile(profile, image):
    label, said = confined(image, profile)
    assert label == f"{PROFILE} (enforce)"
    assert "Permission denied" in said
    # Without it: the same command unconfined reads the file.
    label, said = confined(image, "")
    assert label == "unconfined" and "Permission denied" not in said


def test_a_profile_that_is_not_loaded_is_a_clear_error(image):
    with pytest.raises(LabError) as caught:
        run(ContainerSpec(image, ["true"], security=Security(apparmor_profile="minicontainer-no-such-profile")))
    assert "no profile named 'minicontainer-no-such-profile' loaded" in str(caught.value)
