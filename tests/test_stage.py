"""The staged container: built one step at a time from the one step list, inspected between steps,
extended by a learner's own function, created then started; and nothing left however it ends."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, STARTUP_WAIT, assert_back_to, cli, kernel_state

from minicontainer import inspect, kernel, namespaces, state
from minicontainer.container import LIVE, Container
from minicontainer.errors import LabError
from minicontainer.process import steps
from minicontainer.spec import ContainerSpec
from minicontainer.stage import Stage


def differing(pid: int) -> set[str]:
    """The namespace kinds in which pid is not where this (host) process is."""
    mine, theirs = namespaces.identities("self"), namespaces.identities(pid)
    return {kind for kind in theirs if theirs[kind] != mine[kind]}


def kernel_view(pid: int) -> dict:
    st = inspect.status(pid)
    mounts = sorted((m.mount_point, m.fstype) for m in inspect.mounts(pid))
    stats = inspect.cgroup_of(pid).stats()
    return {"namespaces": differing(pid), "mounts": mounts,
            "limits": (stats["memory_limit"], stats["pids_limit"], stats["cpu_limit"]),
            **{k: st[k] for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "Seccomp", "NoNewPrivs")}}


def test_a_stage_ends_in_the_state_run_makes(image):
    def spec(name):
        return ContainerSpec(image, ["sleep", "60"], name=name, memory="48M", pids=20, cpus=0.5)
    with Container.start(spec("whole")) as whole:
        stage = Stage(spec("staged"))
        while stage.next_step:
            stage.next()
        with stage.start() as built:
            assert kernel_view(built.pid) == kernel_view(whole.pid)
            assert inspect.process(built.pid).command == "sleep"


def test_between_two_steps_the_kernel_shows_what_the_step_did(image):
    with Stage(ContainerSpec(image, ["sleep", "60"])) as stage:
        assert stage.pid == 0
        stage.run_until("fork PID 1")
        assert differing(stage.pid) == {"pid"}          # PID 1 of a new PID namespace, nothing else yet
        assert inspect.status(stage.pid)["NSpid"].split()[-1] == "1"
        stage.run_until("join cgroup")
        stage.run("unshare uts")                       # out of order: only the UTS namespace is new
        assert differing(stage.pid) == {"pid", "uts"}
        stage.run_until("overlay")
        assert differing(stage.pid) >= {"mnt", "ipc", "net", "cgroup"}
        before = {m.mount_point for m in inspect.mounts(stage.pid)}
        assert "/" in before and any(p.endswith("/merged") for p in before)
        stage.run_until("pivot_root")
        after = inspect.mounts(stage.pid)
        roots = [m for m in after if m.mount_point == "/"]
        assert [m.fstype for m in roots] == ["overlay"]  # the host's root is gone from its table
        assert not any(m.mount_point.endswith("/merged") or m.mount_point.startswith("/.oldroot") for m in after)


def test_a_step_that_would_act_on_the_host_is_refused_out_of_order(image):
    host = socket.gethostname()
    with Stage(ContainerSpec(image, ["true"], hostname="inside")) as stage:
        stage.run_until("fork PID 1")
        with pytest.raises(LabError, match="(?s)cannot run yet.*unshare uts"):
            stage.run("hostname")
        with pytest.raises(LabError, match="no step 'frobnicate'"):
            stage.run("frobnicate")
        stage.run_until("hostname")                    # the stage is still usable
        assert inspect.hostname(stage.pid) == "inside" and socket.gethostname() == host


def test_a_learner_function_runs_inside_pid_1(image):
    def my_hostname(ctx):
        kernel.sethostname("mine")  # noqa: F821  (the stage gives it the runtime's wrappers)
        return {"uts": os.readlink("/proc/self/ns/uts"), "pid": os.getpid(), "root": ctx.root}

    host = socket.gethostname()
    with Stage(ContainerSpec(image, ["true"])) as stage:
        with pytest.raises(LabError, match="cannot run yet"):
            stage.call(my_hostname)                    # before its mounts are private: refused
        stage.run_until("mounts private")
        answer = stage.call(my_hostname)
        assert answer["uts"] == f"uts:[{namespaces.identities(stage.pid)['uts']}]" and answer["pid"] == 1
        assert inspect.hostname(stage.pid) == "mine" and socket.gethostname() == host
        assert answer["root"].endswith("/merged")


def test_a_learner_function_that_fails_names_itself_and_the_call(image):
    def make_it(ctx):
        os.rmdir("/no-such-dir")

    def broken():
        return 1 / 0

    with Stage(ContainerSpec(image, ["true"])) as stage:
        stage.run_until("mounts private")
        with pytest.raises(LabError) as caught:
            stage.call(make_it)
        message = str(caught.value)
        assert 'make_it() at line 2: os.rmdir("/no-such-dir")' in message and "ENOENT" in message
        with pytest.raises(LabError, match=r"broken\(\) at line 2: return 1 / 0 raised ZeroDivisionError"):
            stage.call(broken)
        stage.next()                                   # still usable
        assert not stage.ended


def test_a_learner_function_that_never_returns_tears_the_stage_down(image):
    def forever():
        while True:
            pass

    before = kernel_state()
    stage = Stage(ContainerSpec(image, ["true"], memory="32M"))
    stage.run_until("mounts private")
    with pytest.raises(LabError, match=r"(?s)forever\(\) did not return within 1 s.*torn down"):
        stage.call(forever, timeout=1)
    assert stage.ended and stage.name not in LIVE
    assert_back_to(before)
    with pytest.raises(LabError, match="has ended"):
        stage.next()


def test_a_kernel_restart_in_the_middle_of_a_stage_leaves_nothing(image):
    before = kernel_state()
    code = ("import sys, time; from minicontainer.stage import Stage; from minicontainer.spec import ContainerSpec; "
            f"s = Stage(ContainerSpec({image!r}, ['sleep', '60'], memory='32M')); s.run_until('pivot_root'); "
            "print(s.pid, flush=True); time.sleep(100)")
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    pid = int(kernel.stdout.readline())
    assert "overlay" in [m.fstype for m in inspect.mounts(pid)]
    os.killpg(kernel.pid, signal.SIGKILL)
    kernel.wait()
    assert_back_to(before, within=5)


def test_created_then_started(image):
    box = Container.create(ContainerSpec(image, ["sleep", "60"]))
    try:
        assert box.status == "created"
        assert "python" in inspect.process(box.pid).command  # PID 1 exists, but is not the command yet
        assert differing(box.pid) >= {"pid", "mnt", "uts", "ipc", "net"}
        box.start()
        assert box.status == "running" and inspect.process(box.pid).command == "sleep"
    finally:
        box.stop(grace=0.2)


def test_a_created_container_that_is_never_started_leaves_nothing(image):
    before = kernel_state()
    box = Container.create(ContainerSpec(image, ["sleep", "60"], memory="32M"))
    assert box.cgroup.exists()
    box.stop()
    assert box.status == "stopped"
    assert_back_to(before)


def test_a_container_not_kept_in_a_variable_keeps_running(image):
    Container.start(ContainerSpec(image, ["sleep", "60"], name="not-kept"))
    gc.collect()
    time.sleep(0.3)
    info = state.read_state("not-kept")
    assert info and info["status"] == "running" and state.process_alive(info["init_pid"], info["init_start"])
    LIVE["not-kept"].stop(grace=0.2)


def test_run_v_prints_the_step_list(image):
    out = cli("run", "-v", "--memory", "32M", image, "--", "true")
    assert out.returncode == 0, out.stderr
    printed = [line[3:].split(":")[0] for line in out.stderr.splitlines() if line.startswith("=> ")]
    spec = ContainerSpec(image, ["true"], memory="32M")
    assert printed == [s.name for s in steps.plan(spec)]


def test_exec_runs_the_defence_steps(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        out = box.exec(["cat", "/proc/self/status"]).stdout
    got = {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    assert got["Seccomp_filters"] == "2" and got["NoNewPrivs"] == "1" and int(got["CapInh"], 16) == 0
    assert set(steps.PROCESS_DEFENCES) <= {s.name for s in steps.STEPS}


def test_a_stage_is_torn_down_by_teardown_and_by_lab_reset(image):
    from minicontainer import lab
    before = kernel_state()
    first = Stage(ContainerSpec(image, ["true"], memory="32M"))
    first.run_until("dev")
    first.teardown()
    second = Stage(ContainerSpec(image, ["true"], memory="32M"))
    second.run_until("fork PID 1")
    assert second.name in lab.reset()
    assert first.ended and second.ended
    assert_back_to(before)


@pytest.mark.parametrize("kinds", [("user", "mnt", "pid", "uts")], ids=["user namespace"])
def test_a_stage_with_a_user_namespace(image, kinds):
    with Stage(ContainerSpec(image, ["id", "-u"], namespaces=kinds)) as stage:
        stage.run_until("user namespace")
        assert stage.pid == 0  # the intermediate owns the user namespace; PID 1 comes later
        stage.run_until("fork PID 1")
        assert inspect.id_map(stage.pid)[0].outside == 100000 and differing(stage.pid) >= {"user", "pid"}
        with stage.start() as box:
            assert box.wait(STARTUP_WAIT) == 0


def test_a_stage_whose_command_cannot_run_says_so_on_start(image):
    before = kernel_state()
    stage = Stage(ContainerSpec(image, ["no-such-program"], memory="32M"))
    with pytest.raises(LabError, match="not found in the container"):
        stage.start()
    assert stage.ended and stage.name not in LIVE
    assert_back_to(before)


def test_only_safe_steps_move_and_exec_is_start(image):
    with Stage(ContainerSpec(image, ["true"], root_switch="chroot", read_only_root=True)) as stage:
        for name in ("fork PID 1", "read-only root", "mounts private"):
            with pytest.raises(LabError, match="runs only in its place"):
                stage.run(name)
        with pytest.raises(LabError, match="exec is the last step"):
            stage.run_until("exec")
        assert stage.done == [] and not stage.ended


def test_a_name_in_use_is_refused_without_touching_that_container(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"], name="twin")) as first:
        with pytest.raises(LabError, match="already runs in this process"):
            Container.start(ContainerSpec(image, ["true"], name="twin"))
        out = cli("run", "--name", "twin", image, "--", "true")  # another process: its helper refuses
        assert out.returncode == 125 and "already exists" in out.stderr
        assert state.read_state("twin")["status"] == "running" and first.exec(["true"]).returncode == 0
        assert first.cgroup.exists()


def test_a_user_container_dies_with_its_helper(image):
    # setuid clears PR_SET_PDEATHSIG: the user step sets it again.
    code = ("import time; from minicontainer.container import Container; from minicontainer.spec import "
            f"ContainerSpec; box = Container.start(ContainerSpec({image!r}, ['sleep', '600'], user='1000:1000')); "
            "print(box.pid, box.helper.pid, flush=True); time.sleep(100)")
    # Its own helper (forked by the caller), which stays its parent; see test_shared_helper.py for a helper
    # shared by a caller's containers.
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO, MINICONTAINER_HELPER="fork"),
                              start_new_session=True)
    try:
        pid, helper = map(int, caller.stdout.readline().split())
        assert inspect.process(pid).uids[0] == 1000
        os.kill(helper, signal.SIGKILL)
        deadline = time.monotonic() + STARTUP_WAIT
        while state.process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not state.process_alive(pid), "PID 1 outlived its helper"
    finally:
        os.killpg(caller.pid, signal.SIGKILL)
        caller.wait()
        cli("cleanup")


# -- a learner's step in place of the runtime's -------------------------------------------------

def my_pivot_root(ctx):
    """The learner's pivot_root, written with the runtime's wrappers (the stage gives them)."""
    old = ctx.root + "/.mine"
    os.makedirs(old, exist_ok=True)
    kernel.pivot_root(ctx.root, old)  # noqa: F821
    os.chdir("/")
    kernel.umount2("/.mine", kernel.MNT_DETACH)  # noqa: F821
    os.rmdir("/.mine")
    return "pivoted"


def skip_it(ctx):
    return "did nothing"


def test_a_replaced_step_is_the_learners_and_the_runtimes_never_runs(image):
    with Stage(ContainerSpec(image, ["sleep", "60"])) as stage:
        stage.run_until("mask paths")
        assert stage.next_step == "pivot_root"
        assert stage.replace("pivot_root", my_pivot_root) == "pivoted"
        assert ("pivot_root", "your function my_pivot_root() instead of the runtime's") in stage.log
        assert [m.fstype for m in inspect.mounts(stage.pid) if m.mount_point == "/"] == ["overlay"]
        assert not inspect.mount_namespace_root_is_host(stage.pid)
        with stage.start() as box:
            assert box.exec(["cat", "/etc/hostname"]).returncode in (0, 1)  # it runs, in its own root
            assert not inspect.mount_namespace_root_is_host(box.pid)

    # A function that does nothing in its place: the runtime's pivot_root did not run either.
    with Stage(ContainerSpec(image, ["sleep", "60"])) as stage:
        stage.run_until("mask paths")
        stage.replace("pivot_root", skip_it)
        assert inspect.mount_namespace_root_is_host(stage.pid)


def test_a_helper_step_and_an_intermediate_step_can_be_replaced(image):
    def my_limit(ctx):
        directory = ctx.cgroup.dirs["pids"]
        with open(os.path.join(directory, "pids.max"), "w") as f:
            f.write("7")

    def my_id_maps(ctx):
        pid = ctx.paths["intermediate_pid"]
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("0 100000 1000\n")  # the spec's range, but only 1000 ids

    spec = ContainerSpec(image, ["sleep", "60"], pids=20, namespaces=("user", "mnt", "pid", "uts", "ipc"))
    with Stage(spec) as stage:
        stage.run_until("cgroup")
        stage.replace("limits", my_limit)               # in the helper: pids 7, not the spec's 20
        assert inspect.cgroup_of(stage.helper.pid).stats()["pids_limit"] is None  # the helper's own group: untouched
        stage.run_until("user namespace")
        stage.replace("id maps", my_id_maps)           # written by the helper, for the intermediate
        with stage.start() as box:
            assert inspect.cgroup_of(box.pid).stats()["pids_limit"] == 7
            with open(f"/proc/{box.pid}/uid_map") as f:
                assert f.read().split() == ["0", "100000", "1000"]  # the runtime's map has 65536


def test_a_step_is_replaced_only_in_its_place_and_a_failure_changes_nothing(image):
    def broken(ctx):
        raise OSError(1, "Operation not permitted", "/x")

    with Stage(ContainerSpec(image, ["true"], hostname="inside")) as stage:
        with pytest.raises(LabError, match="not the next step"):
            stage.replace("hostname", skip_it)
        with pytest.raises(LabError, match="cannot be replaced"):
            stage.replace("cgroup", skip_it)
        with pytest.raises(LabError, match="define the function with def"):
            stage.replace("cgroup", lambda ctx: None)
        stage.run_until("unshare cgroup")
        with pytest.raises(LabError, match=r"(?s)broken\(\) at line 2.*EPERM"):
            stage.replace("mounts private", broken)
        assert "mounts private" not in stage.done and stage.next_step == "mounts private"
        stage.next()                                    # the runtime's own version still runs
        assert "mounts private" in stage.done


def test_steps_that_ran_before_one_that_failed_count_as_done(image, tmp_path):
    # The bind's source goes after the spec was checked: run_until stops at the bind step.
    source = tmp_path / "data"
    source.mkdir()
    with Stage(ContainerSpec(image, ["true"], binds=[(str(source), "/data", False)])) as stage:
        source.rmdir()
        with pytest.raises(LabError, match=r"\[binds\]"):
            stage.run_until("pivot_root")
        assert "overlay" in stage.done and stage.next_step == "binds"
        assert any(m.mount_point.endswith("/merged") for m in inspect.mounts(stage.pid))  # the overlay is there
