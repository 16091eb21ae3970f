"""The command line as a learner types it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, STARTUP_WAIT, cli

from minicontainer.cgroups import base_dir, detect


def test_done_when_command(image):
    """`run --memory 32M --pids 16 --hostname box ROOTFS -- sh -c 'hostname; echo $$'`, limits visible meanwhile."""
    proc = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run",
                             "--name", "done-when", "--memory", "32M", "--pids", "16", "--hostname", "box",
                             image, "--", "sh", "-c", "hostname; echo $$; sleep 1"],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    deadline = time.monotonic() + STARTUP_WAIT
    state = "/run/minicontainer/done-when/state.json"
    while not os.path.exists(state) and time.monotonic() < deadline:
        time.sleep(0.02)
    layout = detect()
    memory_dir = os.path.join(os.path.dirname(layout.controllers["memory"].own_dir) if layout.version_of("memory") == 2
                              else layout.controllers["memory"].own_dir, "minicontainer", "done-when")
    time.sleep(0.3)
    limit_file = "memory.max" if layout.version_of("memory") == 2 else "memory.limit_in_bytes"
    with open(os.path.join(memory_dir, limit_file)) as f:
        assert int(f.read()) == 32 << 20
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out.split() == ["box", "1"]


def test_exit_code_passes_through(image):
    assert cli("run", image, "--", "sh", "-c", "exit 3").returncode == 3
    # dd as PID 1 is OOM-killed (SIGKILL): the CLI exits 128 + 9, as shells report it.
    assert cli("run", "--memory", "16M", image, "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M",
               "count=1").returncode == 137


def test_stdin_reaches_the_container(image):
    out = cli("run", image, "--", "sh", "-c", "read line; echo got:$line", input="hello\n")
    assert out.stdout == "got:hello\n"


@pytest.mark.parametrize("args, words", [
    (["run", "--memory", "12XB", "--", "true"], "memory limit '12XB' is not a size"),
    (["run", "--memory", "-1", "--", "true"], "is not a size"),
    (["run", "--cpus", "0", "--", "true"], "CPU limit '0' is out of range"),
    (["run", "--pids", "0", "--", "true"], "pids limit '0' must be at least 1"),
    (["run", "/nonexistent", "--", "true"], "is not a directory"),
    (["run", "/", "--", "true"], "host's /"),
    (["run", "--env", "NOEQUALS", "--", "true"], "is not KEY=VALUE"),
    (["exec", "no-such-container", "--", "true"], "no running container named 'no-such-container'"),
])
def test_bad_input_gets_a_clear_message(args, words):
    out = cli(*args)
    assert out.returncode == 125
    assert words in out.stderr
    assert "what to do:" in out.stderr and "Traceback" not in out.stderr


def test_not_root_is_told_so(image):
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                          "minicontainer.cli", "run", image, "--", "true"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), cwd="/")
    assert out.returncode == 125
    assert "needs root" in out.stderr and "sudo" in out.stderr


def test_exec_and_ps(image):
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--name", "cli-exec",
                               "--hostname", "execbox", image, "--", "sleep", "600"],
                              env=dict(os.environ, PYTHONPATH=REPO))
    try:
        deadline = time.monotonic() + STARTUP_WAIT
        while "running" not in cli("ps").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        listing = cli("ps").stdout
        assert "cli-exec" in listing and "running" in listing
        out = cli("exec", "cli-exec", "--", "hostname")
        assert (out.returncode, out.stdout) == (0, "execbox\n")
        assert cli("exec", "cli-exec", "--", "sh", "-c", "exit 4").returncode == 4
        missing = cli("exec", "cli-exec", "--", "no-such-cmd")
        assert missing.returncode == 127 and "not found in the container" in missing.stderr
    finally:
        runner.terminate()  # the CLI passes SIGTERM on; sleep as PID 1 ignores it...
        try:
            runner.wait(3)
        except subprocess.TimeoutExpired:
            runner.kill()  # ...so the helper, seeing its caller gone, kills the cgroup
            runner.wait()


def test_doctor_explains_this_host():
    out = cli("doctor")
    layout = detect()
    assert out.returncode == 0, out.stdout
    assert layout.mode.split()[0] in out.stdout
    assert "mnt namespace" in out.stdout and "cgroup memory" in out.stdout
    if layout.mode.startswith("hybrid"):
        assert "the lab VM and most current distributions use v2" in out.stdout


def test_cleanup_removes_what_a_killed_helper_left(image):
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--name", "orphaned", image,
                               "--", "sleep", "30"], env=dict(os.environ, PYTHONPATH=REPO))
    deadline = time.monotonic() + STARTUP_WAIT
    state = "/run/minicontainer/orphaned/state.json"
    while ('"running"' not in (open(state).read() if os.path.exists(state) else "")) and time.monotonic() < deadline:
        time.sleep(0.05)
    helper = json.load(open(state))["helper_pid"]  # forked from the CLI (mc-helper), or spawned
    os.kill(helper, 9)  # the helper dies without cleaning up; PDEATHSIG takes the container down
    runner.wait(STARTUP_WAIT)
    assert os.path.exists(state)
    out = cli("cleanup")
    assert "removed cgroup" in out.stdout and "removed state /run/minicontainer/orphaned" in out.stdout
    assert cli("cleanup").stdout.strip() == "cleanup: nothing left behind"


def test_cleanup_removes_the_base_dir_a_run_left_empty():
    # What a run that removes only its own cgroups leaves (the benchmark's bare calls did): the runtime's
    # base directory, empty, in each hierarchy. cleanup must see it, though no container is in it.
    if os.environ.get("MINICONTAINER_CGROUP_PARENT"):
        pytest.skip("MINICONTAINER_CGROUP_PARENT names the base: a parent of the user's, never removed")
    layout = detect()
    bases = sorted({base_dir(layout, c) for c in layout.controllers.values()})
    for base in bases:
        os.makedirs(base, exist_ok=True)
    out = cli("cleanup")
    assert all(f"removed cgroup {base}" in out.stdout for base in bases), out.stdout
    assert not any(os.path.isdir(base) for base in bases)


def test_the_benchmarks_bare_calls_leave_no_cgroup(image):
    # They make a cgroup per run below the runtime's base directory, and clone into a v2 one; the leak guard
    # (conftest) then finds any directory they leave, the base included.
    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "start.py"), "--bare-calls", "--rootfs",
                          image, "--runs", "2"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr
    assert {"cgroup", "join cgroup"} <= set(json.loads(out.stdout.splitlines()[-1]))


@pytest.fixture
def runners():
    """CLI processes a test starts; killed at its end if still there (their helpers then clean up)."""
    started_here = []
    yield started_here
    for proc in started_here:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def started(name: str) -> None:
    """Wait until the CLI's container `name` runs (its state says so)."""
    path = f"/run/minicontainer/{name}/state.json"
    deadline = time.monotonic() + STARTUP_WAIT
    while '"running"' not in (open(path).read() if os.path.exists(path) else "") and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_pid_1_that_ignores_sigterm_is_named_then_killed_on_the_second(image, runners):
    # sleep has no SIGTERM handler, and a PID namespace's init gets only the signals it handles.
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--name", "ignores", image, "--",
                               "sleep", "600"], stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    runners.append(runner)
    started("ignores")
    # Two copies 50 ms apart, as timeout(1) or `kill` of a process group sends them, count as one.
    runner.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    runner.send_signal(signal.SIGTERM)
    note = runner.stderr.readline()
    assert "PID 1 (sleep) is still running after SIGTERM" in note and "again" in note, note
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(STARTUP_WAIT) == 128 + signal.SIGKILL
    assert "SIGTERM again: killing every process of container ignores" in runner.stderr.read()


def test_a_lone_sigterm_ends_it_after_the_stop_timeout(image, runners):
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--name", "lone", "--stop-timeout",
                               "2", image, "--", "sleep", "600"], stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    runners.append(runner)
    started("lone")
    runner.send_signal(signal.SIGTERM)  # once, as timeout(1) does
    assert runner.wait(STARTUP_WAIT) == 128 + signal.SIGKILL
    assert "2 s after SIGTERM: killing" in runner.stderr.read()


def test_a_pid_1_that_handles_sigterm_ends_without_a_word(image, runners):
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--name", "handles", image, "--",
                               "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"],
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    runners.append(runner)
    started("handles")
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(STARTUP_WAIT) == 3
    assert "still running" not in runner.stderr.read()


def test_stop_and_kill_a_container_by_name_from_another_shell(image, runners):
    def run_named(name):
        proc = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--name", name, image, "--",
                                 "sleep", "600"], env=dict(os.environ, PYTHONPATH=REPO))
        runners.append(proc)
        started(name)
        return proc
    first = run_named("by-name")
    assert cli("kill", "by-name", "TERM").returncode == 0  # sent; sleep as PID 1 ignores it
    assert first.poll() is None
    out = cli("stop", "by-name", "--time", "1")
    assert out.returncode == 0 and "every process in its cgroup was killed" in out.stdout, out.stderr
    assert first.wait(STARTUP_WAIT) == 128 + signal.SIGKILL
    second = run_named("by-name")
    assert cli("kill", "by-name", "9").returncode == 0 and second.wait(STARTUP_WAIT) == 128 + signal.SIGKILL
    for args, words in ((("kill", "by-name", "TERM"), "no running container named 'by-name'"),
                        (("kill", "x", "NOSUCH"), "'NOSUCH' is not a signal")):
        out = cli(*args)
        assert out.returncode == 125 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_with_init_sigterm_ends_a_pid_1_that_would_ignore_it(image, runners):
    # The same container as the test above, under --init: sleep is PID 2, and SIGTERM ends it.
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--init", "--name", "init-term",
                               image, "--", "sh", "-c", "sleep 600"], stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO))
    runners.append(runner)
    started("init-term")
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(STARTUP_WAIT) == 128 + signal.SIGTERM
    assert "still running" not in runner.stderr.read()


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
def test_timeout_sends_httpd_one_sigterm(image, init):
    # `timeout` sends one SIGTERM and, without -k, nothing after. httpd -f as PID 1 has no handler for
    # it: run says so and kills the container after the stop timeout. Under --init httpd is PID 2 and ends.
    command = ["timeout", "3", sys.executable, "-m", "minicontainer.cli", "run", *(["--init"] if init else []),
               "--stop-timeout", "3", image, "--", "httpd", "-f", "-p", "8080"]
    # timeout signals run and then its own process group: two SIGTERMs that must count as one.
    out = subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_WAIT,
                         env=dict(os.environ, PYTHONPATH=REPO))
    if init:
        assert out.returncode == 124, out.stderr  # 124: timeout's own
        assert "still running" not in out.stderr and "killing" not in out.stderr, out.stderr
    else:
        assert out.returncode == 124 and "PID 1 (httpd) is still running after SIGTERM" in out.stderr, out.stderr
        assert "3 s after SIGTERM: killing" in out.stderr and "SIGTERM again" not in out.stderr, out.stderr


def test_stop_ends_an_init_container_on_sigterm(image, runners):
    runner = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--init", "--name", "init-stop",
                               image, "--", "sleep", "600"], env=dict(os.environ, PYTHONPATH=REPO))
    runners.append(runner)
    started("init-stop")
    out = cli("stop", "init-stop", "--time", "5")
    assert out.returncode == 0 and "ended after SIGTERM" in out.stdout, out.stderr
    assert runner.wait(STARTUP_WAIT) == 128 + signal.SIGTERM


def test_a_state_dir_on_an_overlay_gets_a_clear_message(image, tmp_path):
    # As inside a Docker container, whose / is an overlay: overlayfs cannot be another overlay's upper layer.
    for name in ("lower", "upper", "work", "merged"):
        (tmp_path / name).mkdir()
    merged = str(tmp_path / "merged")
    subprocess.run(["mount", "-t", "overlay", "lab-test", "-o", f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,"
                    f"workdir={tmp_path}/work", merged], check=True)
    try:
        out = subprocess.run([sys.executable, "-m", "minicontainer.cli", "run", image, "--", "true"],
                             capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=REPO, MINICONTAINER_STATE=os.path.join(merged, "state")))
    finally:
        subprocess.run(["umount", merged], check=True)
    assert out.returncode == 125 and "is on an overlayfs" in out.stderr and "MINICONTAINER_STATE" in out.stderr, \
        out.stderr
    assert "Traceback" not in out.stderr
