"""Two learners on one class host: what learner A can reach of learner B's, and of the host's.

On a class host (docs/class-host.md) each learner is a Unix account and the runtime they run is rootless. Here
two uids with no accounts stand for them, as in tests/test_rootless.py: A (20001) attacks, B (20002) is attacked.
Each refusal is shown beside its counterfactual: the same call made by B, the owner, succeeds. The cgroup parts
need cgroups delegated to users, pure v2 only: they skip on a hybrid host, and the cgroup v2 VM runs them.
A's memory limit in its delegated cgroup is tests/test_rootless.py's test_rootless_limits_hold_in_a_delegated_cgroup.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from conftest import REPO, STARTUP_WAIT, cli
from test_escapes import HOST_SETTINGS
from test_rootless import SYSTEM_PYTHON, skip_unless_users_get_cgroups

from minicontainer.cgroups import v2
from minicontainer.lab import attacks

A, B = 20001, 20002  # unnamed uids; not test_rootless's 20000, so the two files never share a state dir
NOT_OURS = ("XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "MINICONTAINER_CACHE", "MINICONTAINER_PAYLOADS")


def as_learner(uid: int, *argv: str, cgroup: str | None = None) -> list[str]:
    """The command line that runs argv as that uid; cgroup: moved there by root first, as systemd starts a
    unit's process in the unit's cgroup."""
    moved = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup] if cgroup else []
    return moved + ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def learner_env(home: str) -> dict:
    # The learner's own HOME, so their caches are their own (payloads, mcinit): no root's paths passed down.
    return {k: v for k, v in os.environ.items() if k not in NOT_OURS} | {"HOME": home, "PYTHONPATH": REPO}


def processes_of(*uids: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in uids:
            found.append(int(pid))
    return found


# What a learner tries, each call on its own: JSON in, JSON out ("ok", an errno name, or what was read).
PROBE = r"""
import ctypes, errno, json, os, sys
CLONE = {"user": 0x10000000, "mnt": 0x00020000, "pid": 0x20000000, "net": 0x40000000}
libc = ctypes.CDLL(None, use_errno=True)


def setns(pid, kinds):
    # In a child: a namespace joined would change this process for the calls after it. pidfd_open needs no
    # permission, so this reaches setns(2) itself, where /proc/PID/ns/* may be refused at open already.
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            me = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)  # /proc is another in a joined mnt namespace
            if libc.setns(os.pidfd_open(pid), sum(CLONE[k] for k in kinds)) != 0:
                out = errno.errorcode[ctypes.get_errno()]
            else:  # the namespace it is in now, by inode, to compare with the target's
                out = os.stat("ns/pid_for_children" if kinds[-1] == "pid" else f"ns/{kinds[-1]}", dir_fd=me).st_ino
        except OSError as e:
            out = errno.errorcode[e.errno]
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.waitpid(child, 0)
    return json.loads(out)


def call(op, *args):
    if op == "setns":
        return setns(*args)
    try:
        if op == "kill":
            os.kill(*args)
        elif op == "open":
            os.close(os.open(args[0], os.O_RDONLY))
        elif op == "read":
            with open(args[0]) as f:
                return f.read()
        elif op == "write":
            with open(args[0], "w") as f:
                f.write(args[1])
        elif op == "readlink":
            os.readlink(args[0])
        elif op == "listdir":
            os.listdir(args[0])
        elif op == "mkdir":
            os.mkdir(args[0])
        elif op == "rmdir":
            os.rmdir(args[0])
        elif op == "chmod":
            os.chmod(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


print(json.dumps([call(*c) for c in json.loads(sys.argv[1])]))
"""


def probe(uid: int, calls: list, home: str, cgroup: str | None = None) -> list:
    out = subprocess.run(as_learner(uid, SYSTEM_PYTHON, "-c", PROBE, json.dumps(calls), cgroup=cgroup),
                         capture_output=True, text=True, timeout=60, cwd="/", env=learner_env(home))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def homes():
    """A home of each learner's own (mode 0700, as the class host makes them), removed with all in it; and
    the runtime's state dirs the learners' containers made (/tmp/minicontainer-UID), if there were none."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing (./lab setup installs python3)")
    states = [f"/tmp/minicontainer-{uid}" for uid in (A, B)]
    ours = [s for s in states if not os.path.exists(s)]
    made = {}
    try:
        for uid in (A, B):
            made[uid] = tempfile.mkdtemp(prefix=f"learner-{uid}-")
            os.chown(made[uid], uid, uid)
        yield made
    finally:
        for home in made.values():
            shutil.rmtree(home)
        for state in ours:
            left = os.listdir(state) if os.path.isdir(state) else []
            shutil.rmtree(state, ignore_errors=True)
            assert not left, f"a learner's container left state behind: {left}"
        stop_learner_processes()


def stop_learner_processes() -> None:
    """Every process of A or B must be gone once its test is done: any left is killed (by its PID) and fails."""
    deadline = time.monotonic() + STARTUP_WAIT
    while (left := processes_of(A, B)) and time.monotonic() < deadline:
        time.sleep(0.1)  # a container's helper ends just after its caller
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"learners' processes were left running: {left}"


HOLD = r"""
import sys
from minicontainer.container import Container
from minicontainer.spec import ContainerSpec
with Container.start(ContainerSpec(sys.argv[1], ["sh", "-c", "sleep 600 & wait"])) as box:
    print(box.pid, flush=True)
    sys.stdin.read()  # until the test closes it
"""


def children_of(pid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()


@pytest.fixture(scope="module")
def b_container(image, homes):
    """B's rootless container, as B's runtime starts it: its PID 1 (a shell) and that shell's child, on the host."""
    holder = subprocess.Popen(as_learner(B, SYSTEM_PYTHON, "-c", HOLD, image), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                              env=learner_env(homes[B]))
    try:
        line = holder.stdout.readline()
        assert line.strip().isdigit(), holder.stderr.read() if holder.poll() is not None else line
        pid = int(line)
        deadline = time.monotonic() + STARTUP_WAIT
        while not (children := children_of(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children, "the container's shell started no sleep"
        yield [pid, int(children[0])]
    finally:
        holder.stdin.close()  # its Container's exit stops the container and removes what it made
        holder.wait(60)


def test_a_cannot_signal_bs_containers_processes(b_container, homes):
    """kill(2) to another uid's process needs CAP_KILL over that process's user namespace (B's container's, where A
    has none): A's SIGKILL is refused, B's own signal 0 (a check that it could) is not, and B's container runs on."""
    as_a = probe(A, [("kill", pid, signal.SIGKILL) for pid in b_container], homes[A])
    as_b = probe(B, [("kill", pid, 0) for pid in b_container], homes[B])
    assert as_a == ["EPERM", "EPERM"]
    assert as_b == ["ok", "ok"]
    assert all(os.path.exists(f"/proc/{pid}") for pid in b_container)


def test_a_cannot_see_bs_processes_in_a_proc_like_a_learners_unit(b_container, homes):
    """ProtectProc=invisible gives a learner's unit a procfs of its own mounted hidepid=invisible. The same mount,
    in a private mount namespace that goes with its process: B's container is absent for A, present for B; in
    this host's /proc (no hidepid) A sees it, so the mount option is what hides it."""
    def listed(uid, hidden):
        look = as_learner(uid, SYSTEM_PYTHON, "-c", f"import os; print(os.path.exists('/proc/{b_container[0]}'))")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t proc -o hidepid=invisible proc /proc && exec "$@"', "-", *look] if hidden else look
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    assert listed(A, hidden=True) == "False"
    assert listed(B, hidden=True) == "True"
    assert listed(A, hidden=False) == "True"


def test_a_cannot_read_bs_containers_proc_entries(b_container, homes):
    """environ, mem, root and the namespace files pass ptrace's access check: same uid, or CAP_SYS_PTRACE over the
    process's user namespace. A has neither and is refused at open; B, the owner, is not."""
    pid = b_container[0]
    calls = [("read", f"/proc/{pid}/environ"), ("open", f"/proc/{pid}/mem"), ("readlink", f"/proc/{pid}/root"),
             ("listdir", f"/proc/{pid}/root/"), *[("open", f"/proc/{pid}/ns/{k}") for k in ("user", "mnt", "pid",
                                                                                               "net")]]
    as_a = probe(A, calls, homes[A])
    as_b = probe(B, calls, homes[B])
    assert as_a == ["EACCES"] * len(calls)
    assert "PATH=" in as_b[0] and as_b[1:] == ["ok"] * (len(calls) - 1)


@pytest.mark.parametrize("kind", ["user", "mnt", "pid", "net"])
def test_a_cannot_join_bs_containers_namespaces(b_container, homes, kind):
    """nsenter as A stops at open(/proc/PID/ns/*) (ptrace's check, above). A pidfd needs no permission and takes
    A to setns(2) itself, which makes the same ptrace check first: EPERM (past it, A would still need CAP_SYS_ADMIN
    over B's namespaces). B, the owner, joins both ways, its own user namespace first: a mount, PID or network
    namespace is entered with privilege over the user namespace that owns it."""
    pid = b_container[0]
    flags = ["-U"] + ({"mnt": ["-m"], "pid": ["-p"], "net": ["-n"]}.get(kind, []))
    kinds = ["user"] + ([kind] if kind != "user" else [])
    nsenter = ["nsenter", "-t", str(pid), "--preserve-credentials", *flags, "true"]  # credentials: B maps one uid
    a = subprocess.run(as_learner(A, *nsenter), capture_output=True, text=True, timeout=60, cwd="/")
    b = subprocess.run(as_learner(B, *nsenter), capture_output=True, text=True, timeout=60, cwd="/")
    assert a.returncode != 0 and f"cannot open /proc/{pid}/ns/" in a.stderr and "Permission denied" in a.stderr
    assert b.returncode == 0, b.stderr
    target = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    assert probe(A, [("setns", pid, kinds)], homes[A]) == ["EPERM"]
    assert probe(B, [("setns", pid, kinds)], homes[B]) == [target]


def test_a_cannot_read_or_write_a_file_b_made_private(homes):
    """A 0600 file of B's in a directory A may enter: the file's mode is all that stands in A's way. Made 0644 by
    B, A reads it (and still cannot write it)."""
    area = tempfile.mkdtemp(prefix="learner-b-area-")
    try:
        os.chmod(area, 0o755)
        os.chown(area, B, B)
        secret = os.path.join(area, "secret")
        made = probe(B, [("write", secret, "B's work\n"), ("chmod", secret, 0o600)], homes[B])
        assert made == ["ok", "ok"] and os.stat(secret).st_uid == B
        assert probe(A, [("read", secret), ("write", secret, "A was here\n")], homes[A]) == ["EACCES", "EACCES"]
        assert probe(B, [("read", secret), ("write", secret, "B's work, again\n")], homes[B]) == ["B's work\n", "ok"]
        probe(B, [("chmod", secret, 0o644)], homes[B])
        assert probe(A, [("read", secret), ("write", secret, "A was here\n")], homes[A]) == \
            ["B's work, again\n", "EACCES"]
    finally:
        shutil.rmtree(area)


def test_a_container_of_as_has_the_defences_of_roots(image, homes):
    """A's rootless container holds the same capability sets, no_new_privs and seccomp filters as one root starts
    on the lab VM (in its own user namespace: the capabilities are over that namespace only)."""
    show = ["run", image, "--", "cat", "/proc/self/status"]
    roots = cli(*show)
    as_a = subprocess.run(as_learner(A, SYSTEM_PYTHON, "-m", "minicontainer.cli", "run", "--rootless", *show[1:]),
                          capture_output=True, text=True, timeout=60, cwd="/", env=learner_env(homes[A]))
    assert roots.returncode == 0 and as_a.returncode == 0, roots.stderr + as_a.stderr

    def defences(status):
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        return {k: fields[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                                       "Seccomp_filters")}
    assert defences(as_a.stdout) == defences(roots.stdout)
    assert defences(roots.stdout)["NoNewPrivs"] == "1" and defences(roots.stdout)["Seccomp"] == "2"


# --- Cgroups delegated to each learner (pure cgroup v2: the cgroup v2 VM) ------------------------------------------


def delegated_cgroup(parent: str, uid: int) -> tuple[str, str]:
    """A cgroup given to uid as systemd's Delegate=yes gives a unit with User= its own (chown of the directory,
    cgroup.procs, cgroup.subtree_control, cgroup.threads), its limit files left root's, and the leaf the
    learner's server moves into, made by the learner as vagrant/in-leaf.sh does."""
    top = tempfile.mkdtemp(prefix=f"learner-{uid}-", dir=parent)  # mkdir: a cgroup
    os.chmod(top, 0o755)
    for path in (top, *(os.path.join(top, f) for f in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"))):
        os.chown(path, uid, uid)
    leaf = os.path.join(top, "lab")
    subprocess.run(as_learner(uid, "mkdir", leaf), check=True, timeout=60)
    return top, leaf


def remove_cgroup(top: str, leaf: str) -> tuple[list[str], bool]:
    """Remove it, first killing what still runs there (only this file's processes could), and return the cgroups
    below it other than the leaf, which nothing should have left, and whether anything had to be killed."""
    def populated():
        return read(top, "cgroup.events")["populated"] != "0"
    deadline = time.monotonic() + STARTUP_WAIT
    while populated() and time.monotonic() < deadline:
        time.sleep(0.05)  # a process just reaped is still leaving
    killed = populated()
    if killed:
        with open(os.path.join(top, "cgroup.kill"), "w") as f:
            f.write("1")
        deadline = time.monotonic() + STARTUP_WAIT
        while populated() and time.monotonic() < deadline:
            time.sleep(0.05)
    below = sorted((os.path.join(d, n) for d, subdirs, _ in os.walk(top) for n in subdirs), reverse=True)
    for directory in [*below, top]:
        os.rmdir(directory)
    return [d for d in below if d != leaf], killed


def read(directory: str, name: str) -> dict:
    with open(os.path.join(directory, name)) as f:
        return dict(line.split(maxsplit=1) for line in f.read().splitlines())


def value(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def limit(directory: str, name: str, value: str) -> None:
    """As systemd sets MemoryMax, CPUQuota, TasksMax: root writes the unit's own limit files."""
    with open(os.path.join(directory, name), "w") as f:
        f.write(value)


@pytest.fixture
def learner_cgroups():
    """A cgroup delegated to each learner beside ours, with every controller enabled for it (as systemd enables
    those of a unit with Delegate=yes), removed afterwards: {uid: (top, leaf)}."""
    layout = skip_unless_users_get_cgroups()
    parent = os.path.dirname(layout.v2_own_dir)
    v2.enable_controllers(parent, sorted(v2.available(parent)))
    made = {}
    try:
        for uid in (A, B):
            made[uid] = delegated_cgroup(parent, uid)
        yield made
    finally:
        removed = [remove_cgroup(top, leaf) for top, leaf in made.values()]
        assert not any(killed for _, killed in removed), "processes were left running in the learners' cgroups"
        assert not [d for left, _ in removed for d in left], f"cgroups were left below the learners': {removed}"


def test_a_cannot_write_into_bs_cgroup_nor_lift_its_own_limits(learner_cgroups, homes):
    """B makes a cgroup of its own below its unit's and sets its memory.max: B's. A may neither move itself into
    any of B's cgroups, nor make one there, nor set B's limits (the files are B's, mode 0644: EACCES). Nor may A
    lift its own unit's limits: those files stay root's, as systemd leaves them."""
    (a_top, a_leaf), (b_top, b_leaf) = learner_cgroups[A], learner_cgroups[B]
    sub = os.path.join(b_top, "mine")
    as_b = probe(B, [("mkdir", sub), ("write", os.path.join(b_top, "cgroup.subtree_control"), "+memory"),
                     ("write", os.path.join(sub, "memory.max"), "64M"),
                     ("write", os.path.join(sub, "cgroup.procs"), "0")], homes[B], cgroup=b_leaf)
    assert as_b == ["ok"] * 4  # the last: B moved itself into it
    as_a = probe(A, [*[("write", os.path.join(d, "cgroup.procs"), "0") for d in (b_top, b_leaf, sub)],
                     ("write", os.path.join(sub, "memory.max"), "max"), ("mkdir", os.path.join(b_top, "a")),
                     ("write", os.path.join(b_top, "cgroup.subtree_control"), "-memory"),
                     *[("write", os.path.join(a_top, f), "max") for f in ("memory.max", "pids.max", "cpu.max")]],
                 homes[A], cgroup=a_leaf)
    assert as_a == ["EACCES"] * 9
    assert value(sub, "memory.max") == str(64 << 20)  # B's, as B set it
    assert probe(B, [("rmdir", sub)], homes[B]) == ["ok"]  # B's own to remove


FORKER = r"""
import errno, os, sys
r, w = os.pipe()
forked, error = 0, "none"
for _ in range(int(sys.argv[1])):
    try:
        child = os.fork()
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
    if child == 0:
        os.close(w)
        os.read(r, 1)  # held until the parent closes its end
        os._exit(0)
    forked += 1
os.close(r)
print(forked, error, flush=True)
sys.stdin.readline()  # holding its children, until the test has looked
os.close(w)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def start_forker(uid: int, forks: int, cgroup: str, home: str) -> tuple[subprocess.Popen, int, str]:
    """uid forks up to `forks` children in that cgroup and holds them: (the process, how many it forked, the errno
    that stopped it or "none")."""
    forker = subprocess.Popen(as_learner(uid, SYSTEM_PYTHON, "-c", FORKER, str(forks), cgroup=cgroup),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/", env=learner_env(home))
    forked, error = forker.stdout.readline().split()
    return forker, int(forked), error


def release(process: subprocess.Popen) -> None:
    process.stdin.write("\n")
    process.stdin.close()
    process.wait(60)


@pytest.mark.slow
def test_as_fork_loop_stops_at_its_task_limit_and_b_still_forks(learner_cgroups, homes):
    """TasksMax is the unit's pids.max. A's loop stops there: the kernel counts the refusals in pids.events (in
    the cgroup that holds the limit: A's unit, whose own children have no pids controller). Meanwhile B, in its own
    cgroup, forks all it asks for; the counterfactual, a process of B's in A's cgroup, forks nothing: a limit
    shared would have starved B."""
    (a_top, a_leaf), (b_top, b_leaf) = learner_cgroups[A], learner_cgroups[B]
    limit(a_top, "pids.max", "16")
    limit(b_top, "pids.max", "64")
    a, a_forked, a_error = start_forker(A, 64, a_leaf, homes[A])
    try:
        assert (a_forked, a_error) == (15, "EAGAIN")  # with itself, 16
        assert value(a_top, "pids.current") == "16"
        assert int(read(a_top, "pids.events")["max"]) >= 1
        b, b_forked, b_error = start_forker(B, 32, b_leaf, homes[B])
        release(b)
        assert (b_forked, b_error) == (32, "none")
        assert read(b_top, "pids.events")["max"] == "0"
        b_in_a, shared_forked, shared_error = start_forker(B, 8, a_leaf, homes[B])  # root moves it in
        release(b_in_a)
        assert (shared_forked, shared_error) == (0, "EAGAIN")
    finally:
        release(a)


BURNER = r"""
import select, sys, time
stat, until = sys.argv[1], int(sys.argv[2])
print("burning", flush=True)
give_up = time.monotonic() + 300  # only a bound on the run: what is asserted comes from the kernel's counters


def throttled():
    with open(stat) as f:
        return int(dict(line.split() for line in f)["nr_throttled"])


while time.monotonic() < give_up:
    for _ in range(20000):
        pass
    if until and throttled() >= until:  # A: until its cgroup was throttled that many times
        break
    if not until and select.select([sys.stdin], [], [], 0)[0]:  # B: until the test says
        break
"""
QUOTA, PERIOD = 20000, 100000  # A's cpu.max: 20 % of one CPU


def cpu_stat(directory: str) -> dict:
    return {k: int(v) for k, v in read(directory, "cpu.stat").items()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_as_cpu_burn_is_throttled_to_its_quota_and_b_is_not(learner_cgroups, homes):
    """CPUQuota is the unit's cpu.max. A burns until the kernel has throttled its cgroup 5 times; B burns in its
    own cgroup all along. What A got is bounded by the kernel's own counters: at most its quota in each period the
    kernel enforced (nr_periods) and in each period of the wall time A ran, plus one period's quota for the first,
    partial, one and one for the overrun of a tick. B, whose quota (2 CPUs) one thread cannot reach, is never
    throttled, and got more CPU while A ran than A did."""
    (a_top, a_leaf), (b_top, b_leaf) = learner_cgroups[A], learner_cgroups[B]
    if "cpu" not in v2.available(a_top):
        pytest.skip("this kernel's cgroup v2 has no cpu controller")
    limit(a_top, "cpu.max", f"{QUOTA} {PERIOD}")
    limit(b_top, "cpu.max", f"{2 * PERIOD} {PERIOD}")
    b = subprocess.Popen(as_learner(B, SYSTEM_PYTHON, "-c", BURNER, f"{b_top}/cpu.stat", "0", cgroup=b_leaf),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/", env=learner_env(homes[B]))
    try:
        assert b.stdout.readline().strip() == "burning"
        b_before, start = cpu_stat(b_top)["usage_usec"], time.monotonic()
        a = subprocess.run(as_learner(A, SYSTEM_PYTHON, "-c", BURNER, f"{a_top}/cpu.stat", "5", cgroup=a_leaf),
                           capture_output=True, text=True, timeout=400, cwd="/", env=learner_env(homes[A]))
        wall_usec = (time.monotonic() - start) * 1e6
        b_during = cpu_stat(b_top)["usage_usec"] - b_before
    finally:
        release(b)
    assert a.returncode == 0, a.stderr
    a_stat, b_stat = cpu_stat(a_top), cpu_stat(b_top)
    assert a_stat["nr_throttled"] >= 5 and a_stat["throttled_usec"] > 0
    assert a_stat["usage_usec"] <= (a_stat["nr_periods"] + 2) * QUOTA, a_stat
    assert a_stat["usage_usec"] <= wall_usec * QUOTA / PERIOD + 2 * QUOTA, (a_stat, wall_usec)
    assert b_stat["nr_periods"] > 0 and b_stat["nr_throttled"] == 0, b_stat  # enforced, never reached
    assert b_during > a_stat["usage_usec"], (b_during, a_stat)


# --- 05's attacks, run by learner A ---------------------------------------------------------------------------

# What an unprivileged learner cannot even try, and why (run_attack raises this LabError for it).
NOT_ATTEMPTABLE = {"setuid": "only root can make a setuid-root program"}
# Stopped by a limit of the container's cgroup: only where A has a delegated cgroup for its containers' cgroups.
BY_CGROUP_LIMITS = [a.name for a in attacks.ATTACKS if {"memory", "pids", "cpus"} & set(a.undefended)]

RUN_ATTACKS = r"""
import json, os, sys
from minicontainer.errors import LabError
from minicontainer.lab import attacks
from minicontainer.rootfs import DEFAULT_ROOTFS, build_rootfs
if not os.path.exists(DEFAULT_ROOTFS + "/bin/sh"):
    build_rootfs(DEFAULT_ROOTFS, quiet=True)  # without root, the image is a copy of A's own, as a lesson's setup makes
with attacks.host_fixtures() as fixtures:
    for name in sys.argv[1:]:
        try:
            outcome = attacks.run_attack(attacks.BY_NAME[name], fixtures=fixtures)
            said = {"verdict": outcome.verdict, "evidence": outcome.evidence}
        except LabError as e:
            said = {"not attempted": str(e)}
        print(json.dumps({"name": name, **said}), flush=True)
"""


@pytest.fixture(scope="module")
def as_attacks(image, homes):
    """Every attack of lesson 05 run by A, with the defaults, in A's own delegated cgroup where there can be one,
    while a process of root's and one of B's run beside; with what the host looked like before and after."""
    delegated, sentinels = None, []
    try:
        with contextlib.suppress(pytest.skip.Exception):
            layout = skip_unless_users_get_cgroups()
            parent = os.path.dirname(layout.v2_own_dir)
            v2.enable_controllers(parent, sorted(v2.available(parent)))
            delegated = delegated_cgroup(parent, A)
        names = [a.name for a in attacks.ATTACKS if delegated or a.name not in BY_CGROUP_LIMITS]
        before = {path: open(path).read() for path in HOST_SETTINGS}
        # A's kill -9 -1, and any other attack, must reach neither.
        sentinels = [subprocess.Popen(["sleep", "600"]), subprocess.Popen(as_learner(B, "sleep", "600"))]
        out = subprocess.run(as_learner(A, SYSTEM_PYTHON, "-c", RUN_ATTACKS, *names,
                                        cgroup=delegated[1] if delegated else None),
                             capture_output=True, text=True, timeout=900, cwd="/", env=learner_env(homes[A]))
        yield {"outcomes": {said["name"]: said for said in map(json.loads, out.stdout.splitlines())},
               "stderr": out.stderr, "delegated": delegated,
               "alive": {"root's": sentinels[0].poll() is None, "B's": sentinels[1].poll() is None},
               "settings": {path: open(path).read() for path in HOST_SETTINGS}, "before": before,
               "hostname": socket.gethostname()}
    finally:
        for sentinel in sentinels:
            sentinel.kill()
            sentinel.wait()
        left, killed = remove_cgroup(*delegated) if delegated else ([], False)
        assert not left and not killed, f"A's containers left cgroups {left} (processes: {killed})"


@pytest.mark.slow
@pytest.mark.timeout(900)  # all of them run once, in the first test: minutes in the cgroup v2 VM (TCG)
@pytest.mark.parametrize("attack", attacks.ATTACKS, ids=lambda a: a.name)
def test_as_escape_attempts_are_contained(as_attacks, attack):
    if attack.name in BY_CGROUP_LIMITS and not as_attacks["delegated"]:
        skip_unless_users_get_cgroups()  # skips, with test_rootless's words: no cgroup of A's for its limit
    said = as_attacks["outcomes"].get(attack.name)
    assert said, f"{attack.name} did not run: {as_attacks['stderr'][-2000:]}"
    if attack.name in NOT_ATTEMPTABLE:
        assert said.get("not attempted", "").startswith(NOT_ATTEMPTABLE[attack.name]), said
    else:
        assert said.get("verdict") == "contained", said


def test_as_payloads_were_built_in_as_own_cache(as_attacks, homes):
    """A learner cannot write root's /var/cache/minicontainer: the payloads are compiled into A's own cache, below
    A's HOME, and owned by A; no setuid-root copy is among them."""
    cache = os.path.join(homes[A], ".cache", "minicontainer", "payloads")
    assert sorted(os.listdir(cache)) == ["attacks"]
    assert os.stat(os.path.join(cache, "attacks")).st_uid == A


def test_as_attacks_changed_nothing_of_the_hosts_or_bs(as_attacks, capsys):
    """As tests/test_escapes.py's fixture checks after root's containers: the host's settings and hostname are as
    they were, and a process of root's and one of B's outlived all of A's attacks (kill -9 -1 among them)."""
    assert as_attacks["alive"] == {"root's": True, "B's": True}
    assert as_attacks["settings"] == as_attacks["before"]
    assert as_attacks["hostname"] == as_attacks["before"]["/proc/sys/kernel/hostname"].strip()
    with capsys.disabled():
        print("\n" + "\n".join(f"{name:<18} {said.get('verdict') or 'not attempted'}: "
                               f"{said.get('evidence') or said.get('not attempted', '').splitlines()[0]}"
                               for name, said in as_attacks["outcomes"].items()))
