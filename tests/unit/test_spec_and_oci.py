"""What needs no kernel: parsing what a learner types, the OCI round trip, the id maps' text."""

from __future__ import annotations

import json
import os

import pytest

from minicontainer import oci
from minicontainer.cgroups.limits import format_size, parse_cpus, parse_pids, parse_size
from minicontainer.errors import LabError
from minicontainer.process import mcinit
from minicontainer.process.steps import id_map_lines
from minicontainer.security import Security
from minicontainer.spec import ContainerSpec


@pytest.mark.parametrize("text, value", [("64M", 64 << 20), ("1.5G", 3 << 29), ("512k", 512 << 10),
                                         (4096, 4096), ("64MiB", 64 << 20), ("max", None)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["64X", "-1", "0", "lots"])
def test_a_bad_size_says_how_to_write_one(bad):
    with pytest.raises(LabError) as caught:
        parse_size(bad)
    assert "64M" in caught.value.fix


def test_cpus_and_pids():
    assert parse_cpus("0.5") == 0.5 and parse_cpus("max") is None and parse_pids("32") == 32
    for parse, bad in ((parse_cpus, "half"), (parse_pids, "many")):
        with pytest.raises(LabError):
            parse(bad)


def test_oci_round_trip_without_a_kernel():
    spec = ContainerSpec("/img", ["sleep", "1"], hostname="box", memory="48M", cpus=0.5, pids=20,
                         security=Security(capabilities=["net_raw"]), read_only_root=True, name="oci-unit",
                         rootless=False)
    config = oci.to_config(spec)
    assert oci.unsupported(config) == []
    back = oci.from_config(config, "/bundle")
    assert (back.memory, back.cpus, back.pids, back.hostname) == (48 << 20, 0.5, 20, "box")
    assert back.security.capabilities == ["net_raw"] and back.security.devices
    assert config["process"]["capabilities"]["inheritable"] == [] == config["process"]["capabilities"]["ambient"]


def test_oci_round_trip_keeps_the_init_the_namespace_rule_and_a_switched_off_device_cgroup():
    spec = ContainerSpec("/img", ["sleep", "1"], name="oci-unit", rootless=False, init=True,
                         security=Security(new_namespaces=True, devices=False))
    config = oci.to_config(spec)
    # runc gets what it needs to run the same init: the binary bound in, and in front of the command.
    assert config["process"]["args"] == [mcinit.TARGET, "--", "sleep", "1"]
    assert {"destination": mcinit.TARGET, "type": "bind", "source": mcinit.binary(),
            "options": ["rbind", "ro"]} in config["mounts"]
    assert "devices" not in config["linux"]["resources"] and oci.unsupported(config) == []
    back = oci.from_config(config, "/bundle")
    assert back.init and back.command == ["sleep", "1"] and back.binds == []
    assert back.security.new_namespaces and not back.security.devices
    plain = oci.from_config(oci.to_config(ContainerSpec("/img", ["true"], name="oci-unit", rootless=False)), "/b")
    assert not plain.init and not plain.security.new_namespaces and plain.security.devices


def test_a_foreign_bundle_without_device_rules_still_gets_the_device_cgroup():
    config = oci.to_config(ContainerSpec("/img", ["true"], name="oci-unit", rootless=False))
    del config["annotations"], config["linux"]["resources"]["devices"]
    assert oci.from_config(config, "/bundle").security.devices


def test_a_configs_device_rules_are_taken_and_what_they_cannot_say_is_refused():
    config = oci.to_config(ContainerSpec("/img", ["true"], name="oci-unit"))
    devices = config["linux"]["resources"]["devices"]
    devices.append({"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rwm"})
    assert not oci.unsupported(config)
    assert ["b", 8, 0, "rwm", True] in oci._allowed_devices(devices)  # a config's own rule is the config's to give
    devices.append({"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"})  # a deny after allows
    assert not oci.unsupported(config) and oci._allowed_devices(devices)[-1] == ["c", 1, 3, "rwm", False]
    devices.append({"allow": True, "type": "a", "access": "rwm"})
    assert any("'type': 'a'" in p for p in oci.unsupported(config))
    assert oci._allowed_devices([oci.DENY_ALL]) is None  # deny-all alone: the runtime's standard list


@pytest.mark.parametrize("euid, egid, lines", [
    (0, 0, ("0 100000 65536", "0 100000 65536")),            # root maps any range, gids alike
    (1000, 1001, ("0 1000 1", "0 1001 1")),                  # a user maps only itself
])
def test_id_map_text(euid, egid, lines):
    uid_map = "0 100000 65536" if euid == 0 else "0 1000 1"
    assert id_map_lines(uid_map, euid, egid) == lines


def test_the_spec_is_parsed_once_when_made():
    spec = ContainerSpec("/img", ["sh"], memory="48M", cpus="0.5", pids="20", binds=[("/src", "/dst", False)],
                         publish=[("127.0.0.1", 8080, 80, "tcp")], network="bridge", name="typed",
                         security=Security(tmpfs_size="16m"), rootless=False)
    assert (spec.memory, spec.cpus, spec.pids, spec.security.tmpfs_size) == (48 << 20, 0.5, 20, 16 << 20)
    assert spec.binds[0].target == "/dst" and not spec.binds[0].read_only
    assert spec.publish[0].host_port == 8080 and spec.publish[0].container_port == 80
    again = ContainerSpec.from_dict(json.loads(json.dumps(spec.to_dict())))  # as the helper receives it
    assert again == spec


def test_a_bad_limit_is_refused_when_the_spec_is_made():
    with pytest.raises(LabError, match="is not a size"):
        ContainerSpec("/img", ["sh"], memory="lots")


def test_sizes_are_shown_as_typed():
    assert [format_size(v) for v in (64 << 20, 3 << 29, 1000, None)] == ["64M", "1536M", "1000", "max"]


def test_oci_never_grants_more_than_the_bundle_asks():
    config = oci.to_config(ContainerSpec("/img", ["true"], name="oci-unit", rootless=False))
    config["process"]["capabilities"]["effective"] = ["CAP_KILL"]  # fewer than the bounding set
    assert any("effective other than the bounding set" in p for p in oci.unsupported(config))
    del config["process"]["capabilities"]
    assert oci.from_config(config, "/bundle").security.capabilities == []  # none asked for: none given


def test_allow_syscall_refuses_what_the_namespace_rule_covers():
    with pytest.raises(LabError, match="refused by the namespace rule"):
        Security(allow_syscalls=["mount"]).check()


def test_a_path_in_the_new_root_never_leads_out_through_the_images_symlinks(tmp_path):
    from minicontainer.paths import path_in
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "etc").symlink_to("/../../../outside")        # absolute, climbing: stays at the root
    (root / "lib").symlink_to("../../real")               # relative, climbing past the root
    (root / "run").symlink_to("real")
    assert path_in(str(root), "/etc/hosts") == str(root / "outside" / "hosts")
    assert path_in(str(root), "/lib/x") == str(root / "real" / "x")
    assert path_in(str(root), "/run/../../../x") == str(root / "x")
    assert path_in(str(root), "/new/dir") == str(root / "new" / "dir")


def test_a_user_namespaces_id_maps_go_both_ways_and_what_cannot_be_mapped_is_refused(tmp_path):
    spec = ContainerSpec("/images/busybox", ["sleep", "1"], namespaces=("user", "pid", "mnt"), uid_map="0 200000 1000")
    config = oci.to_config(spec)
    uid_line, gid_line = id_map_lines(spec.uid_map, os.geteuid(), os.getegid())
    assert config["linux"]["uidMappings"] == [dict(zip(("containerID", "hostID", "size"),
                                                       map(int, uid_line.split()), strict=True))]
    assert [str(config["linux"]["gidMappings"][0][k]) for k in ("containerID", "hostID", "size")] == gid_line.split()
    assert oci.unsupported(config) == []
    assert oci.from_config(config, str(tmp_path)).uid_map == "0 200000 1000"
    user = [{"type": "user"}, {"type": "pid"}]
    one = {"containerID": 0, "hostID": 100000, "size": 65536}
    for linux, words in (({"namespaces": user}, "a user namespace without linux.uidMappings"),
                         ({"namespaces": [{"type": "pid"}], "uidMappings": [one], "gidMappings": [one]},
                          "without a user namespace"),
                         ({"namespaces": user, "uidMappings": [one, one], "gidMappings": [one]}, "one range each"),
                         ({"namespaces": user, "uidMappings": [one], "gidMappings": [{**one, "hostID": 7}]},
                          "linux.gidMappings other than"),
                         ({"namespaces": [{"type": "mount"}], "rootfsPropagation": "shared"}, "rootfsPropagation")):
        problems = oci.unsupported({"ociVersion": "1.0.2", "linux": linux})
        assert any(words in p for p in problems), (linux, problems)


def test_which_namespaces_a_container_may_join_and_with_what(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # validate's first check (root, or a user namespace) aside
    joined = ContainerSpec("/images/busybox", ["true"],
                           join={"pid": "/proc/self/ns/pid", "cgroup": "/proc/self/ns/cgroup"})
    joined.validate()
    for join, namespaces, words in (({"mnt": "/proc/self/ns/mnt"}, None, "cannot join a mnt namespace"),
                                    ({"pid": "/proc/self/ns/pid"}, ("user", "pid", "mnt"), "from a user namespace")):
        fields = {"namespaces": namespaces} if namespaces else {}
        with pytest.raises(LabError, match=words):
            ContainerSpec("/images/busybox", ["true"], join=join, **fields).validate()
    config = {"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "mount", "path": "/proc/1/ns/mnt"}]}}
    assert any("only net, ipc, uts, pid, cgroup can be joined" in p for p in oci.unsupported(config))
