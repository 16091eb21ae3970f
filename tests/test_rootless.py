"""Rootless: an unprivileged user runs a container in a user namespace where root is that user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
from conftest import REPO

from minicontainer import cgroups
from minicontainer.cgroups import v2

# The venv's interpreter may live under /root (pyenv), out of an unprivileged user's reach;
# the runtime's core needs only the standard library, so the system Python serves.
SYSTEM_PYTHON = "/usr/bin/python3"
# An unprivileged uid with no name: not 65534, which is also the overflow uid (how an unmapped id
# shows inside a user namespace), so a map to it could not be told from no map at all.
UID = 20000
UNPRIVILEGED = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
STATE_ROOT = f"/tmp/minicontainer-{UID}"  # state.py's default for a user without XDG_RUNTIME_DIR


def as_user(*args: str, in_cgroup: str | None = None) -> subprocess.CompletedProcess:
    """The CLI run by the unprivileged user; in_cgroup: moved (by root, before dropping to the user) into that
    cgroup v2 directory first, as systemd starts a unit's process in its cgroup."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing (./lab setup installs python3)")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    moved = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', in_cgroup] if in_cgroup else []
    out = subprocess.run(moved + UNPRIVILEGED + ["env", f"PYTHONPATH={REPO}", SYSTEM_PYTHON, "-m", "minicontainer.cli",
                                                  *args], capture_output=True, text=True, timeout=60, cwd="/", env=env)
    left = [n for n in os.listdir(STATE_ROOT) if not n.startswith(".")] if os.path.isdir(STATE_ROOT) else []
    assert not left, f"the rootless run left state behind: {left}"
    return out


def run_script_as_user(source: str, *args: str) -> subprocess.CompletedProcess:
    """A Python script run by the unprivileged user with the runtime importable: from a file it can read (a stage
    sends a function's source to PID 1 from its file)."""
    with tempfile.TemporaryDirectory() as scripts:
        os.chmod(scripts, 0o755)
        script = os.path.join(scripts, "script.py")
        with open(script, "w") as f:
            f.write(source)
        os.chmod(script, 0o644)
        return subprocess.run(UNPRIVILEGED + ["env", f"PYTHONPATH={REPO}", f"PATH={os.environ['PATH']}", SYSTEM_PYTHON,
                                              script, *args], capture_output=True, text=True, timeout=60, cwd="/",
                              env={k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"})


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


def skip_unless_users_get_cgroups() -> cgroups.Layout:
    """This host's cgroup layout, or a skip where no cgroup can be delegated to a user (tests/test_learner_isolation
    skips with the same words)."""
    layout = cgroups.detect()
    if any(c.version != 2 for c in layout.controllers.values()) or not layout.controllers:
        pytest.skip(f"this host's cgroups are {layout.mode}: users are delegated cgroups on pure v2 only "
                    "(the cgroup v2 VM runs this)")
    return layout


@pytest.fixture
def user_cgroup():
    """A cgroup for the unprivileged user beside ours, with a leaf it starts in, and a function that delegates it
    as systemd's Delegate=yes does for a unit with User=: chown of the directory, cgroup.procs,
    cgroup.subtree_control and cgroup.threads. Pure cgroup v2 only."""
    layout = skip_unless_users_get_cgroups()
    parent = os.path.dirname(layout.v2_own_dir)
    v2.enable_controllers(parent, sorted(v2.available(parent)))  # as systemd enables all for a delegated unit
    top = tempfile.mkdtemp(prefix="rootless-test-", dir=parent)  # mkdir: a cgroup
    os.chmod(top, 0o755)  # as cgroups are made: the tests differ in ownership alone
    leaf = os.path.join(top, "leaf")
    os.mkdir(leaf)

    def delegate():
        for path in (top, *(os.path.join(top, f) for f in ("cgroup.procs", "cgroup.subtree_control",
                                                             "cgroup.threads")), leaf,
                     os.path.join(leaf, "cgroup.procs")):
            os.chown(path, UID, UID)
    try:
        yield top, leaf, delegate
    finally:
        left = [os.path.join(d, n) for d, subdirs, _ in os.walk(top) for n in subdirs if os.path.join(d, n) != leaf]
        for directory in [*sorted(left, reverse=True), leaf, top]:
            os.rmdir(directory)
        assert not left, f"the runtime left cgroups behind: {left}"


OOM = ["sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a)"]  # a 64 MB shell variable


def oom_kills(cgroup_dir: str) -> int:
    """memory.events counts the OOM kills of the whole subtree below that cgroup."""
    with open(os.path.join(cgroup_dir, "memory.events")) as f:
        return int(dict(line.split() for line in f)["oom_kill"])


def test_rootless_limits_hold_in_a_delegated_cgroup(image, user_cgroup):
    """Given a cgroup of its own (a class host's learner: a systemd unit with Delegate=yes), the unprivileged user's
    container gets a cgroup below it, with its limits: its 64 MB allocation is OOM-killed below that cgroup."""
    top, leaf, delegate = user_cgroup
    delegate()
    out = as_user("run", "-v", "--rootless", "--memory", "32M", image, "--", *OOM, in_cgroup=leaf)
    assert out.returncode == 137, out.stderr  # SIGKILL: the OOM killer
    assert oom_kills(top) >= 1, out.stderr
    assert [d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))] == ["leaf"]  # its cgroups removed


def test_rootless_in_a_cgroup_not_delegated_gets_no_limits(image, user_cgroup):
    """The counterfactual: the same cgroup, left root's. The container runs with no cgroup of its own: the same
    allocation succeeds and nothing is OOM-killed below it."""
    top, leaf, delegate = user_cgroup
    os.chown(leaf, UID, UID)  # only the leaf the user starts in is its own, not the cgroup above it
    os.chown(os.path.join(leaf, "cgroup.procs"), UID, UID)
    out = as_user("run", "-v", "--rootless", "--memory", "32M", image, "--", *OOM, in_cgroup=leaf)
    assert out.returncode == 0, out.stderr
    assert "memory=32M: NOT applied" in out.stderr
    assert oom_kills(top) == 0


def test_the_doctor_tells_a_class_hosts_learner_whether_their_cgroup_is_delegated(user_cgroup, monkeypatch):
    top, leaf, delegate = user_cgroup
    monkeypatch.setenv("MINICONTAINER_LAB", "class")  # as the class host's spawner sets it
    before = as_user("doctor", in_cgroup=leaf)
    delegate()
    after = as_user("doctor", in_cgroup=leaf)
    assert "warn  root" in before.stdout and "FAIL  delegated cgroup" in before.stdout, before.stdout
    assert f"ok    delegated cgroup       {top}" in after.stdout, after.stdout


STAGED_PID1 = """
import os, sys
from minicontainer.spec import ContainerSpec
from minicontainer.stage import Stage


def readable(pid):
    try:
        return str(os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"))
    except PermissionError:
        return "refused"


def make_non_dumpable(ctx):
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0, as root's PID 1 does first thing


stage = Stage(ContainerSpec(sys.argv[1], ["sleep", "600"]))
try:
    stage.run_until("mounts private")  # PID 1 runs the runtime's code until its exec, steps later
    before = readable(stage.pid)
    stage.call(make_non_dumpable)
    print(before, readable(stage.pid))
finally:
    stage.teardown()
"""


def test_a_rootless_staged_pid_1_is_its_owners_to_inspect_before_its_exec(image):
    """Before its exec, PID 1 runs the runtime's code. Root's is non-dumpable (nothing of the container may reach
    it); an unprivileged user's rootless one, staged, stays dumpable, or its owner could not read its /proc (a
    non-dumpable process's needs CAP_SYS_PTRACE on the host): lessons 01-05 for a class host's learner. The
    counterfactual, in the same PID 1: made non-dumpable, its namespaces are refused to the same user."""
    out = run_script_as_user(STAGED_PID1, image)
    assert out.stdout.split() == ["True", "refused"], out.stdout + out.stderr


ROOTLESS_POD = """
import json, os, sys
from minicontainer import namespaces
from minicontainer.container import Container
from minicontainer.errors import LabError
from minicontainer.spec import ContainerSpec

image, mode = sys.argv[1], sys.argv[2]
found = {}
pod_a = Container.start(ContainerSpec(image, ["nc", "-l", "-p", "7000", "-e", "echo", "from-a"], network="loopback"))
try:
    join = {"net": pod_a.pid} if mode == "pod" else {}
    pod_b = Container.start(ContainerSpec(image, ["sleep", "600"], network="none" if join else "loopback", join=join))
    try:
        found["shared"] = sorted(namespaces.shared_with(pod_b.pid, pod_a.pid))
        found["reply"] = pod_b.exec(["sh", "-c", "sleep 0.3; nc 127.0.0.1 7000 </dev/null"], timeout=10).stdout.strip()
    finally:
        pod_b.stop(grace=0.2)
    try:  # a namespace of a process that is not in a user namespace of ours: the host's PID 1's
        Container.start(ContainerSpec(image, ["true"], join={"net": 1}))
    except LabError as e:
        found["refused"] = str(e).splitlines()[0]
finally:
    pod_a.stop(grace=0.2)
print(json.dumps(found))
"""


@pytest.mark.parametrize("mode", ["pod", "apart"])
def test_a_rootless_pod_shares_its_first_containers_user_and_network_namespaces(image, mode):
    """Rootless, pod_a's network namespace belongs to pod_a's user namespace, and setns(2) into it needs
    CAP_SYS_ADMIN there: pod_b joins that user namespace first (as rootless Podman's pods do), and then
    reaches pod_a's listener on 127.0.0.1. Apart (the counterfactual), the same connection finds no one."""
    out = run_script_as_user(ROOTLESS_POD, image, mode)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["refused"] == "/proc/1/ns/user is not a user namespace of yours"
    if mode == "pod":
        assert found["reply"] == "from-a" and {"user", "net"} <= set(found["shared"]), found
        assert not {"pid", "mnt"} & set(found["shared"]), found
    else:
        assert found["reply"] == "" and not {"user", "net"} & set(found["shared"]), found


RUNC_ROOTLESS_BUNDLE = """
import json, os, subprocess, sys, tempfile
from minicontainer import oci
from minicontainer.container import run

with tempfile.TemporaryDirectory() as bundle:
    subprocess.run(["runc", "spec", "--rootless"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["root"]["path"] = sys.argv[1]
    config["process"].update(args=["sh", "-c", "grep ' /sys/fs/cgroup' /proc/self/mountinfo; "
                                               "touch /sys/fs/cgroup/x 2>&1; cat /proc/self/cgroup"], terminal=False)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    result = run(oci.load_bundle(bundle))
print(result.stdout)
"""


def test_a_bundle_from_runc_spec_rootless_runs_with_its_cgroups_read_only(image):
    """`runc spec --rootless` asks for /sys/fs/cgroup but no cgroup namespace. In a user namespace the kernel
    mounts cgroup2 only for a cgroup namespace that namespace owns, so on cgroup v2 the container's own group is
    bound in instead (read-only, as runc does); on v1 each hierarchy's group is. Either way the container sees
    only its own group, and cannot write there."""
    if not shutil.which("runc"):
        pytest.fail("runc is missing (./lab setup installs it)")
    out = run_script_as_user(RUNC_ROOTLESS_BUNDLE, image)
    assert out.returncode == 0, out.stderr
    on_top = [line for line in out.stdout.splitlines() if line.split()[4:5] == ["/sys/fs/cgroup"]][-1]
    assert on_top.split()[5].startswith("ro,"), out.stdout
    # Read-only, not merely root's: had the host's /sys, bound in whole, covered it, the touch would meet the
    # host's writable tmpfs and be refused for its owner instead (EACCES).
    assert "Read-only file system" in out.stdout, out.stdout


def test_a_rootless_init_is_the_users_own_build(image):
    """run --init, rootless: the user's init is built in the user's own cache, and that is the one bound in.
    Where the container's init looks for it, it is root (inside its user namespace): it must not go by its own
    uid there. Here root's build in /var/cache is hidden (an empty tmpfs over it, in a mount namespace of the
    run's own), so that only the user's build can serve."""
    with tempfile.TemporaryDirectory() as home:
        os.chown(home, UID, UID)
        hide = 'mkdir -p /var/cache/minicontainer && mount -t tmpfs hidden /var/cache/minicontainer && exec "$@"'
        out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh",
                              *UNPRIVILEGED, "env", f"HOME={home}", f"PYTHONPATH={REPO}", f"PATH={os.environ['PATH']}",
                              SYSTEM_PYTHON, "-m", "minicontainer.cli", "run", "--rootless", "--init", image, "--",
                              "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"],
                             capture_output=True, text=True, timeout=120, cwd="/",
                             env={k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"})
        built = os.path.exists(os.path.join(home, ".cache", "minicontainer", "minicontainer-init"))
    assert out.returncode == 0, out.stderr
    pid, pid_1 = out.stdout.strip().splitlines()
    assert pid == "2" and pid_1.startswith("/dev/minicontainer-init") and built, out.stdout
