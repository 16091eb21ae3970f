"""Small static C programs that lessons run inside containers, where busybox cannot make the calls.

Each is compiled once with `gcc -static` into a cache and bind-mounted read-only into the
container that runs it, so the image never changes.
"""

from __future__ import annotations

import os
import shutil

from ... import static_binary
from ...errors import LabError
from ...process import mcinit

SOURCES = os.path.dirname(os.path.abspath(__file__))
# Root's in /var/cache/minicontainer, an unprivileged learner's (a class host's) in their own cache, as the init's.
CACHE = os.environ.get("MINICONTAINER_PAYLOADS") or os.path.join(mcinit.cache_dir(), "payloads")


def source(name: str) -> str:
    path = os.path.join(SOURCES, f"{name}.c")
    if not os.path.isfile(path):
        known = sorted(f[:-2] for f in os.listdir(SOURCES) if f.endswith(".c"))
        raise LabError(f"no payload named {name!r}", "payloads are the .c files in minicontainer/lab/payloads",
                       f"use one of: {', '.join(known)}")
    return path


def build(name: str) -> str:
    """Compile payload `name` (if its source is newer than the binary) and return the binary's path."""
    return static_binary.build(source(name), os.path.join(CACHE, name))


def build_setuid(name: str) -> str:
    """A copy of payload `name` owned by root with the setuid bit: it runs as root whoever starts it,
    unless no_new_privs (or a nosuid mount) stops that."""
    if os.geteuid() != 0:
        raise LabError("only root can make a setuid-root program", "the copy must belong to root, and giving a file "
                       "to another user needs CAP_CHOWN on the host, which an unprivileged user (a class host's "
                       "learner) has not", "run it on the lab VM, as root")
    binary, copy = build(name), os.path.join(CACHE, f"{name}-setuid")
    if not os.path.exists(copy) or os.path.getmtime(copy) < os.path.getmtime(binary):
        shutil.copy2(binary, copy + ".tmp")
        os.chown(copy + ".tmp", 0, 0)
        os.chmod(copy + ".tmp", 0o4755)
        os.replace(copy + ".tmp", copy)
    return copy
