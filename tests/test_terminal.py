"""An interactive shell on a real terminal (tmux is the terminal emulator here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO

SESSION = f"mc-test-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10).stdout


def screen_until(text: str, timeout: float = 20, count: int = 1) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-t", SESSION, "-p")
        if screen.count(text) >= count:
            return screen
        time.sleep(0.1)
    pytest.fail(f"{text!r} never appeared on the terminal:\n{screen}")


def test_interactive_shell_with_job_control_ctrl_c_and_exit_status(image):
    assert shutil.which("tmux"), "tmux is installed by ./lab setup"
    command = f"PYTHONPATH={REPO} {sys.executable} -m minicontainer.cli run --hostname ttybox {image} -- sh; " \
              "echo CLI-EXIT=$?; sleep 30"
    tmux("new-session", "-d", "-s", SESSION, "-x", "100", "-y", "30", command)
    try:
        screen_until("/ #")
        tmux("send-keys", "-t", SESSION, "echo on-$(hostname); tty; sleep 30", "Enter")
        screen_until("/dev/console")
        time.sleep(0.5)  # let sleep start: the Ctrl-C is for it
        tmux("send-keys", "-t", SESSION, "C-c")  # through the pty: SIGINT to the container's foreground job
        screen_until("/ #", count=2)  # sleep was interrupted and the shell prompts again
        tmux("send-keys", "-t", SESSION, "exit 5", "Enter")
        screen = screen_until("CLI-EXIT=")
        assert "on-ttybox" in screen
        assert "job control turned off" not in screen
        assert "CLI-EXIT=5" in screen
    finally:
        tmux("kill-session", "-t", SESSION)
