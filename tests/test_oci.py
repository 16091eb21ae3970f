"""OCI runtime bundles: runc's own default config runs; the export round-trips; the rest is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import cli

from minicontainer import oci, security
from minicontainer.errors import LabError
from minicontainer.security import Security
from minicontainer.spec import ContainerSpec


@pytest.fixture
def runc_bundle(tmp_path, image):
    """`runc spec`, edited only for its rootfs and args."""
    if not shutil.which("runc"):
        pytest.fail("runc is not installed (./lab setup installs it from Debian's packages)")
    subprocess.run(["runc", "spec"], cwd=tmp_path, check=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["root"]["path"] = image
    config["process"]["args"] = ["sh", "-c", "hostname; ulimit -n; touch /x 2>&1; grep CapBnd /proc/self/status; "
                                 "test -d /dev/mqueue && echo mqueue"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_runc_spec_bundle_runs(runc_bundle):
    out = cli("run", "--bundle", str(runc_bundle))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "runc" and lines[1] == "1024"      # hostname and RLIMIT_NOFILE from config.json
    assert "Read-only file system" in lines[2]            # root.readonly
    assert lines[3].split()[1] == "0000000020000420"      # CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE only
    assert lines[4] == "mqueue"


def test_unsupported_fields_are_listed(runc_bundle):
    config = json.loads((runc_bundle / "config.json").read_text())
    config["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "mount"] + [
        {"type": "mount", "path": "/proc/1/ns/mnt"}]
    (runc_bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(LabError) as caught:
        oci.load_bundle(str(runc_bundle))
    message = str(caught.value)
    for words in ("process.selinuxLabel", "linux.seccomp.listenerPath", "mount path (only net, ipc, uts"):
        assert words in message


def test_a_namespace_listed_twice_is_refused_as_runc_refuses_it(runc_bundle):
    config = json.loads((runc_bundle / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "pid"})  # runc spec's own list has pid already
    (runc_bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(LabError, match="lists the pid namespace more than once"):
        oci.load_bundle(str(runc_bundle))
    refused = subprocess.run(["runc", "--root", str(runc_bundle / "runc-root"), "run", "--bundle", str(runc_bundle),
                              "twice"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0 and "duplicated ns" in refused.stderr, refused.stderr


def test_an_apparmor_profile_is_refused_where_apparmor_is_off(runc_bundle):
    """Never run the command less confined than the config asks. (Where AppArmor is on, the Debian 13 guest
    applies profiles for real: tests/test_apparmor.py.)"""
    if security.apparmor_enabled():
        pytest.skip("AppArmor is on here: the profile is applied, not refused")
    config = json.loads((runc_bundle / "config.json").read_text())
    config["process"]["apparmorProfile"] = "docker-default"
    (runc_bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(LabError) as caught:
        oci.load_bundle(str(runc_bundle))
    assert "process.apparmorProfile (AppArmor is not enabled on this host" in str(caught.value)


def test_capability_sets_and_devices_minicontainer_cannot_reproduce_are_refused(runc_bundle):
    config = json.loads((runc_bundle / "config.json").read_text())
    config["process"]["capabilities"]["ambient"].append("CAP_SYS_ADMIN")  # beyond the bounding set
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "a", "access": "rwm"})  # every device
    (runc_bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(LabError) as caught:
        oci.load_bundle(str(runc_bundle))
    assert "ambient beyond the bounding set: ['CAP_SYS_ADMIN']" in str(caught.value)
    assert "'type': 'a'" in str(caught.value)


def test_export_round_trips(image, tmp_path):
    spec = ContainerSpec(image, ["sleep", "1"], hostname="box", memory="48M", cpus=0.5, pids=20,
                         security=Security(capabilities=["net_raw", "kill"]), read_only_root=True)
    config = oci.to_config(spec.validate())
    assert config["linux"]["resources"] == {"memory": {"limit": 48 << 20}, "cpu": {"quota": 50000, "period": 100000},
                                            "pids": {"limit": 20}, "devices": [oci.DENY_ALL] + oci.device_rules()}
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in config["linux"]["resources"]["devices"]
    assert config["process"]["capabilities"] == {"bounding": ["CAP_NET_RAW", "CAP_KILL"], "effective": [
        "CAP_NET_RAW", "CAP_KILL"], "permitted": ["CAP_NET_RAW", "CAP_KILL"], "inheritable": [], "ambient": []}
    (tmp_path / "config.json").write_text(json.dumps(config))
    back = oci.load_bundle(str(tmp_path))
    assert (back.memory, back.cpus, back.pids, back.hostname) == (48 << 20, 0.5, 20, "box")
    assert back.security.capabilities == ["net_raw", "kill"] and back.read_only_root
    assert set(back.namespaces) == set(spec.namespaces)
    assert os.path.realpath(back.rootfs) == os.path.realpath(image)


def test_print_oci_from_the_cli(image):
    out = cli("run", "--print-oci", "--memory", "64M", "--hostname", "web", image, "--", "httpd")
    config = json.loads(out.stdout)
    assert config["hostname"] == "web" and config["linux"]["resources"]["memory"]["limit"] == 64 << 20
    assert config["process"]["args"] == ["httpd"]
    with_init = json.loads(cli("run", "--print-oci", "--init", image, "--", "httpd").stdout)
    assert with_init["process"]["args"] == ["/dev/minicontainer-init", "--", "httpd"]


def test_missing_bundle_says_what_a_bundle_is(tmp_path):
    out = cli("run", "--bundle", str(tmp_path))
    assert out.returncode == 125 and "config.json" in out.stderr and "runc spec" in out.stderr


def test_runc_runs_the_exported_init_as_pid_1(image, tmp_path):
    # As docker run --init hands runc its init: bound in and put in front of the command. Without the
    # init the shell is PID 1 (the first line would be 1).
    if not shutil.which("runc"):
        pytest.fail("runc is not installed (./lab setup installs it from Debian's packages)")
    spec = ContainerSpec(image, ["sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline"], init=True, name="oci-init")
    config = oci.to_config(spec.validate())
    config["linux"]["cgroupsPath"] = f"runc-init-{os.getpid()}"  # below runc's own cgroup, as lab/compare.py does
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(config))
    base = ["runc", "--root", str(tmp_path / "state")]
    try:
        out = subprocess.run(base + ["run", "--bundle", str(tmp_path / "bundle"), "oci-init"], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=30)
    finally:
        subprocess.run(base + ["delete", "-f", "oci-init"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    shell_pid, pid_1 = out.stdout.splitlines()
    assert shell_pid != "1" and pid_1.startswith("/dev/minicontainer-init -- sh -c echo"), out.stdout


def test_a_deny_all_rule_resets_the_device_rules_before_it(runc_bundle):
    """Docker 25+ sends deny-all twice: once from its defaults, once before its devices. A deny-all empties the
    allow-list, so only what follows the last one counts."""
    config = json.loads((runc_bundle / "config.json").read_text())
    zero = {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}  # /dev/zero
    null = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}  # /dev/null
    config["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"}, null, oci.DENY_ALL, zero]
    assert not oci.unsupported(config)
    allowed = oci.from_config(config, str(runc_bundle)).device_rules
    assert ["c", 1, 5, "rwm", True] in allowed and not any(rule[:3] == ["c", 1, 3] for rule in allowed), allowed
