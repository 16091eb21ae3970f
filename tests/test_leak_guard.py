"""The leak guard itself must see what it claims to guard."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import kernel_state

from minicontainer import kernel
from minicontainer.cgroups import Cgroup


def test_guard_sees_a_cgroup_a_mount_and_a_helper(tmp_path):
    before = kernel_state()
    group = Cgroup("guard-probe").create()
    kernel.mount("tmpfs", str(tmp_path), "tmpfs")
    fake_helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                    "minicontainer.process.helper"])
    # A helper forked from the CLI has its caller's command line, and the name mc-helper.
    fake_forked = subprocess.Popen([sys.executable, "-c", "from minicontainer import kernel; import time; "
                                    "kernel.set_process_name('mc-helper'); time.sleep(30)"])
    try:
        # Popen returns once exec has closed our pipe, a moment before the kernel sets the new cmdline.
        deadline = time.monotonic() + 5
        while (b"helper" not in open(f"/proc/{fake_helper.pid}/cmdline", "rb").read() or
               open(f"/proc/{fake_forked.pid}/comm").read().strip() != "mc-helper") and time.monotonic() < deadline:
            time.sleep(0.01)
        during = kernel_state()
        assert set(group.directories) <= during["cgroups"] - before["cgroups"]
        assert any(str(tmp_path) in m for m in during["mounts"] - before["mounts"])
        assert any(p.startswith(f"{fake_helper.pid} ") for p in during["helper processes"])
        assert any(p.startswith(f"{fake_forked.pid} ") for p in during["helper processes"])
    finally:
        for fake in (fake_helper, fake_forked):
            fake.kill()
            fake.wait()
        kernel.umount2(str(tmp_path))
        group.remove()
    assert kernel_state() == before
