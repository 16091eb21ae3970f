"""Images in layers: an OCI image built offline from a rootfs, read back with every digest checked,
and applied as overlayfs lower layers (lesson 02). The lab layer only: the runtime never imports it.

An OCI image layout (the OCI image spec: image-layout.md, manifest.md, config.md, layer.md) is a
directory of blobs, each a file named by the sha256 of its own bytes (its digest), plus two small
files that lead to them:

    oci-layout                    {"imageLayoutVersion": "1.0.0"}
    index.json                    the manifest's digest, media type and size
    blobs/sha256/<manifest>       JSON: the config's and each layer's digest, media type, size; layers bottom first
    blobs/sha256/<config>         JSON: the command, the environment, rootfs.diff_ids
    blobs/sha256/<layer>...       tar archives: what each layer adds, changes or deletes

A layer marks a deletion with an empty file `.wh.NAME`, and a directory that hides everything the
layers below have in it with a file `.wh..wh..opq` in it. overlayfs reads neither name: its own marks
are a character device 0:0 named NAME (a whiteout) and the xattr trusted.overlay.opaque = "y" on
the directory. Applying a layer converts the one into the other.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import platform
import re
import shlex
import shutil
import stat
import tarfile
from dataclasses import dataclass

from ..errors import LabError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"  # uncompressed: its digest is also its diff_id

WHITEOUT = ".wh."            # .wh.NAME in a layer: NAME of the layers below is deleted
OPAQUE = ".wh..wh..opq"      # in a directory of a layer: the layers below have nothing there
# overlayfs's opaque mark. Root's is a trusted.* xattr, which needs CAP_SYS_ADMIN on the host to set or read.
# Without root the overlay is mounted in a rootless container's user namespace, where no trusted.* can be
# read: there, with the option userxattr, overlayfs reads user.overlay.* instead, which a file's owner sets.
OPAQUE_XATTR = "trusted.overlay.opaque" if os.geteuid() == 0 else "user.overlay.opaque"


def pick_work_dir(candidates: tuple[str, ...] = ("/var/tmp", "/dev/shm")) -> str:
    """Where the lab applies layers: a filesystem that keeps trusted.* xattrs (a disk filesystem, or a
    tmpfs built with CONFIG_TMPFS_XATTR, as distributions build it), and not an overlayfs (a / made by a
    container engine or a VM's throwaway root), which takes trusted.overlay.* xattrs and 0:0 devices made
    through it for marks of its own. MINICONTAINER_LAYERS names another."""
    from ..rootfs import filesystem_of
    chosen = os.environ.get("MINICONTAINER_LAYERS")
    if chosen:
        return chosen
    for candidate in candidates:
        if os.path.isdir(candidate) and filesystem_of(candidate) != "overlay":
            return candidate
    return candidates[0]  # make_whiteout and set_opaque then say what to do


WORK_DIR = pick_work_dir()

# The lab image's layers above layer 1 (the rootfs as it is): path in the layer -> its text.
# A whiteout and an opaque marker are files too, empty ones: that is how a tarball carries them.
LAB_CHANGES = (
    {"etc/motd": "Welcome: this file came with layer 2.\n",
     "etc/.wh.hostname": "",
     "srv/www/index.html": "<p>version 1, from layer 2</p>\n",
     "srv/www/old.html": "<p>an old page, from layer 2</p>\n"},
    {"srv/www/.wh..wh..opq": "",
     "srv/www/index.html": "<p>version 2, from layer 3</p>\n"},
)

FIXED_TIME = 0  # the mtime of every entry the lab writes: the same content gives the same bytes, the same digest
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}  # uname -m -> the OCI (Go) name


@dataclass
class Layer:
    digest: str        # "sha256:<hex>": of the tar's bytes (its name in blobs/)
    size: int
    media_type: str
    path: str          # the blob, checked against its digest


@dataclass
class Image:
    directory: str
    manifest: dict
    config: dict
    layers: list[Layer]  # bottom first, as the manifest lists them


# -- building -------------------------------------------------------------------------------

def build_image(rootfs: str, out_dir: str, changes: tuple[dict[str, str], ...] = LAB_CHANGES) -> Image:
    """Write an OCI image layout to out_dir: layer 1 is the rootfs directory as it is, each further
    layer one dict of `changes`. Returns the image as read_image reads it back (every digest checked)."""
    os.makedirs(os.path.join(out_dir, "blobs", "sha256"), exist_ok=True)
    layers = [put_blob(out_dir, base_layer(rootfs), LAYER_TYPE)]
    layers += [put_blob(out_dir, change_layer(change), LAYER_TYPE) for change in changes]
    config = {
        "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"},
        # diff_ids: the digests of the uncompressed tars, which are the layers themselves here
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": put_blob(out_dir, to_json(config), CONFIG_TYPE), "layers": layers}
    pointer = put_blob(out_dir, to_json(manifest), MANIFEST_TYPE)
    pointer["annotations"] = {"org.opencontainers.image.ref.name": "lab"}
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [pointer]}
    with open(os.path.join(out_dir, "index.json"), "wb") as f:
        f.write(to_json(index))
    with open(os.path.join(out_dir, "oci-layout"), "wb") as f:
        f.write(to_json({"imageLayoutVersion": "1.0.0"}))
    return read_image(out_dir)


def to_json(data: dict) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def put_blob(out_dir: str, data: bytes, media_type: str) -> dict:
    """Store bytes under their own digest; return the descriptor that names them (type, digest, size)."""
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out_dir, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def base_layer(rootfs: str) -> bytes:
    """Layer 1: every file of the rootfs directory, parents before children, in a fixed order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(top, name)
                tar.add(path, arcname=os.path.relpath(path, rootfs), recursive=False)
    return buffer.getvalue()


def change_layer(change: dict[str, str]) -> bytes:
    """A layer above: each path with its text (whiteouts are empty files), each new directory before it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        written = set()
        for path, text in change.items():
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in written:
                    tar.addfile(_entry(directory, tarfile.DIRTYPE, 0o755))
                    written.add(directory)
            data = text.encode()
            tar.addfile(_entry(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def _entry(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, FIXED_TIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


# -- reading ---------------------------------------------------------------------------------

def read_image(directory: str) -> Image:
    """Follow an OCI layout from index.json to its manifest, config and layers, checking each blob
    against its digest first: a blob whose bytes do not hash to its name is never used."""
    try:
        with open(os.path.join(directory, "oci-layout")) as f:
            version = json.load(f)["imageLayoutVersion"]
        with open(os.path.join(directory, "index.json")) as f:
            index = json.load(f)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LabError(f"{directory} is not an OCI image layout ({e})", "its oci-layout or index.json is "
                       "missing or not valid JSON", "build it with build_image(rootfs, directory)") from None
    if version != "1.0.0":
        raise LabError(f"{directory} is an OCI layout of version {version}", "the lab reads version 1.0.0",
                       "build it with build_image(rootfs, directory)")
    manifest = json.loads(read_blob(directory, index["manifests"][0]))  # the first image in the index
    config = json.loads(read_blob(directory, manifest["config"]))
    layers = [Layer(d["digest"], d["size"], d["mediaType"], verified_blob(directory, d)) for d in manifest["layers"]]
    uncompressed = [layer.digest for layer in layers if layer.media_type == LAYER_TYPE]
    if len(uncompressed) == len(layers) and config["rootfs"]["diff_ids"] != uncompressed:
        raise LabError(f"the config of {directory} lists other layers than its manifest",
                       "rootfs.diff_ids must be the digests of the uncompressed layers, in the manifest's order",
                       "build the image again")
    return Image(directory, manifest, config, layers)


def read_blob(directory: str, descriptor: dict) -> bytes:
    with open(verified_blob(directory, descriptor), "rb") as f:
        return f.read()


def verified_blob(directory: str, descriptor: dict) -> str:
    """The path of the blob a descriptor names, once its bytes are checked against the digest and size."""
    digest = descriptor.get("digest", "")
    algorithm, _, expected = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", expected):  # also keeps the name a plain file
        raise LabError(f"unsupported digest {digest!r}", "the lab reads sha256 digests only (64 hex digits)",
                       "build the image with build_image")
    path = os.path.join(directory, "blobs", algorithm, expected)
    if not os.path.isfile(path):
        raise LabError(f"blob {digest} is missing from {directory}", "the layout is incomplete",
                       "build or copy the whole image again")
    actual = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            actual.update(chunk)
    size = os.path.getsize(path)
    if actual.hexdigest() != expected or size != descriptor.get("size"):
        raise LabError(f"blob {digest} does not match its digest: its bytes hash to sha256:{actual.hexdigest()} "
                       f"({size} bytes, {descriptor.get('size')} expected)",
                       "the blob was changed or damaged after it was written",
                       "build or fetch the image again; a blob whose digest does not match is never applied")
    return path


# -- applying --------------------------------------------------------------------------------

def apply_layer(tar_path: str, dest_dir: str, convert_whiteout: bool = True, convert_opaque: bool = True) -> str:
    """Untar one layer into a directory of its own (overlayfs stacks the directories; nothing is copied
    over another layer), then turn its OCI marks into overlayfs's. Returns dest_dir."""
    os.makedirs(dest_dir, exist_ok=True)
    if os.listdir(dest_dir):
        raise LabError(f"{dest_dir} is not empty", "a layer goes into a directory of its own: files already "
                       "there would become part of the layer", "give a new or empty directory")
    with tarfile.open(tar_path) as tar:
        for member in tar:
            extract(tar, member, dest_dir)
    convert_whiteouts(dest_dir, whiteouts=convert_whiteout, opaque=convert_opaque)
    return dest_dir


def path_in(root: str, name: str) -> str:
    """Where a tar entry goes under root. An entry must not land outside the layer: no absolute name,
    no "..", and no symlink of the layer on the way (a link to / then "etc/passwd" would write the host's)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise LabError(f"layer entry {name!r} points outside the layer", "an absolute name or '..' in a tar "
                       "entry", "never apply this layer: its tarball is broken or hostile")
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise LabError(f"layer entry {name!r} goes through the symlink {path}", "a symlink in the layer would "
                           "send the entry outside it", "never apply this layer: its tarball is broken or hostile")
    return os.path.join(root, *parts)


def extract(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str) -> None:
    """One tar entry as a file of the layer, with the tar's own mode and numeric owner (not names looked up
    on this host). A later entry for the same name replaces the earlier, a directory merges with one."""
    path = path_in(root, member.name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path) and not (member.isdir() and os.path.isdir(path)):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    if member.isdir():
        os.makedirs(path, exist_ok=True)
    elif member.issym():
        os.symlink(member.linkname, path)  # its target is read inside the container, never followed here
    elif member.islnk():
        os.link(path_in(root, member.linkname), path)
    elif member.isreg():
        with tar.extractfile(member) as data, open(path, "wb") as out:
            shutil.copyfileobj(data, out)
    elif member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    else:
        raise LabError(f"layer entry {member.name!r} has a type the lab does not apply", "a tar entry that is "
                       "no file, directory, link or device", "leave it out of the layer")
    if os.geteuid() == 0:
        os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode)  # after chown, which clears setuid bits
        if not member.isdir():
            os.utime(path, (member.mtime, member.mtime))


def convert_whiteouts(directory: str, whiteouts: bool = True, opaque: bool = True) -> None:
    """Turn the OCI marks of an untarred layer into what overlayfs reads in a lower directory:
    .wh.NAME becomes a character device 0:0 named NAME (NAME of the layers below is gone), and
    .wh..wh..opq becomes trusted.overlay.opaque = "y" on its directory (their entries there are hidden).
    The marks themselves go: overlayfs would show them as ordinary files."""
    for top, _dirs, files in os.walk(directory):
        for name in files:
            mark = os.path.join(top, name)
            if name == OPAQUE:
                if opaque:
                    set_opaque(top)
                    os.remove(mark)
            elif name.startswith(WHITEOUT) and whiteouts:
                os.remove(mark)
                hidden = os.path.join(top, name[len(WHITEOUT):])
                if not os.path.lexists(hidden):
                    make_whiteout(hidden)
                elif os.path.isdir(hidden) and not os.path.islink(hidden):
                    set_opaque(hidden)  # this layer's own directory NAME stays, without the lower layers' one


def make_whiteout(path: str) -> None:
    """mknod(2) of a character device numbered 0:0: overlayfs's mark for a deleted name (mode 0, as its own).
    Any user may make this one device (Linux 5.8 and later); every other needs CAP_MKNOD."""
    try:
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
    except PermissionError:
        raise LabError(f"cannot make the whiteout {path}", "this kernel is older than 5.8, where mknod of any "
                       "character device, the 0:0 whiteout too, needs CAP_MKNOD (root)",
                       "apply layers as root, or on a newer kernel (the lab VM's)") from None
    if not os.path.lexists(path):
        raise LabError(f"the whiteout {path} vanished as it was made", "its directory is on an overlayfs, which "
                       "takes a 0:0 device for a whiteout of its own", "set MINICONTAINER_LAYERS to a directory on "
                       "a disk filesystem (ext4, xfs, btrfs) and apply the layers there")


def set_opaque(directory: str) -> None:
    """setxattr(2) trusted.overlay.opaque = "y": overlayfs stops looking in lower layers for this directory."""
    try:
        os.setxattr(directory, OPAQUE_XATTR, b"y")
    except OSError as e:
        if e.errno == errno.EPERM:
            raise LabError(f"cannot set {OPAQUE_XATTR} on {directory}: not permitted",
                           "trusted.* xattrs may be set only with CAP_SYS_ADMIN (root); user.* ones only by "
                           "the file's owner", "apply layers in a directory of your own, as the user who "
                           "runs the containers") from None
        if e.errno == errno.EOPNOTSUPP:
            raise LabError(f"cannot set {OPAQUE_XATTR} on {directory}: not supported",
                           f"its filesystem keeps no {OPAQUE_XATTR.split('.')[0]}.* xattrs (or no xattrs at all)",
                           "set MINICONTAINER_LAYERS to a directory on a disk filesystem (ext4, xfs, btrfs) and "
                           "apply the layers there") from None
        raise


def describe(path: str) -> str:
    """What is at path, as lstat(2) sees it (a 0:0 character device is overlayfs's whiteout)."""
    if not os.path.lexists(path):
        return "absent"
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode):
        return f"character device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISLNK(st.st_mode):
        return f"symlink to {os.readlink(path)}"
    return f"file of {st.st_size} bytes"


# -- stacking --------------------------------------------------------------------------------

def lowerdir(layer_dirs: list[str]) -> str:
    """overlayfs's lowerdir option for layer directories listed bottom first, as a manifest lists them.

    overlayfs reads lowerdir the other way: its leftmost directory is the TOP layer, its rightmost
    the bottom one. So layers 1, 2, 3 become "L3:L2:L1"."""
    for directory in layer_dirs:
        if any(c in directory for c in ":,"):
            raise LabError(f"layer directory {directory!r} contains ':' or ','", "overlayfs separates layers "
                           "with ':' and options with ','", "apply the layer under a path without them")
    return ":".join(reversed(layer_dirs))


def look_through(layer_dirs: list[str], directories: list[str], merged: str) -> dict[str, list[str]]:
    """Mount the layers (bottom first) as one read-only overlay at merged and list each directory in it:
    {directory: names}. The mount is made in a throwaway process on the host's filesystem with a mount
    namespace of its own, its mounts private: never in this process (a Jupyter kernel is multithreaded,
    and its mounts would be the host's). The overlay ends with that process."""
    from ..container import run
    from ..security import DEFAULT_CAPABILITIES, Security
    from ..spec import ContainerSpec
    # Without root, the container is rootless and the mount is made in its user namespace (see OPAQUE_XATTR).
    options = "lowerdir=" + lowerdir(layer_dirs) + ("" if os.geteuid() == 0 else ",userxattr")
    script = (f"mkdir -p {shlex.quote(merged)} && mount -t overlay overlay "
              f"-o {shlex.quote(options)} {shlex.quote(merged)} || exit 1")
    for directory in directories:
        path = shlex.quote(os.path.join(merged, directory.lstrip("/")))
        script += f"; echo '## {directory}'; ls -A {path} 2>/dev/null"
    script += "; exit 0"  # a directory that is not there lists nothing; only a failed mount is a failure
    may_mount = Security(capabilities=DEFAULT_CAPABILITIES + ["sys_admin"])
    result = run(ContainerSpec(None, ["sh", "-c", script], namespaces=("mnt",), security=may_mount))
    if result.code != 0:
        raise LabError(f"mounting the layers as an overlay failed: {result.stderr.strip()[-300:]}",
                       "a layer directory is missing, or the kernel refused the lower layers (see dmesg)",
                       "check that every layer directory exists and is on a disk filesystem")
    seen, current = {}, None
    for line in result.stdout.splitlines():
        if line.startswith("## "):
            current = seen.setdefault(line[3:], [])
        elif current is not None and line:
            current.append(line)
    return {directory: sorted(seen.get(directory, [])) for directory in directories}
