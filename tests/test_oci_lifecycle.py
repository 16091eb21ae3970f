"""The OCI lifecycle, driven as an engine drives runc: create, state, start, kill, delete, each a separate
run of the runtime, with a stand-in for conmon (tests/engine_shim.py) as the subreaper that reaps PID 1.

Each lifecycle case runs under minicontainer and under runc in the same test, and the two are compared by
what the kernel shows of their containers (/proc and cgroupfs), not by what either runtime says.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from minicontainer import inspect, namespaces
from minicontainer.lab.compare import kernel_view

SHIM = os.path.join(REPO, "tests", "engine_shim.py")
MINICONTAINER = [sys.executable, "-m", "minicontainer.cli"]
ENV = dict(os.environ, PYTHONPATH=REPO)
MEMORY = 64 << 20


class Engine:
    """One runtime (minicontainer or runc) with a state root of its own, called as engines call it."""

    def __init__(self, runtime: list[str], root: str, workdir: str):
        self.runtime, self.root, self.workdir = runtime, root, workdir
        self.shims: list[subprocess.Popen] = []

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([*self.runtime, "--root", self.root, *args], capture_output=True, text=True,
                              timeout=timeout, env=ENV, stdin=subprocess.DEVNULL)

    def create(self, container_id: str, bundle: str) -> dict:
        """`create` under the shim; its exit code and messages."""
        shim = subprocess.Popen([sys.executable, SHIM, self.output(container_id), *self.runtime, "--root", self.root,
                                 "create", "--bundle", bundle, container_id], stdout=subprocess.PIPE, text=True,
                                env=ENV)
        self.shims.append(shim)
        return json.loads(shim.stdout.readline())

    def output(self, container_id: str) -> str:
        return os.path.join(self.workdir, f"{container_id[:64]}.out")

    def reaped(self, timeout: float = 15) -> list[int]:
        """The exit codes the shims collected, once every one of them has ended."""
        codes = []
        for shim in self.shims:
            out, _ = shim.communicate(timeout=timeout)
            codes += [json.loads(line)["code"] for line in out.splitlines()]
        self.shims = []
        return codes

    def state(self, container_id: str) -> dict:
        out = self("state", container_id)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def cleanup(self) -> None:
        for container_id in os.listdir(self.root) if os.path.isdir(self.root) else []:
            if not container_id.startswith("."):
                self("delete", "--force", container_id)
        for shim in self.shims:
            try:
                shim.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                shim.kill()
                shim.communicate()


@pytest.fixture
def engines(tmp_path):
    if not shutil.which("runc"):
        pytest.fail("runc is not installed (./lab test installs it from Debian's packages)")
    made = {"minicontainer": Engine(MINICONTAINER, str(tmp_path / "mc-root"), str(tmp_path)),
            "runc": Engine(["runc"], str(tmp_path / "runc-root"), str(tmp_path))}
    yield made
    for engine in made.values():
        engine.cleanup()


def make_bundle(tmp_path, image, args: list[str], **changes) -> str:
    """runc's own default config.json (`runc spec`), with our image, a command, a 64 MiB limit and 20 pids."""
    bundle = tmp_path / f"bundle-{len(list(tmp_path.glob('bundle-*')))}"
    bundle.mkdir()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": image, "readonly": True}
    config["process"].update(terminal=False, args=args)
    config["linux"]["resources"].update(memory={"limit": MEMORY}, pids={"limit": 20})
    for key, value in changes.items():
        config[key] = value
    (bundle / "config.json").write_text(json.dumps(config))
    return str(bundle)


def memory_limit(pid: int) -> int | None:
    return inspect.cgroup_of(pid).stats()["memory_limit"]


def command_line(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")[:-1]


def test_create_start_kill_delete_as_runc_does(tmp_path, image, engines):
    bundle = make_bundle(tmp_path, image, ["sh", "-c", "echo started; exec sleep 600"])
    views = {}
    for name, engine in engines.items():
        created = engine.create("life", bundle)
        assert created["create"] == 0, open(engine.output("life")).read()
        state = engine.state("life")
        assert state["status"] == "created" and state["id"] == "life" and state["bundle"] == bundle, state
        pid = state["pid"]
        # PID 1 exists, in its namespaces and cgroup, but the command has not run: the gate holds it.
        assert "pid" in set(namespaces.identities(pid)) - set(namespaces.shared_with(pid)), name
        assert memory_limit(pid) == MEMORY, name
        assert command_line(pid)[-1] != "echo started; exec sleep 600", (name, command_line(pid))
        assert os.path.getsize(engine.output("life")) == 0, name
        out = engine("start", "life")
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 10
        while command_line(pid) != ["sleep", "600"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert command_line(pid) == ["sleep", "600"], name  # the same process, now the command
        assert engine.state("life")["status"] == "running"
        assert open(engine.output("life")).read() == "started\n"
        views[name] = kernel_view(pid)
        cgroup_dirs = inspect.cgroup_of(pid).directories
        assert engine("kill", "life", "KILL").returncode == 0
        assert engine.reaped() == [-signal.SIGKILL], name  # the shim, not the runtime, collected PID 1
        assert engine.state("life")["status"] == "stopped"
        assert all(os.path.isdir(d) for d in cgroup_dirs), name  # stopped is not gone: delete removes it
        assert engine("delete", "life").returncode == 0
        gone = engine("state", "life")
        assert gone.returncode != 0 and "does not exist" in gone.stderr, name
        assert not any(os.path.isdir(d) for d in cgroup_dirs), name
    same = ("own namespaces", "memory limit", "pids limit", "capabilities bounding", "capabilities effective",
            "capabilities inheritable", "capabilities ambient", "no_new_privs", "root read-only", "hostname",
            "loopback up", "signals ignored")
    assert views["minicontainer"]["signals ignored"] == "0000000000000000"  # none carried over from Python
    assert views["minicontainer"]["loopback up"]  # runc brings lo up in a new network namespace, and so do we
    assert {k: views["minicontainer"][k] for k in same} == {k: views["runc"][k] for k in same}


def lifecycle_of(engine: Engine, container_id: str) -> tuple[str, int]:
    """(status, pid) from `state`, or ("gone", 0) where the runtime says it does not exist."""
    out = engine("state", container_id)
    if out.returncode != 0:
        return "gone", 0
    state = json.loads(out.stdout)
    return state["status"], state["pid"]


def test_wrong_verbs_are_refused_with_the_reason_and_change_nothing(tmp_path, image, engines):
    engine = engines["minicontainer"]
    bundle = make_bundle(tmp_path, image, ["sleep", "600"])
    assert engine.create("busy", bundle)["create"] == 0
    status, pid = lifecycle_of(engine, "busy")
    cases = [  # (verb, what the message names); each while the container is created
        (("delete", "busy"), "'busy' is created"),
        (("create", "--bundle", bundle, "busy"), "already exists"),
        (("create", "--bundle", bundle, "no/slash"), "is not valid"),
        (("kill", "busy", "NOSUCH"), "'NOSUCH' is not a signal"),
        (("start", "ghost"), "'ghost' does not exist"),
    ]
    for args, words in cases:
        out = engine(*args)
        assert out.returncode == 125 and words in out.stderr and "likely cause" in out.stderr, (args, out.stderr)
        assert lifecycle_of(engine, "busy") == (status, pid) == ("created", pid), args
    assert engine("start", "busy").returncode == 0
    socket_only = ("exec", "--console-socket", str(tmp_path / "none.sock"), "busy", "true")
    for args, words in ((("exec", "-t", "busy", "true"), "go together"), (socket_only, "without a terminal"),
                        (("exec", "--process", str(tmp_path / "absent.json"), "busy"), "cannot read the process file")):
        out = engine(*args)
        assert out.returncode == 125 and words in out.stderr, (args, out.stderr)
    twice = engine("start", "busy")
    assert twice.returncode == 125 and "is running, not created" in twice.stderr
    assert engine("kill", "busy", "KILL").returncode == 0
    assert engine.reaped() == [-signal.SIGKILL]
    stopped = engine("kill", "busy", "KILL")
    assert stopped.returncode == 125 and "is stopped: there is no process to signal" in stopped.stderr
    assert engine("delete", "busy").returncode == 0
    assert lifecycle_of(engine, "busy") == ("gone", 0)
    assert engine("delete", "--force", "busy").returncode == 0  # already gone: as runc, not an error


@pytest.mark.parametrize("change, words, code", [
    ("not json", "is not valid JSON", 125),
    ({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}}, "seccomp action SCMP_ACT_NOTIFY", 125),
    ({"linux": {"sysctl": {"kernel.core_pattern": "|/tmp/x"}}}, "sysctl kernel.core_pattern is not namespaced", 125),
    ({"root": {"path": "/nonexistent/rootfs"}}, "/nonexistent/rootfs", 125),
    ({"process": {"terminal": True}}, "process.terminal and --console-socket go together", 125),
    ({"process": {"args": ["no-such-program"]}}, "'no-such-program' not found", 127),
    ({"process": {"args": ["/etc/passwd"]}}, "'/etc/passwd' is not executable", 126),
])
def test_a_bundle_that_cannot_run_fails_create_and_leaves_nothing(tmp_path, image, engines, change, words, code):
    engine = engines["minicontainer"]
    bundle = make_bundle(tmp_path, image, ["true"])
    path = os.path.join(bundle, "config.json")
    if change == "not json":
        with open(path, "a") as f:
            f.write("}")
    else:
        config = json.load(open(path))
        for key, value in change.items():
            config[key] = {**config.get(key, {}), **value}
        json.dump(config, open(path, "w"))
    log = tmp_path / "runtime.log"
    created = engine.create("bad", bundle) if code != 125 else None
    out = created or {}
    if created is None:
        direct = subprocess.run([*MINICONTAINER, "--root", engine.root, "--log", str(log), "--log-format", "json",
                                 "create", "--bundle", bundle, "bad"], capture_output=True, text=True, env=ENV,
                                timeout=30)
        out = {"create": direct.returncode}
        assert words in direct.stderr, direct.stderr
        entry = json.loads(log.read_text().splitlines()[-1])  # where conmon reads a runtime's reason
        assert entry["level"] == "error" and words in entry["msg"]
    else:
        assert words in open(engine.output("bad")).read()
        assert engine.reaped() == []  # no PID 1 was left behind for the shim
    assert out["create"] == code
    assert lifecycle_of(engine, "bad") == ("gone", 0)
    assert (os.listdir(engine.root) if os.path.isdir(engine.root) else []) == []


def test_kill_9_of_create_midway_leaves_what_cleanup_and_delete_remove(tmp_path, image, engines):
    """create killed after its overlay step: PID 1 sees its channel close and exits, the shim reaps it; the
    cgroup and the state are left, marked stale, and `cleanup` removes them."""
    engine = engines["minicontainer"]
    bundle = make_bundle(tmp_path, image, ["sleep", "600"])
    shim = subprocess.Popen([sys.executable, SHIM, engine.output("x"), sys.executable, "-c", KILL_CREATE_AT_OVERLAY,
                             engine.root, bundle], stdout=subprocess.PIPE, text=True, env=ENV)
    lines, _ = shim.communicate(timeout=60)
    reports = [json.loads(line) for line in lines.splitlines()]
    assert reports[0] == {"create": 137}, open(engine.output("x")).read()
    assert [r["code"] for r in reports[1:]] == [1]  # PID 1, on its channel's EOF
    status, _ = lifecycle_of(engine, "midway")
    assert status == "stopped"
    listed = subprocess.run([*MINICONTAINER, "--root", engine.root, "ps"], capture_output=True, text=True, env=ENV)
    assert "stale (its create was killed)" in listed.stdout
    cleaned = subprocess.run([*MINICONTAINER, "--root", engine.root, "cleanup"], capture_output=True, text=True,
                             env=ENV)
    assert "removed cgroup" in cleaned.stdout and "removed state" in cleaned.stdout, cleaned.stdout
    assert lifecycle_of(engine, "midway") == ("gone", 0)


KILL_CREATE_AT_OVERLAY = """
import subprocess, sys
root, bundle = sys.argv[1:]
create = subprocess.Popen([sys.executable, "-m", "minicontainer.cli", "--root", root, "--debug", "create",
                           "--bundle", bundle, "midway"], stderr=subprocess.PIPE, text=True)
for line in create.stderr:
    if line.startswith("=> overlay"):
        create.kill()
        break
sys.exit(137 if create.wait() == -9 else 1)  # 137: create was killed as asked
"""


def test_an_id_too_long_for_a_directory_name_still_names_its_container(tmp_path, image, engines):
    engine = engines["minicontainer"]
    long_id = "c" * 300  # past NAME_MAX (255): its state and cgroup take a shorter name with a digest
    bundle = make_bundle(tmp_path, image, ["sleep", "600"])
    assert engine.create(long_id, bundle)["create"] == 0, open(engine.output(long_id)).read()
    status, pid = lifecycle_of(engine, long_id)
    assert status == "created" and all(len(os.path.basename(d)) < 255 for d in inspect.cgroup_of(pid).directories)
    assert engine("delete", "--force", long_id).returncode == 0
    assert engine.reaped() == [-signal.SIGKILL]
    assert lifecycle_of(engine, long_id) == ("gone", 0)


def run_to_the_end(engine: Engine, container_id: str, bundle: str) -> tuple[int, str]:
    """create, start, and wait for the command to exit: (exit code, its output); then delete."""
    created = engine.create(container_id, bundle)
    assert created["create"] == 0, open(engine.output(container_id)).read()
    assert engine("start", container_id).returncode == 0
    codes = engine.reaped(timeout=30)
    assert engine("delete", container_id).returncode == 0
    return codes[-1], open(engine.output(container_id)).read()


def test_the_configs_seccomp_profile_and_namespaced_sysctls_apply_as_under_runc(tmp_path, image, engines):
    """A config's own seccomp profile (mkdir refused with EACCES, everything else allowed) is compiled and
    loaded; a namespaced sysctl is written into the container's own network namespace, not the host's."""
    host_range = open("/proc/sys/net/ipv4/ping_group_range").read()
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                                   "SCMP_ARCH_AARCH64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    script = ("mkdir /dev/shm/d 2>&1; grep Seccomp: /proc/self/status; cat /proc/sys/net/ipv4/ping_group_range; "
              "touch /dev/shm/f && echo touched")
    config = json.loads(open(os.path.join(make_bundle(tmp_path, image, ["true"]), "config.json")).read())
    linux = {**config["linux"], "seccomp": profile, "sysctl": {"net.ipv4.ping_group_range": "0 0"}}
    bundle = make_bundle(tmp_path, image, ["sh", "-c", script], linux=linux)
    seen = {name: run_to_the_end(engine, "filtered", bundle) for name, engine in engines.items()}
    code, out = seen["minicontainer"]
    assert "Permission denied" in out, out              # EACCES: the profile's errnoRet, not EPERM or ENOSYS
    assert "Seccomp:\t2" in out and "touched" in out    # filtering, and only what the profile names
    assert "0\t0" in out.splitlines()[2], out            # the container's own copy of the sysctl
    assert open("/proc/sys/net/ipv4/ping_group_range").read() == host_range  # the host's, untouched
    assert seen["runc"] == seen["minicontainer"]


# The runtime spec's fields, with their JSON types: state (runtime.md, "State") and features (features.md).
STATE_FIELDS = {"ociVersion": str, "id": str, "status": str, "pid": int, "bundle": str}
FEATURES_FIELDS = {"ociVersionMin": str, "ociVersionMax": str, "hooks": list, "mountOptions": list, "linux": dict}
LINUX_FEATURES = {"namespaces": list, "capabilities": list, "cgroup": dict, "seccomp": dict, "apparmor": dict,
                  "selinux": dict}


def test_state_and_features_carry_every_field_the_runtime_spec_requires(tmp_path, image, engines):
    engine = engines["minicontainer"]
    bundle = make_bundle(tmp_path, image, ["sleep", "600"], annotations={"org.example.purpose": "test"})
    assert engine.create("fields", bundle)["create"] == 0
    for expected in ("created", "running", "stopped"):
        state = engine.state("fields")
        assert {k: type(state.get(k)) for k in STATE_FIELDS} == STATE_FIELDS, state
        assert state["status"] == expected and os.path.isabs(state["bundle"])
        assert (state["pid"] > 0) == (expected != "stopped")  # required while created or running
        assert state["annotations"] == {"org.example.purpose": "test"}
        if expected == "created":
            engine("start", "fields")
        elif expected == "running":
            engine("kill", "fields", "KILL")
            assert engine.reaped() == [-signal.SIGKILL]
    engine("delete", "fields")
    features = json.loads(engine("features").stdout)
    assert {k: type(features.get(k)) for k in FEATURES_FIELDS} == FEATURES_FIELDS
    assert {k: type(features["linux"].get(k)) for k in LINUX_FEATURES} == LINUX_FEATURES
    assert set(features["linux"]["namespaces"]) == {"pid", "network", "ipc", "uts", "mount", "user", "cgroup",
                                                    "time"}
    assert "SCMP_ACT_ERRNO" in features["linux"]["seccomp"]["actions"]


def test_hooks_run_where_and_when_the_runtime_spec_says_as_under_runc(tmp_path, image, engines):
    """createRuntime on the host, createContainer in the container's mount namespace before / moves,
    startContainer inside the container before the command, poststart and poststop on the host; each gets
    the state on stdin. The same bundle under runc writes the same record."""
    def host_hook(name: str) -> dict:  # the state it was given, and the mount namespace it ran in
        return {"path": "/bin/sh", "args": ["sh", "-c", f'cat > {tmp_path}/$0.{name}.json; '
                                           f'readlink /proc/self/ns/mnt > {tmp_path}/$0.{name}.ns', "RUNTIME"]}
    hooks = {"createRuntime": [host_hook("createRuntime")], "createContainer": [host_hook("createContainer")],
             "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/start-state"]}],
             "poststart": [host_hook("poststart")], "poststop": [host_hook("poststop")]}
    records = {}
    for name, engine in engines.items():
        for kind in ("createRuntime", "createContainer", "poststart", "poststop"):
            hook = hooks[kind][0]
            hook["args"][-1] = name  # $0: which runtime ran it
        bundle = make_bundle(tmp_path, image, ["sh", "-c", "cat /dev/shm/start-state"], hooks=hooks)
        code, out = run_to_the_end(engine, "hooked", bundle)
        record = {"exit": code, "startContainer saw": json.loads(out)["status"]}
        for kind in ("createRuntime", "createContainer", "poststart", "poststop"):
            state = json.load(open(tmp_path / f"{name}.{kind}.json"))
            in_host_mnt = open(tmp_path / f"{name}.{kind}.ns").read().strip() == os.readlink("/proc/self/ns/mnt")
            record[kind] = (state["id"], state["status"], in_host_mnt)
        records[name] = record
    assert records["minicontainer"] == {
        "exit": 0, "startContainer saw": "created",
        "createRuntime": ("hooked", "creating", True), "createContainer": ("hooked", "creating", False),
        "poststart": ("hooked", "running", True), "poststop": ("hooked", "stopped", True)}
    # runc (1.1) still says "created" to poststart hooks; the command runs by then, and we say so.
    records["runc"]["poststart"] = records["runc"]["poststart"][:1] + ("running",) + records["runc"]["poststart"][2:]
    assert records["minicontainer"] == records["runc"]


def test_a_configs_device_rules_are_what_the_kernel_enforces(tmp_path, image, engines):
    """A config that allows /dev/null (1:3) but not /dev/zero (1:5): the device cgroup (v1's controller, or
    v2's BPF program) lets the one open and refuses the other, though both nodes exist in /dev."""
    config = json.loads(open(os.path.join(make_bundle(tmp_path, image, ["true"]), "config.json")).read())
    linux = config["linux"]
    linux["resources"]["devices"] = [{"allow": False, "access": "rwm"},
                                     {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    bundle = make_bundle(tmp_path, image, ["sh", "-c", "echo > /dev/null && echo null-ok; "
                                                       "head -c1 /dev/zero >/dev/null 2>&1 || echo zero-refused"],
                         linux=linux)
    code, out = run_to_the_end(engines["minicontainer"], "devices", bundle)
    assert (code, out) == (0, "null-ok\nzero-refused\n")


def test_a_created_container_with_a_user_outlives_create(tmp_path, image, engines):
    """A uid change clears the death signal and the runtime sets it again, in supervised mode; a PID 1 made
    by create must not get it back, or it dies with create (found under Docker, whose configs set groups)."""
    config = json.loads(open(os.path.join(make_bundle(tmp_path, image, ["true"]), "config.json")).read())
    process = {**config["process"], "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
               "capabilities": {"bounding": config["process"]["capabilities"]["bounding"]}}
    bundle = make_bundle(tmp_path, image, ["id"], process={**process, "args": ["id"]})
    code, out = run_to_the_end(engines["minicontainer"], "user", bundle)
    assert (code, out) == (0, "uid=1000 gid=1000 groups=10\n"), out


def test_a_bind_through_a_symlink_in_the_image_lands_inside_the_container(tmp_path, image, engines):
    """An image whose /srv is a symlink to /../../<a host directory>: before pivot_root, os.path.join would
    follow it to the host's directory and bind over it. The bind lands in the container's own /<that
    directory>; the host's stays as it was."""
    host_dir = tmp_path / "host-side"
    host_dir.mkdir()
    evil = tmp_path / "evil-image"
    shutil.copytree(image, evil, symlinks=True)
    (evil / "srv").symlink_to(f"/../../..{host_dir}")
    payload = tmp_path / "payload.txt"
    payload.write_text("payload\n")
    config = json.loads(open(os.path.join(make_bundle(tmp_path, image, ["true"]), "config.json")).read())
    mounts = config["mounts"] + [{"destination": "/srv/file", "type": "bind", "source": str(payload),
                                  "options": ["rbind", "ro"]}]
    bundle = make_bundle(tmp_path, str(evil), ["cat", f"{host_dir}/file"], mounts=mounts)
    code, out = run_to_the_end(engines["minicontainer"], "symlinked", bundle)
    assert (code, out) == (0, "payload\n")      # inside, the symlink leads to the bind
    assert os.listdir(host_dir) == []           # outside, nothing was made or mounted


@pytest.mark.parametrize("cgroupns", [False, True], ids=["host-cgroupns", "own-cgroupns"])
def test_the_containers_own_cgroups_at_sys_fs_cgroup_as_runc_mounts_them(tmp_path, image, engines, cgroupns):
    """The config's /sys/fs/cgroup mount: the same mount points as under runc (on v1 one per hierarchy in a
    tmpfs, on v2 the cgroup2 tree), read-only; on v1, and on v2 in a cgroup namespace of its own, the
    container reads its own limit at the top of its memory hierarchy."""
    wanted = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")] + \
        ([{"type": "cgroup"}] if cgroupns else [])
    bundle = make_bundle(tmp_path, image, ["sleep", "600"])
    config = json.loads(open(os.path.join(bundle, "config.json")).read())
    config["linux"]["namespaces"] = wanted
    open(os.path.join(bundle, "config.json"), "w").write(json.dumps(config))
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    seen = {}
    for name, engine in engines.items():
        assert engine.create("groups", bundle)["create"] == 0, open(engine.output("groups")).read()
        assert engine("start", "groups").returncode == 0
        pid = engine.state("groups")["pid"]
        top = f"/proc/{pid}/root/sys/fs/cgroup"
        limit_file = os.path.join(top, "memory.max" if v2 else "memory/memory.limit_in_bytes")
        read_only = [m for m in inspect.mounts(pid) if m.mount_point.startswith("/sys/fs/cgroup")
                     and "ro" not in m.options.split(",")]
        seen[name] = (sorted(m for m in kernel_view(pid)["mount points"] if m.startswith("/sys/fs/cgroup")),
                      open(limit_file).read().strip() if os.path.exists(limit_file) else None, read_only)
        engine("kill", "groups", "KILL")
        engine.reaped()
        assert engine("delete", "groups").returncode == 0
    ours = seen["minicontainer"]
    assert ours[0] and not ours[2], ours  # mounted, and every one of them read-only
    if cgroupns or not v2:
        assert ours[1] == str(MEMORY), ours  # its own group, not the host's root
    assert ours[:2] == seen["runc"][:2]


@pytest.mark.parametrize("content", ['{"id": "theirs", "init_process_pid": 1, "created": "2026-01-01T00:00:00Z"}',
                                     "not json"], ids=["another-runtimes-state", "damaged"])
def test_a_state_dir_that_is_not_ours_is_named_and_left_alone(tmp_path, content):
    """A --root shared with another runtime (runc's state.json has an id too), or a damaged file: every verb
    says whose it is not and what to do, exits 125, and changes nothing there."""
    root = tmp_path / "root"
    (root / "theirs").mkdir(parents=True)
    (root / "theirs" / "state.json").write_text(content)
    for verb in (["state", "theirs"], ["start", "theirs"], ["kill", "theirs", "KILL"], ["delete", "theirs"],
                 ["delete", "--force", "theirs"], ["exec", "theirs", "true"]):
        out = subprocess.run([*MINICONTAINER, "--root", str(root), *verb], capture_output=True, text=True, env=ENV,
                             timeout=30)
        assert out.returncode == 125 and "is not the state of a container minicontainer created" in out.stderr \
            and "Traceback" not in out.stderr, (verb, out.stderr)
        assert (root / "theirs" / "state.json").read_text() == content, verb


def test_a_configs_user_namespace_and_id_maps_apply_as_under_runc(tmp_path, image, engines):
    """linux.uidMappings/gidMappings with a user namespace: PID 1's /proc/PID/uid_map and gid_map are the
    config's range, it is root inside and 100000 outside, and it owns its other namespaces."""
    bundle = make_bundle(tmp_path, image, ["sleep", "600"])
    config = json.loads(open(os.path.join(bundle, "config.json")).read())
    config["linux"]["namespaces"].append({"type": "user"})
    one = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"].update(uidMappings=one, gidMappings=one)
    open(os.path.join(bundle, "config.json"), "w").write(json.dumps(config))
    refused = engines["minicontainer"].create("mapped", bundle)  # its root is below pytest's 0700 directory
    assert refused["create"] == 125 and "lets only its owner through" in open(
        engines["minicontainer"].output("mapped")).read()
    engines["minicontainer"].root = f"/run/minicontainer-test-{os.getpid()}"  # traversable, as /run/minicontainer
    seen = {}
    for name, engine in engines.items():
        assert engine.create("mapped", bundle)["create"] == 0, open(engine.output("mapped")).read()
        assert engine("start", "mapped").returncode == 0
        pid = engine.state("mapped")["pid"]
        status = inspect.status(pid)
        seen[name] = (open(f"/proc/{pid}/uid_map").read().split(), open(f"/proc/{pid}/gid_map").read().split(),
                      status["Uid"].split()[0], "user" in set(namespaces.identities(pid)) -
                      set(namespaces.shared_with(pid)))
        engine("kill", "mapped", "KILL")
        engine.reaped()
        assert engine("delete", "mapped").returncode == 0
    os.rmdir(engines["minicontainer"].root)
    assert seen["minicontainer"] == (["0", "100000", "65536"], ["0", "100000", "65536"], "100000", True), seen
    assert seen["minicontainer"] == seen["runc"]


def test_pid_and_cgroup_namespaces_joined_by_path_as_under_runc(tmp_path, image, engines):
    """A second container given the first's PID and cgroup namespaces by path (Kubernetes'
    shareProcessNamespace, podman --pid container:X): its process is in them, not PID 1 there, and the
    first container's /proc lists it."""
    first = make_bundle(tmp_path, image, ["sleep", "600"])
    config = json.loads(open(os.path.join(first, "config.json")).read())
    if {"type": "cgroup"} not in config["linux"]["namespaces"]:  # runc 1.1's `runc spec` has it; 1.0's not
        config["linux"]["namespaces"].append({"type": "cgroup"})
    open(os.path.join(first, "config.json"), "w").write(json.dumps(config))
    seen = {}
    for name, engine in engines.items():
        created = engine.create("first", first)
        assert created["create"] == 0 and engine("start", "first").returncode == 0, \
            (name, created, open(engine.output("first")).read())
        host_pid = engine.state("first")["pid"]
        second = make_bundle(tmp_path, image, ["sleep", "600"])
        config = json.loads(open(os.path.join(second, "config.json")).read())
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                         if ns["type"] not in ("pid", "cgroup")] + [
            {"type": kind, "path": f"/proc/{host_pid}/ns/{kind}"} for kind in ("pid", "cgroup")]
        open(os.path.join(second, "config.json"), "w").write(json.dumps(config))
        assert engine.create("second", second)["create"] == 0, open(engine.output("second")).read()
        assert engine("start", "second").returncode == 0
        joined = engine.state("second")["pid"]
        inside = inspect.status(joined)["NSpid"].split()[-1]  # its PID in the namespace it joined
        seen[name] = ([k for k in ("pid", "cgroup") if k in namespaces.shared_with(joined, host_pid)],
                      inside != "1", os.path.exists(f"/proc/{host_pid}/root/proc/{inside}"))
        for container in ("second", "first"):
            engine("kill", container, "KILL")
        engine.reaped()
        for container in ("second", "first"):
            assert engine("delete", container).returncode == 0
    assert seen["minicontainer"] == (["pid", "cgroup"], True, True), seen
    assert seen["minicontainer"] == seen["runc"]
