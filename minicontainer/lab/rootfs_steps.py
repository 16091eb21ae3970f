"""Lesson 02's tools: functions a stage runs inside PID 1 (Stage.call), and readings of its mount table.

The functions sent into PID 1 travel as source and run there with only the runtime's globals
(os, kernel, ...): they use nothing else, and write nothing.
"""

from __future__ import annotations

import os
import stat

from .. import inspect


def climb_out(ctx) -> dict:
    """The chroot escape, in a child of PID 1 (PID 1's own root stays as it is). Returns what the
    child reached: the device and inode of its "/" and the first line of its /etc/os-release.

    chroot(2) moves only where "/" is for path lookups; the working directory stays where it was.
    So: chroot into a subdirectory while the working directory is above it, climb with "..",
    which no longer stops anywhere, and chroot(".") where the climb ends. It writes nothing, on
    either side: the subdirectory is one that exists, and where it lands it only reads."""
    below = [e.path for e in os.scandir(ctx.root) if e.is_dir(follow_symlinks=False)]
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.chdir(ctx.root)
            os.chroot(below[0])           # "/" is now a subdirectory; the working directory is above it
            for _ in range(64):
                os.chdir("..")            # nothing stops the climb at the old "/"
            os.chroot(".")                # wherever the climb ended is "/" now
            reached = os.stat("/")
            with open("/etc/os-release") as f:
                first_line = f.readline().strip()
            os.write(write_end, f"{reached.st_dev} {reached.st_ino} {first_line}".encode())
        except (OSError, IndexError) as e:
            os.write(write_end, f"- - (the climb failed: {e})".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    answer = os.read(read_end, 4096).decode()
    os.close(read_end)
    device, inode, first_line = answer.split(" ", 2)
    return {"device": None if device == "-" else int(device), "inode": None if inode == "-" else int(inode),
            "os-release": first_line}


def reaches_host_root(reached: dict) -> bool:
    """Is the directory climb_out reached this kernel's own "/"? (same device and inode)"""
    here = os.stat("/")
    return (reached["device"], reached["inode"]) == (here.st_dev, here.st_ino)


def _device_and_root(pid: int | str) -> list[tuple[str, str, str]]:
    """(major:minor, root within the filesystem, mount point) of each line of /proc/PID/mountinfo."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return [tuple(line.split()[2:5]) for line in f]


def host_root_mounts(pid: int) -> list[str]:
    """Where, in pid's mount table, this kernel's root filesystem is mounted whole: the paths that lead
    to the host's "/". [] once pivot_root has swapped the root and the old one is detached."""
    host_root = [(device, root) for device, root, point in _device_and_root("self") if point == "/"][-1]
    return [point for device, root, point in _device_and_root(pid) if (device, root) == host_root]


def root_mount(pid: int) -> inspect.Mount:
    """The mount at "/" as pid sees it (the last one, if several are stacked)."""
    return [m for m in inspect.mounts(pid) if m.mount_point == "/"][-1]


def lower_dir(mount: inspect.Mount) -> str | None:
    """An overlay mount's lowerdir (the image), from its options in mountinfo."""
    options = dict(o.split("=", 1) for o in mount.super_options.split(",") if "=" in o)
    return options.get("lowerdir") if mount.fstype == "overlay" else None


def upper_entries(upper: str) -> dict[str, str]:
    """What an overlay's upper dir holds: path -> "file", "directory" or "whiteout" (a 0:0 character
    device: the mark overlayfs leaves where a file of the image was deleted)."""
    entries = {}
    for top, dirs, files in os.walk(upper):
        for name in dirs + files:
            path = os.path.join(top, name)
            mode = os.lstat(path)
            kind = "directory" if stat.S_ISDIR(mode.st_mode) else "file"
            if stat.S_ISCHR(mode.st_mode) and mode.st_rdev == 0:
                kind = "whiteout"
            entries[os.path.relpath(path, upper)] = kind
    return entries
