"""The init of ContainerSpec(init=True) / `run --init`: mcinit.c, built once with gcc -static.

It is compiled in the caller (spec.validate), so that a missing compiler is a clear error before
anything is made, and bind-mounted read-only into the container by the step "init program"
(steps.py), which also puts it in front of the command.
"""

from __future__ import annotations

import os
import signal

from .. import static_binary

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mcinit.c")
# What mcinit.c passes on to the command (its FORWARDED), and SIGCHLD, which it waits for.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGCHLD)
TARGET = "/dev/minicontainer-init"  # where the container sees it (podman puts its init at /dev/init)


def cache_dir() -> str:
    """Root's binaries go in /var/cache; a rootless user's in its own cache (it cannot write there)."""
    if "MINICONTAINER_CACHE" in os.environ:
        return os.environ["MINICONTAINER_CACHE"]
    if os.geteuid() == 0:
        return "/var/cache/minicontainer"
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "minicontainer")


def binary() -> str:
    """The host path of the built init (built by build(), which returns the same path)."""
    return os.path.join(cache_dir(), "minicontainer-init")


def build() -> str:
    """Compile mcinit.c unless the binary is newer; a LabError if gcc or the static libc is missing."""
    return static_binary.build(SOURCE, binary())
