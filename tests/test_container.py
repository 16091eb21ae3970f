"""Containers on the real kernel: isolation seen in /proc, limits seen in cgroupfs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, STARTUP_WAIT, assert_back_to, kernel_state

from minicontainer import inspect, namespaces, state
from minicontainer.container import Container, exec_command, run
from minicontainer.errors import LabError
from minicontainer.process import spawn
from minicontainer.spec import ContainerSpec


def test_hostname_is_isolated(image):
    host = socket.gethostname()
    result = run(ContainerSpec(image, ["hostname"], hostname="box"))
    assert (result.code, result.stdout.strip()) == (0, "box")
    assert socket.gethostname() == host


def test_pid1_and_only_the_containers_processes(image):
    result = run(ContainerSpec(image, ["sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '"]))
    shell_pid, pids = result.stdout.split("\n", 1)
    assert shell_pid == "1"
    # The shell (1), ls and grep... all forked by it: a handful of low PIDs, none of the host's.
    assert all(int(p) < 10 for p in pids.split()), pids


def test_namespaces_differ_from_host_and_nspid_shows_both_views(image):
    with Container.start(ContainerSpec(image, ["sleep", "30"])) as box:
        info = inspect.process(box.pid)
        assert set(namespaces.shared_with(box.pid)) == {"user", "time"}  # not asked for
        assert info.nspid == [box.pid, 1]
        assert box.cgroup.name in info.cgroups[next(k for k in info.cgroups if "pids" in k or k == "")]


def test_exit_status_and_env_pass_through(image):
    spec = ContainerSpec(image, ["sh", "-c", 'echo "$GREETING"; exit 7'],
                         env={"PATH": "/bin", "GREETING": "hello"})
    result = run(spec)
    assert (result.code, result.stdout) == (7, "hello\n")


def test_host_mount_table_unchanged_and_image_unchanged(image):
    def tree():
        return sorted((os.path.relpath(os.path.join(d, n), image), os.lstat(os.path.join(d, n)).st_mtime_ns)
                      for d, dirs, files in os.walk(image) for n in dirs + files)
    with open("/proc/self/mountinfo") as f:
        mounts_before = f.read()
    before = tree()
    with Container.start(ContainerSpec(image, ["sh", "-c", "echo changed > /etc/hostname; rm /bin/ls; "
                                                           "touch /new-file; sleep 30"])) as box:
        upper = os.path.join("/run/minicontainer", box.name, "upper")
        deadline = time.monotonic() + STARTUP_WAIT
        while not os.path.exists(os.path.join(upper, "new-file")) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The upper dir holds the difference: new and changed files, a whiteout for the deleted one.
        assert os.path.exists(os.path.join(upper, "new-file"))
        with open(os.path.join(upper, "etc/hostname")) as f:
            assert f.read() == "changed\n"
        assert os.stat(os.path.join(upper, "bin/ls")).st_rdev == 0  # whiteout: char device 0/0
        with open("/proc/self/mountinfo") as f:
            assert f.read() == mounts_before  # the overlay lives only in the container's mount namespace
    assert tree() == before


def test_exec_lands_in_the_same_namespaces_and_cgroup(image):
    with Container.start(ContainerSpec(image, ["sleep", "30"], hostname="exec-box", memory="64M")) as box:
        out = box.exec(["sh", "-c", "hostname; ls -l /proc/self/ns/; sleep 5 >/dev/null 2>&1 & echo $!"], timeout=30)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        assert lines[0] == "exec-box"
        assert 1 < int(lines[-1]) < 10  # a PID inside the container's PID namespace
        # Every namespace the exec'd shell is in is PID 1's, as the host sees them.
        for kind in ("mnt", "uts", "ipc", "net", "cgroup"):
            assert os.readlink(f"/proc/{box.pid}/ns/{kind}") in out.stdout, kind
        assert os.readlink(f"/proc/{box.pid}/ns/pid_for_children") in out.stdout
        assert len(box.cgroup.procs()) == 2  # init and the exec'd sleep, counted in the same cgroup


def test_exec_into_a_container_that_just_ended_says_so(image):
    # The race a slow host hits: exec read "running" from the state, then PID 1 exited and the helper
    # removed the cgroup before exec could join it. Frozen here: the command line built while it ran.
    box = Container.start(ContainerSpec(image, ["sleep", "30"]))
    command = exec_command(box.name, ["true"])
    box.stop(grace=0.2)
    out = spawn.run(*command, capture_output=True, text=True, timeout=30)
    assert out.returncode == 126, out.stderr
    assert f"container '{box.name}' ended before the command could join its cgroup" in out.stderr
    assert "Traceback" not in out.stderr


def test_stop_terms_then_kills_after_grace(image):
    # sleep as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM: stop must kill.
    box = Container.start(ContainerSpec(image, ["sleep", "30"]))
    assert box.stop(grace=0.5) == -signal.SIGKILL
    # A shell that traps TERM exits by itself with its own status.
    box = Container.start(ContainerSpec(image, ["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done"]))
    time.sleep(0.3)
    assert box.stop(grace=5) == 42


def test_stats_after_the_container_ended_says_so(image):
    box = Container.start(ContainerSpec(image, ["sh", "-c", "exit 3"], pids=10))
    deadline = time.monotonic() + STARTUP_WAIT
    while box.cgroup.exists() and time.monotonic() < deadline:  # the helper rmdirs it after reaping PID 1
        time.sleep(0.05)
    assert not box.cgroup.exists()
    with pytest.raises(LabError, match=r"has ended \(exit code 3\)") as error:
        box.stats()
    assert "final_stats" in error.value.fix
    assert box.final_stats["pids_limit"] == 10  # read from the cgroup before its rmdir


@pytest.mark.slow
def test_memory_limit_oom_kill_is_counted(image):
    spec = ContainerSpec(image, ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?"],
                         memory="32M")
    result = run(spec)
    assert result.stats["oom_kills"] >= 1, result
    assert result.stats["memory_peak"] <= 32 << 20


@pytest.mark.slow
def test_pids_limit_stops_a_fork_loop(image):
    # The loop runs in a subshell: a failed fork ends a busybox shell, and the outer one reports.
    spec = ContainerSpec(image, ["sh", "-c", "(for i in $(seq 30); do sleep 2 & done; wait); echo survived"],
                         pids=10)
    result = run(spec)
    assert result.stats["pids_refused"] > 0  # pids.events: forks the limit refused
    assert "can't fork" in result.stderr or "Resource temporarily unavailable" in result.stderr
    assert "survived" in result.stdout


@pytest.mark.slow
def test_cpu_quota_throttles(image):
    # Not `timeout` as PID 1: busybox timeout execs the command in its own PID and signals it,
    # and PID 1 ignores a SIGTERM it has no handler for.
    spec = ContainerSpec(image, ["sh", "-c", "timeout 1 sh -c 'while :; do :; done'; true"], cpus=0.2)
    result = run(spec)
    stats = result.stats
    assert stats["cpu_throttled"] > 0
    # The quota's invariant, whatever the host's speed (a TCG guest spends seconds starting up): at most
    # 20 ms of CPU in each 100 ms period it ran in. Without the limit there are no periods at all.
    assert stats["cpu_periods"] > 0
    assert stats["cpu_usage_usec"] <= 20_000 * stats["cpu_periods"] * 1.5 + 50_000, stats  # + tick overrun


def test_bad_inputs_are_refused_before_anything_starts(image, tmp_path):
    # A bad limit is refused as the spec is made (it is parsed once, there); the rest when it is run.
    cases = [
        (lambda: ContainerSpec(image, ["true"], memory="12XB"), "is not a size"),
        (lambda: ContainerSpec(image, ["true"], memory="0"), "more than zero"),
        (lambda: ContainerSpec(str(tmp_path), ["true"]), "has no /bin/sh"),
        (lambda: ContainerSpec("/", ["true"]), "host's /"),
        (lambda: ContainerSpec("/nonexistent", ["true"]), "is not a directory"),
        (lambda: ContainerSpec(image, ["true"], hostname="bad_host!"), "hostname"),
        (lambda: ContainerSpec(image, ["no-such-program"]), "not found in the container"),
    ]
    for make, words in cases:
        with pytest.raises(LabError) as caught:
            run(make())
        assert words in str(caught.value), str(caught.value)
        assert caught.value.fix, words


def test_symlinked_proc_in_image_is_refused(tmp_path, image):
    os.makedirs(tmp_path / "bin")
    os.symlink("/bin/busybox", tmp_path / "bin/sh")
    (tmp_path / "bin/busybox").write_bytes(open(os.path.join(image, "bin/busybox"), "rb").read())
    os.chmod(tmp_path / "bin/busybox", 0o755)
    os.symlink("/etc", tmp_path / "proc")
    with pytest.raises(LabError, match="/proc is a symlink"):
        run(ContainerSpec(str(tmp_path), ["true"]))


def test_namespace_only_process_without_rootfs():
    spec = ContainerSpec(None, ["sh", "-c", "hostname; echo $$; ls /proc | grep -cE '^[0-9]+$'"], hostname="ns-only")
    result = run(spec)
    hostname, pid, count = result.stdout.split()
    assert (hostname, pid) == ("ns-only", "1")
    assert int(count) < 5


def test_time_namespace_offsets_monotonic_clock(image):
    spec = ContainerSpec(image, ["cat", "/proc/uptime"], namespaces=("mnt", "pid", "time"), time_offset=86400 * 365)
    result = run(spec)
    with open("/proc/uptime") as f:
        host_uptime = float(f.read().split()[0])
    assert float(result.stdout.split()[0]) > host_uptime + 86400 * 364


def test_user_namespace_maps_root_to_unprivileged_uid(image):
    spec = ContainerSpec(image, ["sh", "-c", "id -u; cat /proc/self/uid_map; sleep 30"],
                         namespaces=("user", "mnt", "uts", "pid", "ipc", "net", "cgroup"))
    with Container.start(spec, stdout=subprocess.PIPE) as box:
        line = box.helper.stdout.readline().decode()
        assert line.strip() == "0"  # root inside
        assert inspect.process(box.pid).uids[0] == 100000  # an unprivileged uid outside
        assert inspect.id_map(box.pid)[0].outside == 100000
        # exec joins the user namespace as its root, as the container's init is (without taking
        # the namespace's root, the host's uid 0 is unmapped there: uid=65534(nobody)).
        assert box.exec(["sh", "-c", "id -u; id -G"]).stdout.split() == ["0", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("who", ["cli", "python-caller-group"])
def test_sigkill_of_the_caller_leaves_nothing_within_5s(image, who):
    before = kernel_state()
    if who == "cli":
        caller = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "run", "--memory", "32M",
                                   image, "--", "sh", "-c", "sleep 100 & sleep 100"],
                                  env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    else:  # a long-lived Python process like a Jupyter kernel, killed with its whole process group
        code = ("import time; from minicontainer.container import Container; from minicontainer.spec import "
                f"ContainerSpec; box = Container.start(ContainerSpec({image!r}, ['sleep', '100'], memory='32M')); "
                "time.sleep(100)")
        caller = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=REPO),
                                  start_new_session=True)
    deadline = time.monotonic() + STARTUP_WAIT
    while time.monotonic() < deadline:
        new = kernel_state()["state dirs"] - before["state dirs"]
        if any((state.read_state(name) or {}).get("status") == "running" for name in new):
            break
        time.sleep(0.05)
    running = kernel_state()
    assert running["cgroups"] - before["cgroups"], "the container did not start"
    os.killpg(caller.pid, signal.SIGKILL)
    caller.wait()
    assert_back_to(before, within=5)  # nothing left within 5 s, with no cleanup call
    assert subprocess.run(["pgrep", "-f", "sleep 100"], capture_output=True).returncode == 1


def _in_cgroup(pid: int, directories: list[str]) -> list[bool]:
    """For each of the container's cgroup directories: is the process listed in it, as the kernel says?"""
    result = []
    for directory in directories:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            result.append(str(pid) in f.read().split())
    return result


def test_pid1_is_born_in_its_cgroup_when_one_v2_directory_holds_it_and_no_one_watches(image):
    from minicontainer.stage import Stage
    with Container.start(ContainerSpec(image, ["sleep", "30"], memory="64M")) as box:
        joined = dict(box.steps)["join cgroup"]
        assert all(_in_cgroup(box.pid, box.cgroup.directories))
        if len(box.cgroup.directories) == 1:  # cgroup v2 alone: clone3 put it there, with nothing to write
            assert "born there" in joined, joined
        else:  # v1 or hybrid: CLONE_INTO_CGROUP places in one v2 cgroup only, so it writes each cgroup.procs
            assert "born there" not in joined, joined
    # A stage is watched step by step: there PID 1 starts in the helper's cgroup and its join moves it.
    with Stage(ContainerSpec(image, ["sleep", "30"], memory="64M")) as stage:
        stage.run_until("fork PID 1")
        assert not any(_in_cgroup(stage.pid, stage.cgroup.directories))
        stage.run_until("join cgroup")
        assert all(_in_cgroup(stage.pid, stage.cgroup.directories))
