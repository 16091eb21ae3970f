"""One helper per Python caller, shared by its containers (process/shared.py): each container's start is
forked from it, and once the command runs it supervises the container itself, with no process of the
runtime's per container. What is killed, and what that leaves: nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, STARTUP_WAIT

from minicontainer import inspect, state
from minicontainer.container import Container
from minicontainer.process import shared
from minicontainer.spec import ContainerSpec
from minicontainer.stage import Stage


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie waits only for its parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return False


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return set(map(int, f.read().split()))


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + STARTUP_WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition(), what


def test_a_callers_containers_are_children_of_its_one_shared_helper_and_keep_no_helper_of_their_own(image):
    boxes = [Container.start(ContainerSpec(image, ["sleep", "60"], memory="32M")) for _ in range(3)]
    try:
        helper = shared.client().process.pid
        # Each started in a helper forked for it (an mc-helper), which hands it over and exits just after
        # Started; PID 1 of each is then the shared helper's child: it reaps them.
        wait_for(lambda: children(helper) == {box.pid for box in boxes}, "PID 1s are not the shared helper's")
        assert not any(running(box.helper.pid) for box in boxes)
        with open(f"/proc/{helper}/comm") as f:
            assert f.read().strip() == shared.NAME
        # ...and still relays what the caller asks of each.
        assert boxes[0].exec(["true"]).returncode == 0
        boxes[1].signal(signal.SIGKILL)
        assert boxes[1].wait(10) == -signal.SIGKILL
        assert boxes[0].running() and boxes[2].running()
        assert state.read_state(boxes[1].name) is None and not boxes[1].cgroup.exists()
    finally:
        for box in boxes:
            box.stop(grace=0)


def test_kill_9_of_the_shared_helper_with_20_containers_alive_leaves_nothing(image):
    boxes = [Container.start(ContainerSpec(image, ["sleep", "600"], memory="32M")) for _ in range(20)]
    helper = shared.client().process.pid
    wait_for(lambda: children(helper) == {box.pid for box in boxes}, "PID 1s are not the shared helper's")
    os.kill(helper, signal.SIGKILL)
    # The caller's watcher tears each one down from its state on disk.
    wait_for(lambda: not any(state.read_state(box.name) for box in boxes), "state dirs left behind")
    wait_for(lambda: not any(running(box.pid) for box in boxes), "a container outlived its supervisor")
    assert not any(box.cgroup.exists() for box in boxes)
    assert [box.wait(10) for box in boxes] == [-signal.SIGKILL] * 20
    # The next container gets a new shared helper.
    box = Container.start(ContainerSpec(image, ["true"]))
    assert box.wait(10) == 0
    assert shared.client().process.pid != helper


def test_one_containers_crash_does_not_disturb_the_others(image):
    first = Container.start(ContainerSpec(image, ["sleep", "60"], memory="32M"))
    second = Container.start(ContainerSpec(image, ["sleep", "60"], memory="32M"))
    try:
        # A helper killed while it starts its container (a stage, halfway): the shared helper removes it.
        stage = Stage(ContainerSpec(image, ["sleep", "60"], memory="32M"))
        stage.run_until("proc")
        pid_of_staged = stage.pid
        os.kill(stage.helper.pid, signal.SIGKILL)
        wait_for(lambda: state.read_state(stage.name) is None, "the killed helper's container was not removed")
        wait_for(lambda: not running(pid_of_staged), "the killed helper's PID 1 still runs")
        assert not stage.cgroup.exists()
        stage.teardown()  # its caller's side: the channel's EOF is all it finds
        # A PID 1 that dies (here, the OOM killer's way: SIGKILL) ends only its own container.
        os.kill(second.pid, signal.SIGKILL)
        assert second.wait(10) == -signal.SIGKILL
        assert first.running() and first.exec(["true"]).returncode == 0
        third = Container.start(ContainerSpec(image, ["true"]))
        assert third.wait(10) == 0
    finally:
        first.stop(grace=0)
        second.stop(grace=0)


def test_kill_9_of_the_caller_takes_its_containers_with_it(image):
    code = ("import time; from minicontainer.container import Container; from minicontainer.spec import "
            "ContainerSpec; from minicontainer.process import shared; "
            f"boxes = [Container.start(ContainerSpec({image!r}, ['sleep', '600'], memory='32M')) for _ in range(5)]; "
            "print(shared.client().process.pid, *[b.pid for b in boxes], flush=True); time.sleep(100)")
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    try:
        helper, *pids = map(int, caller.stdout.readline().split())
        assert all(running(pid) for pid in pids) and running(helper)
        caller.kill()  # SIGKILL: no clean-up of its own
        caller.wait()
        # Each channel's EOF: the shared helper kills and removes that container; then it exits.
        wait_for(lambda: not running(helper), "the shared helper outlived its caller")
        assert not any(running(pid) for pid in pids)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        caller.stdout.close()


def test_kill_9_of_the_caller_and_its_shared_helper_together_leaves_nothing_the_next_one_does_not_remove(image):
    # Two kinds of container: PID 1 forked by the helper, and (user namespace) by an intermediate.
    code = ("import time; from minicontainer.container import Container; from minicontainer.spec import "
            "ContainerSpec; from minicontainer.process import shared; "
            f"boxes = [Container.start(ContainerSpec({image!r}, ['sleep', '600'], memory='32M', **more)) for more in "
            "({}, {}, {'namespaces': ('user', 'pid', 'mnt', 'uts', 'ipc', 'net', 'cgroup')})]; "
            "print(shared.client().process.pid, *[f'{b.pid}:{b.name}' for b in boxes], flush=True); time.sleep(100)")
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    try:
        helper, *boxes = caller.stdout.readline().split()
        pids = [int(b.split(":")[0]) for b in boxes]
        names = [b.split(":")[1] for b in boxes]
        cgroups = [state.read_state(name)["cgroup"] for name in names]
        assert all(running(pid) for pid in pids)
        os.kill(int(helper), signal.SIGKILL)
        caller.kill()
        caller.wait()
        # No one is left to kill them: each first process was born the shared helper's child, and dies with it.
        wait_for(lambda: not any(running(pid) for pid in pids), "a container outlived its caller and supervisor")
        assert all(state.read_state(name) for name in names)  # left for the next one
        # The next shared helper of this state root removes what they left before it starts anything.
        after = subprocess.run([sys.executable, "-c", "from minicontainer.container import run; from minicontainer."
                                f"spec import ContainerSpec; print(run(ContainerSpec({image!r}, ['true'])).code)"],
                               capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
        assert after.stdout.strip() == "0", after.stderr
        assert not any(state.read_state(name) for name in names)
        assert not any(os.path.isdir(d) for dirs in cgroups for d in dirs.values())
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        caller.stdout.close()


@pytest.mark.slow
def test_100_containers_started_and_stopped_from_one_caller_leave_nothing(image):
    boxes = []
    try:
        for _ in range(100):
            boxes.append(Container.start(ContainerSpec(image, ["sleep", "600"], memory="16M")))
        helper = shared.client().process.pid
        wait_for(lambda: children(helper) == {box.pid for box in boxes}, "PID 1s are not the shared helper's")
        assert all(box.cgroup.exists() for box in boxes)
    finally:
        for box in boxes:
            box.signal(signal.SIGKILL)
        codes = [box.wait(30) for box in boxes]
    assert codes == [-signal.SIGKILL] * 100
    assert children(helper) == set()


def test_exec_and_a_look_inside_are_forks_of_the_shared_helper_not_interpreters(image):
    import threading
    with Container.start(ContainerSpec(image, ["sleep", "60"], hostname="inside")) as box:
        helper = shared.client().process.pid
        wait_for(lambda: children(helper) == {box.pid}, "PID 1 is not the shared helper's")
        with open(f"/proc/{helper}/cmdline", "rb") as f:
            helpers_command_line = f.read()
        result = {}
        running_exec = threading.Thread(target=lambda: result.update(done=box.exec(["sh", "-c", "sleep 2; exit 3"])))
        running_exec.start()
        wait_for(lambda: children(helper) - {box.pid}, "no exec process under the shared helper")
        (forked,) = children(helper) - {box.pid}
        with open(f"/proc/{forked}/cmdline", "rb") as f:
            assert f.read() == helpers_command_line  # a fork of it: no interpreter started
        running_exec.join(30)
        assert result["done"].returncode == 3
        assert inspect.hostname(box.pid) == "inside"  # setns into its UTS namespace, from a fork too
        # An exec past its timeout is killed, with what it ran inside.
        with pytest.raises(subprocess.TimeoutExpired):
            box.exec(["sleep", "60"], timeout=1)
        wait_for(lambda: children(helper) == {box.pid}, "the timed-out exec's process is still there")
        wait_for(lambda: box.cgroup.procs() == [box.pid], "the timed-out exec's command still runs")
