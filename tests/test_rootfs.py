"""Building the image, and mounts that must never reach the host even when / is shared."""

from __future__ import annotations

import os

from conftest import run_python

from minicontainer import rootfs


def test_build_makes_a_runnable_image(tmp_path):
    target = str(tmp_path / "image")
    rootfs.build_rootfs(target, quiet=True)
    assert rootfs.is_static_elf(os.path.join(target, "bin/busybox"))
    assert os.readlink(os.path.join(target, "bin/sh")) == "/bin/busybox"
    assert rootfs.validate_rootfs(target) == os.path.realpath(target)
    assert oct(os.stat(os.path.join(target, "tmp")).st_mode & 0o7777) == "0o1777"
    assert not os.path.exists(target + ".partial")


def test_dynamic_binary_is_not_taken_for_static():
    assert not rootfs.is_static_elf("/bin/ls")


SHARED_ROOT = """
import json, os, subprocess, sys
from minicontainer import kernel
from minicontainer.container import Container
from minicontainer.spec import ContainerSpec
# A throwaway mount namespace whose / is rshared, as on a systemd host.
kernel.unshare(kernel.CLONE_NEWNS)
kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_SHARED)
root = [l for l in open("/proc/self/mountinfo") if l.split()[4] == "/"][0]
before = open("/proc/self/mountinfo").read()
with Container.start(ContainerSpec(sys.argv[1], ["sleep", "30"])) as box:
    during = open("/proc/self/mountinfo").read()
print(json.dumps({"shared": "shared:" in root, "leaked": sorted(set(during.splitlines()) - set(before.splitlines()))}))
"""


def test_container_mounts_do_not_propagate_from_a_shared_root(image):
    out = run_python(SHARED_ROOT, args=[image])
    assert out.returncode == 0, out.stderr
    import json
    result = json.loads(out.stdout)
    assert result["shared"], "the test's namespace must really have a shared /"
    assert result["leaked"] == []  # pivot_root worked and no overlay/proc/dev mount propagated to us
