"""cgroups.layout_from over recorded hosts: which version drives each controller, and where a container's
cgroup goes, for a hybrid host (this machine's, recorded), a pure v2 systemd guest with the lab in its own
service's leaf (the lab VM's set-up), and a legacy v1 host with co-mounted controllers."""

from __future__ import annotations

import os

import pytest

from minicontainer.cgroups import base_dir, layout_from

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "cgroups")


def recorded(host: str):
    def text(name):
        with open(os.path.join(FIXTURES, host, name)) as f:
            return f.read()
    return layout_from(text("proc_cgroups"), text("self_cgroup"), text("mountinfo"), text("controllers"))


def test_a_hybrid_host_drives_its_controllers_through_v1_and_knows_the_cgroup2_tree_beside_them():
    layout = recorded("hybrid")
    assert layout.mode.startswith("hybrid")
    assert {n: c.version for n, c in layout.controllers.items()} == {
        "memory": 1, "cpu": 1, "cpuacct": 1, "pids": 1, "freezer": 1, "io": 1, "devices": 1}
    memory = layout.controllers["memory"]
    # This process sits below the root in the memory hierarchy alone: containers go below it there.
    assert memory.own_dir == "/sys/fs/cgroup/memory/process_api/1a2ec64445287b7f8e9c64b509f46f5a"
    assert base_dir(layout, memory) == memory.own_dir + "/minicontainer"
    assert base_dir(layout, layout.controllers["io"]) == "/sys/fs/cgroup/blkio/minicontainer"  # blkio is v2's io
    assert layout.v2_mount == "/sys/fs/cgroup/unified"


def test_a_pure_v2_guest_puts_containers_beside_its_own_leaf():
    layout = recorded("unified")
    assert layout.mode == "unified (cgroup v2)"
    assert set(layout.controllers) == {"memory", "cpu", "pids", "io", "devices"}  # freezer, cpuacct: built in
    cpu = layout.controllers["cpu"]
    assert (cpu.version, cpu.own_dir) == (2, "/sys/fs/cgroup/system.slice/lab.service/main")
    # Only a cgroup without processes may give its children controllers: beside main, not below it.
    assert base_dir(layout, cpu) == "/sys/fs/cgroup/system.slice/lab.service/minicontainer"


def test_a_legacy_host_finds_co_mounted_controllers_and_each_ones_own_path():
    layout = recorded("legacy")
    assert layout.mode == "legacy (cgroup v1 only)" and layout.v2_mount is None
    assert layout.controllers["cpu"].mount == layout.controllers["cpuacct"].mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.controllers["cpu"].own_dir == "/sys/fs/cgroup/cpu,cpuacct/user.slice"
    assert layout.controllers["pids"].own_dir == "/sys/fs/cgroup/pids/user.slice/user-1000.slice/session-3.scope"


@pytest.mark.parametrize("host", ["hybrid", "unified", "legacy"])
def test_a_controller_switched_off_on_the_kernel_command_line_is_said_so(host):
    layout = recorded(host)
    path = os.path.join(FIXTURES, host)
    with open(os.path.join(path, "proc_cgroups")) as f:  # memory's "enabled" column set to 0
        lines = [line.rsplit("\t", 1)[0] + "\t0" if line.startswith("memory\t") else line
                 for line in f.read().splitlines()]
    with open(os.path.join(path, "self_cgroup")) as f, open(os.path.join(path, "mountinfo")) as g, \
            open(os.path.join(path, "controllers")) as h:
        switched_off = layout_from("\n".join(lines), f.read(), g.read(), h.read().replace("memory", ""))
    assert "memory" in layout.controllers and "memory" not in switched_off.controllers
    assert "cgroup_disable" in switched_off.unavailable["memory"]
