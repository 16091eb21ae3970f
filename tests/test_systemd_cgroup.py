"""`--systemd-cgroup`: a cgroupsPath slice:prefix:name becomes a systemd scope, as engines with systemd's cgroup
manager (Podman's default, containerd's SystemdCgroup) ask of runc.

Where systemd is not PID 1 (CI's host) only the refusals run; the scope itself runs where it is (the Debian 13
acceptance guest: vagrant/acceptance.sh, MINICONTAINER_ACCEPTANCE_SUITE=trixie), beside runc with the same flag.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from test_oci_lifecycle import ENV, MEMORY, MINICONTAINER, Engine, command_line, make_bundle

from minicontainer.cgroups import systemd


def systemd_runs_here() -> bool:
    return systemd.available() is None


@pytest.mark.skipif(systemd_runs_here(), reason="systemd runs this machine: the scope test below runs instead")
def test_refused_with_what_to_do_where_systemd_does_not_run(tmp_path, image):
    root = str(tmp_path / "root")
    out = subprocess.run([*MINICONTAINER, "--systemd-cgroup", "--root", root, "state", "x"], capture_output=True,
                         text=True, env=ENV, timeout=30)
    assert out.returncode != 0
    assert "--systemd-cgroup needs systemd" in out.stderr and "--cgroup-manager cgroupfs" in out.stderr, out.stderr
    # Without the flag, a slice:prefix:name path is refused before anything is made.
    if not shutil.which("runc"):
        pytest.fail("runc is not installed (./lab test installs it): its `runc spec` writes the bundle")
    bundle = make_bundle(tmp_path, image, ["true"])
    config = json.loads(open(os.path.join(bundle, "config.json")).read())
    config["linux"]["cgroupsPath"] = "system.slice:minicontainer:refused"
    open(os.path.join(bundle, "config.json"), "w").write(json.dumps(config))
    out = subprocess.run([*MINICONTAINER, "--root", root, "create", "--bundle", bundle, "refused"],
                         capture_output=True, text=True, env=ENV, timeout=30)
    assert out.returncode == 125 and "--systemd-cgroup" in out.stderr, out.stderr
    assert not os.listdir(root) if os.path.isdir(root) else True


def scope_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line.strip()[3:] for line in f if line.startswith("0::"))


def unit_state(unit: str) -> str:
    return subprocess.run(["systemctl", "show", "-p", "ActiveState", "--value", unit], capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(not systemd_runs_here(), reason="needs systemd as PID 1 (the Debian 13 acceptance guest)")
def test_a_scope_per_container_as_runc_makes_it(tmp_path, image):
    bundle = make_bundle(tmp_path, image, ["sleep", "600"])
    config = json.loads(open(os.path.join(bundle, "config.json")).read())
    seen = {}
    for name, runtime in (("minicontainer", MINICONTAINER), ("runc", ["runc"])):
        container_id = f"scope-{name}-{os.getpid()}"
        config["linux"]["cgroupsPath"] = f"system.slice:mc-test:{container_id}"
        open(os.path.join(bundle, "config.json"), "w").write(json.dumps(config))
        engine = Engine([*runtime, "--systemd-cgroup"], str(tmp_path / f"{name}-root"), str(tmp_path))
        unit = f"mc-test-{container_id}.scope"
        try:
            created = engine.create(container_id, bundle)
            assert created["create"] == 0, open(engine.output(container_id)).read()
            pid = engine.state(container_id)["pid"]
            assert engine("start", container_id).returncode == 0
            deadline = time.monotonic() + 10
            while command_line(pid) != ["sleep", "600"] and time.monotonic() < deadline:
                time.sleep(0.02)
            # systemd knows the unit, PID 1 is in its cgroup, and the runtime itself is not (it left, or exited).
            assert unit_state(unit) == "active", name
            cgroup = scope_of(pid)
            assert cgroup == f"/system.slice/{unit}", (name, cgroup)
            directory = f"/sys/fs/cgroup{cgroup}"
            with open(os.path.join(directory, "cgroup.procs")) as f:
                assert f.read().split() == [str(pid)], name
            with open(os.path.join(directory, "memory.max")) as f:
                seen[name] = int(f.read())
            assert engine("kill", container_id, "KILL").returncode == 0
            assert engine.reaped() == [-signal.SIGKILL], name
            assert engine("delete", container_id).returncode == 0
            deadline = time.monotonic() + 10
            while os.path.isdir(directory) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not os.path.isdir(directory), name
            assert unit_state(unit) in ("inactive", ""), (name, unit_state(unit))
        finally:
            engine.cleanup()
    assert seen == {"minicontainer": MEMORY, "runc": MEMORY}
