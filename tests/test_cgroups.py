"""The cgroup interface on whichever cgroup mode this machine has, checked in cgroupfs."""

from __future__ import annotations

import os
import subprocess

import pytest

from minicontainer.cgroups import Cgroup, detect
from minicontainer.cgroups.files import read_file


def test_detected_modes_match_proc_cgroups():
    layout = detect()
    with open("/proc/cgroups") as f:
        hierarchy = {line.split()[0]: int(line.split()[1]) for line in f.readlines()[1:]}
    for name, controller in layout.controllers.items():
        v1_name = "blkio" if name == "io" else name
        # /proc/cgroups says hierarchy 0 for controllers on v2 (or on none).
        assert (hierarchy[v1_name] == 0) == (controller.version == 2), name
        assert os.path.isdir(controller.own_dir)
    assert {"memory", "cpu", "pids"} <= set(layout.controllers), "the lab needs these controllers"


@pytest.fixture
def cgroup():
    group = Cgroup(f"test-{os.getpid()}").create()
    yield group
    group.kill_all()
    group.remove()


def limit_files(group: Cgroup) -> dict:
    """The limit files as the kernel holds them, by cgroup version."""
    layout = group.layout
    if layout.version_of("memory") == 2:
        return {"memory": read_file(os.path.join(group.dirs["memory"], "memory.max")),
                "cpu": read_file(os.path.join(group.dirs["cpu"], "cpu.max")),
                "pids": read_file(os.path.join(group.dirs["pids"], "pids.max"))}
    return {"memory": read_file(os.path.join(group.dirs["memory"], "memory.limit_in_bytes")),
            "cpu": read_file(os.path.join(group.dirs["cpu"], "cpu.cfs_quota_us")),
            "pids": read_file(os.path.join(group.dirs["pids"], "pids.max"))}


def test_limits_land_in_cgroupfs(cgroup):
    cgroup.set_limits(memory="48M", cpus=0.5, pids=20)
    files = limit_files(cgroup)
    assert files["memory"] == str(48 << 20)
    assert files["cpu"] in ("50000 100000", "50000")
    assert files["pids"] == "20"
    stats = cgroup.stats()
    assert (stats["memory_limit"], stats["cpu_limit"], stats["pids_limit"]) == (48 << 20, 0.5, 20)


def test_process_moves_in_and_is_counted_then_killed(cgroup):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        cgroup.add(sleeper.pid)
        assert cgroup.procs() == [sleeper.pid]
        with open(f"/proc/{sleeper.pid}/cgroup") as f:
            assert cgroup.name in f.read()
        assert cgroup.stats()["pids_current"] == 1
        cgroup.kill_all()
        assert sleeper.wait(5) == -9
    finally:
        sleeper.kill()
        sleeper.wait()


def test_freeze_and_thaw(cgroup):
    sleeper = subprocess.Popen(["sh", "-c", "while :; do sleep 0.05; done"])
    try:
        cgroup.add(sleeper.pid)
        cgroup.freeze()
        assert cgroup.frozen() is True
        with open(f"/proc/{sleeper.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state in ("D", "S")  # a frozen task sleeps in the freezer
        cgroup.thaw()
        assert cgroup.frozen() is False
    finally:
        cgroup.kill_all()
        sleeper.wait()


def test_remove_kills_stragglers_and_leaves_no_directory():
    group = Cgroup(f"straggler-{os.getpid()}").create()
    sleeper = subprocess.Popen(["sleep", "60"])
    group.add(sleeper.pid)
    removed = group.remove()
    assert sleeper.wait(5) == -9
    assert sorted(removed) == group.directories
    assert not group.exists()


def test_duplicate_name_is_explained(cgroup):
    with pytest.raises(Exception) as caught:
        Cgroup(cgroup.name).create()
    assert "already exists" in str(caught.value) and "cleanup" in str(caught.value)


def test_missing_controller_is_explained(cgroup):
    without_memory = Cgroup(cgroup.name, dirs={k: v for k, v in cgroup.dirs.items() if k != "memory"})
    with pytest.raises(Exception) as caught:
        without_memory.set_limits(memory="32M")
    assert "no memory cgroup controller" in str(caught.value)
