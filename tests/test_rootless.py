"""Rootless: an unprivileged user runs a container in a user namespace where root is that user."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO

# The venv's interpreter may live under /root (pyenv), out of an unprivileged user's reach;
# the runtime's core needs only the standard library, so the system Python serves.
SYSTEM_PYTHON = "/usr/bin/python3"
# An unprivileged uid with no name: not 65534, which is also the overflow uid (how an unmapped id
# shows inside a user namespace), so a map to it could not be told from no map at all.
UID = 20000
UNPRIVILEGED = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
STATE_ROOT = f"/tmp/minicontainer-{UID}"  # state.py's default for a user without XDG_RUNTIME_DIR


def as_user(*args: str) -> subprocess.CompletedProcess:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing (./lab setup installs python3)")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    out = subprocess.run(UNPRIVILEGED + ["env", f"PYTHONPATH={REPO}", SYSTEM_PYTHON, "-m", "minicontainer.cli",
                                          *args], capture_output=True, text=True, timeout=60, cwd="/", env=env)
    left = [n for n in os.listdir(STATE_ROOT) if not n.startswith(".")] if os.path.isdir(STATE_ROOT) else []
    assert not left, f"the rootless run left state behind: {left}"
    return out


def test_rootless_container_as_an_unprivileged_user(image):
    out = as_user("run", "--rootless", image, "--", "sh", "-c",
                    "id -u; cat /proc/self/uid_map; echo $$; grep NoNewPrivs /proc/self/status")
    assert out.returncode == 0, out.stderr
    uid, uid_map, pid, nnp = out.stdout.strip().splitlines()
    assert uid == "0"                               # root inside...
    assert uid_map.split() == ["0", str(UID), "1"]  # ...is the unprivileged user outside
    assert pid == "1" and nnp.split()[1] == "1"


def test_rootless_says_plainly_that_limits_are_not_applied(image):
    out = as_user("run", "-v", "--rootless", "--memory", "32M", image, "--", "true")
    assert out.returncode == 0, out.stderr
    assert "no limits are applied" in out.stderr and "memory=32M: NOT applied" in out.stderr


def test_without_root_or_rootless_the_error_says_what_to_do(image):
    out = as_user("run", image, "--", "true")
    assert out.returncode == 125 and "--rootless" in out.stderr
