"""Paths inside a container's new root, resolved as the container will resolve them.

A leaf: it imports nothing of the runtime but its error type, so every mechanism may use it.
"""

from __future__ import annotations

import os

from .errors import LabError


def path_in(root: str, path: str) -> str:
    """Where `path` is inside `root`, each component resolved as the container will resolve it: a symlink
    in the image (absolute or with ..) never leads out of root. Before pivot_root the host's tree is still
    there, so a plain os.path.join(root, path) that meets /etc -> /../../etc would mount over the host's
    (runc's CVE-2021-30465 was this class). Missing components are kept as they are, to be created."""
    parts, done, links = [p for p in path.split("/") if p not in ("", ".")], [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]  # .. of the root is the root
            continue
        here = os.path.join(root, *done, part)
        if os.path.islink(here):
            links += 1
            if links > 40:
                raise LabError(f"{path}: too many symlinks in the image", "a symlink loop", "fix the image")
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            if target.startswith("/"):
                done = []
            continue
        done.append(part)
    return os.path.join(root, *done)
