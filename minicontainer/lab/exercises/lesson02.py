"""Exercises of notebooks/02-rootfs.ipynb."""

from __future__ import annotations

import os
import time

from ...errors import LabError
from ...rootfs import DEFAULT_ROOTFS
from ...spec import ContainerSpec
from .. import Exercise
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
]
