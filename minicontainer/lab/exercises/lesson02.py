"""Exercises of notebooks/02-rootfs.ipynb."""

from __future__ import annotations

import os
import time

from ... import inspect, namespaces
from .. import Exercise
from . import running


def _lower_dir(pid: int) -> str | None:
    """The image under the container's overlay root, read from its mountinfo."""
    for mount in inspect.mounts(pid):
        if mount.mount_point == "/" and mount.fstype == "overlay":
            options = dict(o.split("=", 1) for o in mount.super_options.split(",") if "=" in o)
            return options.get("lowerdir")
    return None


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
    lower = _lower_dir(answer.pid)
    if lower is None:
        problems.append("its root is not an overlay: writes would change the image itself")
    elif os.path.exists(os.path.join(lower, "etc/motd")):
        problems.append(f"the image ({lower}) has an etc/motd: it was changed, the upper dir should hold it")
    return problems


def check_no_escape(answer) -> list[str]:
    problems = running(answer)
    if problems:
        return problems
    if namespaces.ns_inode(answer.pid, "mnt") == namespaces.ns_inode("self", "mnt"):
        return ["it shares this kernel's mount namespace"]
    if inspect.mount_namespace_root_is_host(answer.pid):
        problems.append("the root of its mount namespace is still the host's /: a chroot can be climbed out of "
                        "(switch the root with pivot_root and detach the old one)")
    return problems


EXERCISES = [
    Exercise("rootfs-motd", "Start a container `box` in which /etc/motd says hello, without changing the image.",
             "the command can write the file itself: sh -c 'echo hello > /etc/motd; sleep 600'", check_motd),
    Exercise("rootfs-no-escape", "Start a container `box` from which the chroot escape cannot reach the host.",
             "root_switch='pivot_root' (the default) detaches the host's tree", check_no_escape),
]
