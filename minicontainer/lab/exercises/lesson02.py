"""Exercises of notebooks/02-rootfs.ipynb."""

from __future__ import annotations

import os
import stat
import tempfile
import time

from ...errors import LabError
from ...rootfs import DEFAULT_ROOTFS
from ...spec import ContainerSpec
from .. import Exercise, layers
from ..rootfs_steps import climb_out, host_root_mounts, lower_dir, reaches_host_root, root_mount
from . import Problems, running, staged_attempt


def check_motd(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    inside, deadline = None, time.monotonic() + 3  # a container just started may not have written it yet
    while time.monotonic() < deadline and (inside or "").strip() != "hello":
        try:
            with open(f"/proc/{answer.pid}/root/etc/motd") as f:  # the file as the container sees it
                inside = f.read()
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    if inside is None:
        return ["/etc/motd does not exist in the container"]
    if inside.strip() != "hello":
        problems.append(f"/etc/motd in the container says {inside.strip()!r}, not 'hello'")
    lower = lower_dir(root_mount(answer.pid))
    if lower is None:
        problems.append("its root is not an overlay: writes would change the image itself")
    elif os.path.exists(os.path.join(lower, "etc/motd")):
        problems.append(f"the image ({lower}) has an etc/motd: it was changed, the upper dir should hold it")
    return problems


def check_pivot_root(answer) -> list[str]:
    """Run the learner's function as the pivot_root step of a fresh stage, then judge from the
    kernel: the chroot escape tried from inside PID 1, and, once started, PID 1's mount table."""
    spec = ContainerSpec(DEFAULT_ROOTFS, ["sleep", "600"])
    with staged_attempt(spec, "pivot_root", answer, start=False) as stage:
        reached = stage.call(climb_out)  # before start: only PID 1 runs learner-style functions
        try:
            box = stage.start()
        except LabError as e:
            raise Problems(f"after your pivot_root, the container could not start: {e.what}") from None
        try:
            return _judge_root(box.pid, reached)
        finally:
            box.stop(grace=0)


def _judge_root(pid: int, reached: dict) -> list[str]:
    problems = []
    root = root_mount(pid)
    if lower_dir(root) != os.path.realpath(DEFAULT_ROOTFS):
        problems.append(f"the container's / is the {root.fstype} mount from {root.source}, not the overlay "
                        "(ctx.root): the new root is the directory the overlay step mounted")
    left = host_root_mounts(pid)
    if left:
        problems.append(f"the old root is still mounted at {', '.join(left)} in the container's mount "
                        "namespace: any process there can open the host's files through it")
    if reached["device"] is None:
        problems.append(f"the escape could not be tried inside after your step {reached['os-release']}")
    elif reaches_host_root(reached):
        problems.append("the chroot escape, tried from inside after your step, reached the host's / "
                        f"(its /etc/os-release begins {reached['os-release']})")
    return problems


# The checker's own small image for rootfs-whiteouts: a base tree, and one layer above it whose marks sit at
# several depths (a whiteout of a file at the top, of a file in /etc, of a directory deeper down) and make
# one directory opaque while putting a file of its own in it.
TEST_BASE = {"notes.txt": "base\n", "etc/hostname": "base\n", "etc/hosts": "127.0.0.1 localhost\n",
             "srv/www/index.html": "old\n", "srv/www/old.html": "old\n", "usr/share/doc/old/README": "old\n"}
TEST_CHANGES = {".wh.notes.txt": "", "etc/.wh.hostname": "", "usr/share/doc/.wh.old": "",
                "srv/www/.wh..wh..opq": "", "srv/www/index.html": "new\n"}
WHITEOUTS = ("notes.txt", "etc/hostname", "usr/share/doc/old")  # what the top layer deletes
OPAQUE_DIRS = ("srv/www",)
# What the overlay of the two layers must show in each directory.
EXPECTED = {"/": ["etc", "srv", "usr"], "/etc": ["hosts"], "/srv/www": ["index.html"], "/usr/share/doc": []}


def check_whiteouts(answer) -> list[str]:
    """Apply a fresh two-layer image without conversion, run the learner's function on each layer, then
    judge from the filesystem (lstat, getxattr) and from an overlay of the two, mounted in a throwaway
    process with a mount namespace of its own."""
    if not callable(answer):
        raise Problems(f"expected a function (def my_convert_whiteouts(directory): ...), got {type(answer).__name__}")
    with tempfile.TemporaryDirectory(prefix="lab02-whiteouts-", dir=layers.WORK_DIR) as work:
        for path, text in TEST_BASE.items():
            os.makedirs(os.path.dirname(os.path.join(work, "base", path)), exist_ok=True)
            with open(os.path.join(work, "base", path), "w") as f:
                f.write(text)
        image = layers.build_image(os.path.join(work, "base"), os.path.join(work, "image"), changes=(TEST_CHANGES,))
        layer_dirs = [layers.apply_layer(layer.path, os.path.join(work, "layers", str(number)),
                                         convert_whiteout=False, convert_opaque=False)
                      for number, layer in enumerate(image.layers, 1)]
        for directory in layer_dirs:
            try:
                answer(directory)
            except Exception as e:  # the learner's code: say what it raised, where
                raise Problems(f"your function failed on {directory}: {type(e).__name__}: {e}") from None
        problems = _judge_layer(layer_dirs[-1])
        seen = layers.look_through(layer_dirs, list(EXPECTED), os.path.join(work, "merged"))
        return problems + _judge_overlay(seen)


def _judge_layer(top: str) -> list[str]:
    """The converted top layer, as lstat and getxattr read it."""
    problems = []
    for name in WHITEOUTS:
        path = os.path.join(top, name)
        found = os.lstat(path) if os.path.lexists(path) else None
        if found is None or not stat.S_ISCHR(found.st_mode) or found.st_rdev != os.makedev(0, 0):
            problems.append(f"{name} in the layer is {layers.describe(path)}, not a whiteout "
                            "(a character device 0:0)")
    for directory in OPAQUE_DIRS:
        path = os.path.join(top, directory)
        if not os.path.isdir(path):
            problems.append(f"{directory}, a directory of the layer, is {layers.describe(path)} after your function")
            continue
        mark = os.getxattr(path, layers.OPAQUE_XATTR) if layers.OPAQUE_XATTR in os.listxattr(path) else None
        if mark != b"y":
            problems.append(f"{directory} in the layer has {layers.OPAQUE_XATTR} = {mark!r}, not b'y': overlayfs "
                            "merges it with the layers below")
        if not os.path.isfile(os.path.join(path, "index.html")):
            problems.append(f"{directory}/index.html, the layer's own file in its opaque directory, is gone: "
                            "the mark hides the layers below, not the layer's own files")
    for where, _dirs, files in os.walk(top):
        problems += [f"{os.path.relpath(os.path.join(where, name), top)} is still in the layer: overlayfs "
                     "shows a mark it does not know as an ordinary file" for name in files if name.startswith(".wh.")]
    return problems


def _judge_overlay(seen: dict[str, list[str]]) -> list[str]:
    """What the kernel showed through the overlay of the two converted layers."""
    problems = []
    for directory, expected in EXPECTED.items():
        shown = seen[directory]
        for name in sorted(set(shown) - set(expected)):
            path = os.path.join(directory, name)
            if name.startswith(".wh."):
                problems.append(f"the overlay lists {path}: the marks themselves must go")
            elif directory.strip("/") in OPAQUE_DIRS:
                problems.append(f"{path}, of the layer below, shows through the overlay in {directory}, which the "
                                "top layer made opaque")
            else:
                problems.append(f"{path}, which the top layer deletes, shows through the overlay")
        for name in sorted(set(expected) - set(shown)):
            problems.append(f"{os.path.join(directory, name)} is missing from the overlay: nothing deleted it")
    return problems


EXERCISES = [
    Exercise("rootfs-motd", "Start a container `motd_box` in which /etc/motd says hello, without changing "
             "the image.",
             hints=("Who may write in the container once it runs? A write there lands in the container's own "
                    "layer, not in the image. Its command can do more than one thing.",
                    "A command ['sh', '-c', SCRIPT] runs a shell script, which may hold several commands; the "
                    "checker reads /etc/motd while the container runs, so the script's last command must last."),
             checker=check_motd),
    Exercise("rootfs-pivot-root", "Write `my_pivot_root(ctx)`, the pivot_root step: afterwards the overlay at "
             "ctx.root is the container's /, and no path leads back to the host's /.",
             hints=("chroot changed where one process's paths start, and the host's / stayed mounted: the climb "
                    "found it. What has to move is the root mount of the whole mount namespace; and then, where "
                    "does the old root go?",
                    "pivot_root(2), as kernel.pivot_root(new_root, put_old), and umount2(2), as "
                    "kernel.umount2(path, kernel.MNT_DETACH). `man 2 pivot_root` lists the rules for both "
                    "paths."),
             checker=check_pivot_root),
    Exercise("rootfs-whiteouts", "Write `my_convert_whiteouts(directory)`: in a layer as its tarball untarred it, "
             "each `.wh.NAME` becomes overlayfs's whiteout for NAME, each `.wh..wh..opq` the opaque mark on its "
             "directory, at any depth, and the marks themselves go.",
             hints=("overlayfs knows neither name from the tarball. What did it leave in the upper dir of the overlay "
                    "step where a file was deleted? And a directory has one more place to carry a mark than its "
                    "names. The marks can sit anywhere in the layer's tree.",
                    "os.walk(directory) visits every directory; os.mknod(path, stat.S_IFCHR, os.makedev(0, 0)) makes "
                    "a character device 0:0; os.setxattr(path, layers.OPAQUE_XATTR, b\"y\") marks a "
                    "directory opaque (trusted.overlay.opaque as root, user.overlay.opaque without); os.remove "
                    "takes a mark away."),
             checker=check_whiteouts),
]
