"""Images in layers (lab/layers.py): an OCI layout written with real digests, read back with every
digest checked, layers applied with overlayfs's marks. Files in a temporary directory only: no mount."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import tarfile

import pytest

from minicontainer.errors import LabError
from minicontainer.lab import layers, solutions

ROOTFS = {"bin/sh": "#!fake\n", "etc/hostname": "lab\n", "etc/hosts": "127.0.0.1 localhost\n",
          "etc/passwd": "root:x:0:0::/root:/bin/sh\n"}


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    for path, text in ROOTFS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    os.symlink("/bin/sh", root / "bin" / "ash")  # an absolute link, as busybox's applets are
    return str(root)


@pytest.fixture
def image(rootfs, tmp_path):
    return layers.build_image(rootfs, str(tmp_path / "image"))


def names_in(tar_path: str) -> list[str]:
    with tarfile.open(tar_path) as tar:
        return tar.getnames()


def test_every_blob_is_named_by_the_sha256_of_its_bytes(image):
    blobs = os.path.join(image.directory, "blobs", "sha256")
    assert len(os.listdir(blobs)) == 5  # three layers, the config, the manifest
    for name in os.listdir(blobs):
        with open(os.path.join(blobs, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == name


def test_the_manifest_lists_the_config_and_the_layers_bottom_first(image):
    with open(os.path.join(image.directory, "oci-layout")) as f:
        assert json.load(f) == {"imageLayoutVersion": "1.0.0"}
    with open(os.path.join(image.directory, "index.json")) as f:
        index = json.load(f)
    pointer = index["manifests"][0]
    assert pointer["mediaType"] == layers.MANIFEST_TYPE
    with open(os.path.join(image.directory, "blobs", *pointer["digest"].split(":")), "rb") as f:
        assert json.loads(f.read()) == image.manifest
    manifest = image.manifest
    assert manifest["schemaVersion"] == 2 and manifest["config"]["mediaType"] == layers.CONFIG_TYPE
    assert [d["digest"] for d in manifest["layers"]] == [layer.digest for layer in image.layers]
    assert all(d["mediaType"] == layers.LAYER_TYPE for d in manifest["layers"])
    assert [os.path.getsize(layer.path) for layer in image.layers] == [d["size"] for d in manifest["layers"]]
    assert image.config["rootfs"] == {"type": "layers", "diff_ids": [layer.digest for layer in image.layers]}
    assert image.config["config"]["Cmd"] == ["/bin/sh"]
    bottom, middle, top = (names_in(layer.path) for layer in image.layers)
    assert "etc/hostname" in bottom and "bin/ash" in bottom
    assert "etc/.wh.hostname" in middle and "etc/motd" in middle
    assert top.index("srv/www/.wh..wh..opq") < top.index("srv/www/index.html")  # the mark before its siblings


def test_the_same_content_gives_the_same_digests(rootfs, tmp_path):
    first = layers.build_image(rootfs, str(tmp_path / "one"))
    second = layers.build_image(rootfs, str(tmp_path / "two"))
    assert [layer.digest for layer in first.layers] == [layer.digest for layer in second.layers]


@pytest.mark.parametrize("which", ["a layer", "the config"])
def test_read_image_refuses_a_changed_blob(image, which):
    descriptor = image.manifest["layers"][1] if which == "a layer" else image.manifest["config"]
    path = os.path.join(image.directory, "blobs", *descriptor["digest"].split(":"))
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))  # one bit, same size
    with pytest.raises(LabError, match="does not match its digest") as refused:
        layers.read_image(image.directory)
    assert descriptor["digest"] in refused.value.what


def test_read_image_refuses_a_digest_that_is_a_path(image):
    with open(os.path.join(image.directory, "index.json")) as f:
        index = json.load(f)
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    with open(os.path.join(image.directory, "index.json"), "w") as f:
        json.dump(index, f)
    with pytest.raises(LabError, match="unsupported digest"):
        layers.read_image(image.directory)


def test_without_conversion_the_marks_stay_plain_files(image, tmp_path):
    dirs = [layers.apply_layer(layer.path, str(tmp_path / "layers" / str(n)), convert_whiteout=False,
                               convert_opaque=False) for n, layer in enumerate(image.layers, 1)]
    assert layers.describe(os.path.join(dirs[1], "etc/.wh.hostname")) == "file of 0 bytes"
    assert not os.path.lexists(os.path.join(dirs[1], "etc/hostname"))
    assert layers.describe(os.path.join(dirs[2], "srv/www/.wh..wh..opq")) == "file of 0 bytes"
    assert os.readlink(os.path.join(dirs[0], "bin/ash")) == "/bin/sh"  # kept as it is, never followed
    with open(os.path.join(dirs[1], "etc/motd")) as f:
        assert "layer 2" in f.read()


def trusted_xattrs_or_skip(directory: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a 0:0 character device (mknod) and trusted.* xattrs need root")
    try:
        os.setxattr(directory, layers.OPAQUE_XATTR, b"y")
        os.removexattr(directory, layers.OPAQUE_XATTR)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"the temporary directory's filesystem refuses trusted.* xattrs: {e.strerror}")
        raise


def test_conversion_makes_whiteouts_and_opaque_directories(image, tmp_path):
    trusted_xattrs_or_skip(str(tmp_path))
    dirs = [layers.apply_layer(layer.path, str(tmp_path / "layers" / str(n)))
            for n, layer in enumerate(image.layers, 1)]
    whiteout = os.lstat(os.path.join(dirs[1], "etc/hostname"))
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert not os.path.lexists(os.path.join(dirs[1], "etc/.wh.hostname"))
    www = os.path.join(dirs[2], "srv/www")
    assert os.getxattr(www, layers.OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(www)) == ["index.html"]
    assert layers.OPAQUE_XATTR not in os.listxattr(os.path.join(dirs[1], "srv/www"))  # only where marked


def test_a_whiteout_for_a_name_the_layer_has_keeps_it_and_hides_the_lower_one(tmp_path):
    trusted_xattrs_or_skip(str(tmp_path))
    layer = tmp_path / "layer"
    (layer / "etc" / "conf.d").mkdir(parents=True)
    (layer / "etc" / ".wh.conf.d").write_text("")
    layers.convert_whiteouts(str(layer))
    assert os.path.isdir(layer / "etc" / "conf.d")
    assert os.getxattr(layer / "etc" / "conf.d", layers.OPAQUE_XATTR) == b"y"


def test_the_exercise_solution_converts_and_the_wrong_attempt_does_not(image, tmp_path):
    trusted_xattrs_or_skip(str(tmp_path))
    right, wrong = (layers.apply_layer(image.layers[1].path, str(tmp_path / name), convert_whiteout=False,
                                       convert_opaque=False) for name in ("right", "wrong"))
    solutions.SOLVERS["rootfs-whiteouts"](right)
    solutions.WRONG["rootfs-whiteouts"][0]()(wrong)
    assert layers.describe(os.path.join(right, "etc/hostname")) == "character device 0:0"
    assert layers.describe(os.path.join(wrong, "etc/hostname")) == "absent"


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize("members", [
    lambda outside: [(entry("../outside/escaped"), b"x")],
    lambda outside: [(entry(outside + "/escaped"), b"x")],
    lambda outside: [(entry("etc", tarfile.SYMTYPE, outside), b""), (entry("etc/escaped"), b"x")],
    lambda outside: [(entry("escaped", tarfile.LNKTYPE, "../outside/secret"), b"")],
], ids=["dot-dot", "absolute", "through a symlink", "hard link out"])
def test_apply_layer_refuses_an_entry_outside_the_layer(tmp_path, members):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host file\n")
    layer = tmp_path / "layer.tar"
    layer.write_bytes(tar_of(*members(str(outside))))
    with pytest.raises(LabError, match="outside the layer|goes through the symlink"):
        layers.apply_layer(str(layer), str(tmp_path / "applied"))
    assert sorted(os.listdir(outside)) == ["secret"]


def test_apply_layer_wants_a_directory_of_its_own(image, tmp_path):
    target = tmp_path / "used"
    target.mkdir()
    (target / "left-over").write_text("")
    with pytest.raises(LabError, match="not empty"):
        layers.apply_layer(image.layers[1].path, str(target), convert_whiteout=False, convert_opaque=False)


def test_lowerdir_lists_the_top_layer_first():
    assert layers.lowerdir(["/l/1", "/l/2", "/l/3"]) == "/l/3:/l/2:/l/1"
    with pytest.raises(LabError, match="':' or ','"):
        layers.lowerdir(["/l/1", "/l/a:b"])


def test_look_through_mounts_in_a_throwaway_mount_namespace_only(monkeypatch):
    """The spec it runs (no container started here): a namespace-only process, mnt alone (and, run by an
    unprivileged user, the user namespace every rootless spec gets), allowed to mount."""
    import types

    from minicontainer import container
    asked = []

    def fake_run(spec, timeout=60.0):
        asked.append(spec)
        return types.SimpleNamespace(code=0, stderr="", stdout="## /\netc\nsrv\n## /etc\nhosts\nmotd\n## /gone\n")

    monkeypatch.setattr(container, "run", fake_run)
    seen = layers.look_through(["/l/1", "/l/2"], ["/", "/etc", "/gone"], "/l/merged")
    assert seen == {"/": ["etc", "srv"], "/etc": ["hosts", "motd"], "/gone": []}
    spec = asked[0]
    mine = ("mnt",) if os.geteuid() == 0 else ("user", "mnt")  # test_unit_layer runs this as uid 20000
    assert spec.rootfs is None and spec.namespaces == mine and not spec.security.refuses_namespaces
    # Rootless, the mount is made in the user namespace, where overlayfs reads its marks as user.* (userxattr).
    options = "lowerdir=/l/2:/l/1" + ("" if os.geteuid() == 0 else ",userxattr")
    assert f"{options} /l/merged" in spec.command[-1]

    monkeypatch.setattr(container, "run", lambda spec, timeout=60.0: types.SimpleNamespace(
        code=1, stdout="", stderr="mount: wrong fs type"))
    with pytest.raises(LabError, match="wrong fs type"):
        layers.look_through(["/l/1", "/l/2"], ["/"], "/l/merged")
