"""Rootless: an unprivileged user runs a container in a user namespace where root is that user."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO

# The venv's interpreter may live under /root (pyenv), out of an unprivileged user's reach;
# the runtime's core needs only the standard library, so the system Python serves.
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*args: str) -> subprocess.CompletedProcess:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing (./lab setup installs python3)")
    return subprocess.run(NOBODY + ["env", f"PYTHONPATH={REPO}", SYSTEM_PYTHON, "-m", "minicontainer.cli", *args],
                          capture_output=True, text=True, timeout=60, cwd="/")


def test_rootless_container_as_an_unprivileged_user(image):
    out = as_nobody("run", "--rootless", image, "--", "sh", "-c",
                    "id -u; cat /proc/self/uid_map; echo $$; grep NoNewPrivs /proc/self/status")
    assert out.returncode == 0, out.stderr
    uid, uid_map, pid, nnp = out.stdout.strip().splitlines()
    assert uid == "0"                               # root inside...
    assert uid_map.split() == ["0", "65534", "1"]   # ...is nobody outside
    assert pid == "1" and nnp.split()[1] == "1"


def test_rootless_says_plainly_that_limits_are_not_applied(image):
    out = as_nobody("run", "-v", "--rootless", "--memory", "32M", image, "--", "true")
    assert out.returncode == 0, out.stderr
    assert "no limits are applied" in out.stderr and "memory=32M: NOT applied" in out.stderr


def test_without_root_or_rootless_the_error_says_what_to_do(image):
    out = as_nobody("run", image, "--", "true")
    assert out.returncode == 125 and "--rootless" in out.stderr
