"""Small static C programs, compiled on this machine with `gcc -static` and cached: they run inside
containers whose image has no C library of its own (busybox's), so they must need none.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .errors import LabError


def build(source: str, binary: str) -> str:
    """Compile source into binary (unless the binary is newer) and return the binary's path."""
    if os.path.exists(binary) and os.path.getmtime(binary) >= os.path.getmtime(source):
        return binary
    if not shutil.which("gcc"):
        raise LabError("gcc not found", "small static C programs (--init, the lessons' payloads) are compiled "
                       "on this machine with gcc -static", "apt-get install gcc libc6-dev (./lab setup does this)")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    built = subprocess.run(["gcc", "-static", "-O2", "-o", binary + ".tmp", source], capture_output=True, text=True)
    if built.returncode != 0:
        raise LabError(f"compiling {os.path.basename(source)} failed: {built.stderr.strip()[-300:]}",
                       "static linking needs libc.a", "apt-get install libc6-dev")
    os.replace(binary + ".tmp", binary)  # a half-written binary is never run
    return binary
