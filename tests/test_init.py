"""ContainerSpec(init=True) / `run --init`: a small init (process/mcinit.c) as PID 1, the command as PID 2.

Each test runs the same container with and without the init and requires the outcome to differ:
what it checks is what the init changes in the kernel's view, not what our code wrote.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from minicontainer.container import Container, run
from minicontainer.errors import LabError
from minicontainer.namespaces import DEFAULT_KINDS
from minicontainer.spec import ContainerSpec
from minicontainer.stage import Stage

WITH_AND_WITHOUT = pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])


def status_field(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(name + ":"))


def children_of(pid: int) -> list[int]:
    """PIDs (as the host sees them) whose parent is pid, zombies included, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(status_field(int(entry), "PPid")) == pid:
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                continue  # it ended while we looked
    return found


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


@WITH_AND_WITHOUT
def test_init_is_pid_1_and_the_command_pid_2(image, init):
    with Container.start(ContainerSpec(image, ["sleep", "600"], init=init)) as box:
        if init:
            assert comm(box.pid) == "minicontainer-i"  # comm is the first 15 bytes of the name
            deadline = time.monotonic() + 5
            while [comm(c) for c in children_of(box.pid)] != ["sleep"] and time.monotonic() < deadline:
                time.sleep(0.05)  # the init has just been exec'd; it forks, and its child execs, next
            (child,) = children_of(box.pid)
            assert comm(child) == "sleep" and status_field(child, "NSpid").split()[-1] == "2"
            # The runtime execs the init with the signals it passes on blocked; the command must not
            # inherit that mask (a blocked SIGTERM would never end it).
            assert int(status_field(child, "SigBlk"), 16) == 0
        else:
            time.sleep(0.3)
            assert comm(box.pid) == "sleep" and children_of(box.pid) == []
        assert status_field(box.pid, "NSpid").split()[-1] == "1"


@WITH_AND_WITHOUT
def test_sigterm_ends_a_shell_that_as_pid_1_ignores_it(image, init):
    # sh -c 'sleep 600' as PID 1 has no SIGTERM handler: the kernel drops the signal. Under the init
    # sh is PID 2, its default action (terminate) applies, and the init exits as sh did.
    with Container.start(ContainerSpec(image, ["sh", "-c", "sleep 600; echo not reached"], init=init)) as box:
        time.sleep(0.3)  # sh is running sleep
        box.signal(signal.SIGTERM)
        if init:
            assert box.wait(timeout=10) == 128 + signal.SIGTERM
        else:
            with pytest.raises(TimeoutError):
                box.wait(timeout=2)
            assert status_field(box.pid, "State").startswith("S")


@WITH_AND_WITHOUT
def test_a_sigterm_before_the_exec_is_not_lost(image, init):
    # A signal that reaches PID 1 while it starts (here: stopped before exec, a staged container) finds
    # a process without a handler, and the kernel drops it; with init the runtime has blocked it, so it
    # waits, and the init passes it on once it runs.
    stage = Stage(ContainerSpec(image, ["sleep", "600"], init=init))
    try:
        stage.run_until([name for name, _, _ in stage.steps][-2])  # every step but exec
        os.kill(stage.pid, signal.SIGTERM)
        with stage.start() as box:
            if init:
                assert box.wait(timeout=10) == 128 + signal.SIGTERM
            else:
                with pytest.raises(TimeoutError):
                    box.wait(timeout=1)
    finally:
        stage.teardown()  # if it never started


@WITH_AND_WITHOUT
def test_orphans_are_reaped(image, init):
    with Container.start(ContainerSpec(image, ["sleep", "600"], init=init)) as box:
        # The exec'd sh ends at once; its background sleep, orphaned, is made a child of PID 1.
        assert box.exec(["sh", "-c", "sleep 0.2 >/dev/null 2>&1 & exit 0"]).returncode == 0
        deadline = time.monotonic() + 5
        zombies = []
        while time.monotonic() < deadline:
            time.sleep(0.3)
            states = {pid: status_field(pid, "State") for pid in children_of(box.pid)}
            zombies = [pid for pid, s in states.items() if s.startswith("Z")]
            if zombies or (init and len(states) == 1):
                break
        if init:
            assert zombies == [], "the init waits for every child that ends"
        else:
            assert len(zombies) == 1, "sleep as PID 1 never waits: the orphan stays a zombie"


@WITH_AND_WITHOUT
def test_exit_status_passes_through(image, init):
    assert run(ContainerSpec(image, ["sh", "-c", "exit 3"], init=init)).code == 3
    # sh sends itself SIGTERM: as PID 2 that ends it (128 + 15, as a shell reports it); as PID 1
    # the kernel drops the signal and sh goes on to exit 0.
    code = run(ContainerSpec(image, ["sh", "-c", "kill -TERM $$; exit 0"], init=init)).code
    assert code == (128 + signal.SIGTERM if init else 0)


def test_init_needs_a_pid_namespace(image):
    with pytest.raises(LabError, match="init=True needs the pid namespace"):
        ContainerSpec(image, ["true"], namespaces=("mnt", "uts"), init=True).validate()


@WITH_AND_WITHOUT
def test_init_in_a_user_namespace(image, init):
    # Root inside is an unprivileged uid outside, which may not create files in the image's directories
    # (they belong to a uid the namespace does not map): the init goes in the container's own /dev.
    spec = ContainerSpec(image, ["sh", "-c", "kill -TERM $$; exit 0"], namespaces=("user", *DEFAULT_KINDS),
                         init=init)
    assert run(spec).code == (128 + signal.SIGTERM if init else 0)
