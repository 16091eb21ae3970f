"""Real engines drive minicontainer as they drive runc: Podman with conmon.

Each case runs the same `podman run` twice, once with `--runtime minicontainer` and once with runc, and
compares the two containers by what the kernel shows of them (/proc and cgroupfs), besides what Podman
reports. Podman keeps its images and state in a directory of the test's own, writes cgroupfs below the
test's own cgroup (--cgroup-parent: never libpod_parent/ at a hierarchy's root), and leaves its firewall
and network alone (--network none).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import assert_back_to, kernel_state

from minicontainer import state
from minicontainer.lab import engines
from minicontainer.lab.compare import kernel_view
from minicontainer.lab.engines import RUNTIMES, hierarchies


@pytest.fixture(scope="module")
def podman(tmp_path_factory, image):
    if not shutil.which("podman") or not shutil.which("conmon"):
        pytest.fail("podman and conmon are not installed (./lab test installs them from Debian's packages)")
    workdir, before = str(tmp_path_factory.mktemp("podman")), kernel_state()
    engine = engines.Podman(workdir, rundir=os.path.join(workdir, "run"))
    engine.import_image(image)
    yield engine
    engine.remove_containers()
    engine("rmi", "--all", "--force", check=False)
    shutil.rmtree(workdir, ignore_errors=True)
    assert_back_to(before)  # the fixture's own teardown, after every test's guard: nothing left either
    assert not engines.wait_for_processes_naming(engine.rundir, timeout=0), "a process of this Podman outlived it"
    assert not engines.cgroup_dirs(engine.parent), "Podman's cgroups were made again after their removal"


def test_podman_run_rm_passes_output_and_exit_code(podman):
    for runtime in RUNTIMES:
        out = podman.run(runtime, "--rm", "localhost/busybox:lab", "sh", "-c", "echo out; echo err >&2; exit 3",
                         check=False)
        assert (out.returncode, out.stdout) == (3, "out\n"), (runtime, out.stderr)
        assert "err" in out.stderr


def test_podman_detached_exec_stop_and_rm_see_the_same_kernel_state_as_under_runc(podman):
    views = {}
    for runtime in RUNTIMES:
        name = f"detached-{runtime}"
        podman.run(runtime, "-d", "--name", name, "--pids-limit", "50", "--cap-drop", "net_raw", "--read-only",
                   "localhost/busybox:lab", "sh", "-c", "echo hello; exec sleep 600")
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        views[runtime] = kernel_view(pid)
        assert podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")[:2] == ["sleep", "600"]
        assert podman("exec", name, "sh", "-c", "echo x > /x", check=False).returncode != 0  # --read-only
        deadline = time.monotonic() + 5
        while "hello" not in podman("logs", name).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert podman("logs", name).stdout == "hello\n"
        podman("stop", "--time", "1", name)
        assert podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "exited"
        assert not os.path.exists(f"/proc/{pid}")
        podman("rm", name)
    same = ("own namespaces", "pids limit", "capabilities bounding", "capabilities effective",
            "capabilities permitted", "capabilities inheritable", "capabilities ambient", "no_new_privs",
            "root read-only", "seccomp filters", "loopback up", "signals ignored")
    ours, theirs = views["minicontainer"], views["runc"]
    assert "CAP_NET_RAW" not in ours["capabilities bounding"] and ours["pids limit"] == 50
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}


def test_podman_memory_limit_and_oom_kill_as_under_runc(podman):
    """--memory 32m: the limit in the container's cgroup, and a 64 MiB hog killed (137), reported by Podman
    the same way for both runtimes (on cgroup v1 conmon does not flag it as an OOM kill for either)."""
    seen = {}
    for runtime in RUNTIMES:
        name = f"hog-{runtime}"
        podman.run(runtime, "-d", "--name", name, "--memory", "32m", "localhost/busybox:lab", "sh", "-c",
                   "sleep 1; head -c 64m /dev/zero | tail")
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        limit = kernel_view(pid)["memory limit"]
        podman("wait", name, timeout=60)
        report = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split()
        seen[runtime] = (limit, report)
        podman("rm", name)
    assert seen["minicontainer"][0] == 32 << 20
    assert seen["minicontainer"][1][0] == "137"
    assert seen["minicontainer"] == seen["runc"]


def test_a_podman_pod_shares_the_infra_containers_namespaces(podman):
    """A pod's containers join its infra (pause) container's net, ipc and uts namespaces by path, and
    keep a PID and mount namespace of their own."""
    seen = {}
    for runtime in RUNTIMES:
        pod = f"pod-{runtime}"
        podman("pod", "create", "--name", pod, "--network", "none", "--cgroup-parent", podman.parent, runtime=runtime)
        podman("run", "-d", "--pod", pod, "--name", f"member-{pod}", "localhost/busybox:lab", "sleep", "600",
               runtime=runtime)
        infra_id = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod).stdout.strip()
        infra = int(podman("inspect", "--format", "{{.State.Pid}}", infra_id).stdout)
        member = int(podman("inspect", "--format", "{{.State.Pid}}", f"member-{pod}").stdout)
        seen[runtime] = {kind: os.readlink(f"/proc/{infra}/ns/{kind}") == os.readlink(f"/proc/{member}/ns/{kind}")
                         for kind in ("net", "ipc", "uts", "pid", "mnt")}
        assert podman("exec", f"member-{pod}", "hostname").stdout.strip() == pod
        podman("pod", "rm", "--force", pod, runtime=runtime)
    assert seen["minicontainer"] == {"net": True, "ipc": True, "uts": True, "pid": False, "mnt": False}
    assert seen["minicontainer"] == seen["runc"]


def test_kill_9_of_conmon_then_podman_rm_force_and_cleanup_leave_nothing(podman):
    """The engine's monitor dies; the container keeps running (nobody supervised it but conmon). podman rm
    --force still reaches it through the runtime (kill), but, waiting in vain for conmon's word that it
    exited, Podman 4 never calls delete: the runtime's state and cgroup stay, and `minicontainer cleanup`
    removes them, as its engine removed its bundle (Podman 5 refuses once, then deletes when asked again).
    PID 1 stays a zombie of the machine's init, which reaps it (conmon, its subreaper, is gone)."""
    podman.run("minicontainer", "-d", "--name", "orphan", "localhost/busybox:lab", "sleep", "600")
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", "orphan").stdout)
    conmon = int(podman("inspect", "--format", "{{.State.ConmonPid}}", "orphan").stdout)
    cgroups = [line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()]
    os.kill(conmon, 9)
    time.sleep(0.5)
    assert os.path.exists(f"/proc/{pid}")  # PID 1 outlives its monitor
    removed = podman("rm", "--force", "--time", "0", "orphan", check=False)
    if removed.returncode != 0:
        # Podman 5 kills it through the runtime too, but with no exit code from conmon it keeps its own record
        # of the container ("conmon exited prematurely") until asked again; Podman 4 removes it at once.
        assert "conmon exited prematurely" in removed.stderr, removed.stderr
        podman("rm", "--force", "--time", "0", "orphan")  # and this time it deletes through the runtime too
    cleaned = subprocess.run([os.path.join(os.path.dirname(sys.executable), "minicontainer"), "cleanup"],
                             capture_output=True, text=True, timeout=60)
    # Podman 4 never calls delete, so cleanup finds the runtime's state; Podman 5's second rm did call it.
    left = "removed state" if removed.returncode == 0 else "nothing left behind"
    assert left in cleaned.stdout, cleaned.stdout + cleaned.stderr
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z" and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    leaf = next(c for c in cgroups if "libpod-" in c)
    left = [os.path.join(top, leaf.lstrip("/")) for top in hierarchies()]
    assert not [d for d in left if os.path.isdir(d)], "the container's cgroup is gone from every hierarchy"


def test_kill_9_of_podman_itself_leaves_its_container_to_conmon_and_rm_force_removes_everything(podman):
    """`podman run` in the foreground is only a client: killed with SIGKILL, it leaves the container to its
    conmon, running. `podman rm --force` then stops it through the runtime; its cgroup, the runtime's
    state and every process go."""
    client = subprocess.Popen([*podman.base, "run", "--runtime", "minicontainer", "--network", "none",
                               "--cgroup-parent", podman.parent, *engines.ULIMITS, "--name", "client-killed",
                               "localhost/busybox:lab", "sleep", "600"], env=engines.engine_env(
                                   CONTAINERS_CONF=podman.confs["minicontainer"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while podman("inspect", "--format", "{{.State.Pid}}", "client-killed", check=False).stdout.strip() in ("", "0"):
        assert time.monotonic() < deadline and client.poll() is None, "podman run did not start the container"
        time.sleep(0.1)
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", "client-killed").stdout)
    record = json.loads(subprocess.run([engines.runtime_path("minicontainer"), "state",
                                        podman("inspect", "--format", "{{.Id}}", "client-killed").stdout.strip()],
                                       capture_output=True, text=True).stdout)
    cgroups = [line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()]
    client.kill()
    client.wait()
    assert os.path.exists(f"/proc/{pid}") and podman("inspect", "--format", "{{.State.Status}}",
                                                     "client-killed").stdout.strip() == "running"
    podman("rm", "--force", "--time", "0", "client-killed")
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    leaf = next(c for c in cgroups if "libpod-" in c)
    assert not [top for top in hierarchies() if os.path.isdir(os.path.join(top, leaf.lstrip("/")))]
    assert record["status"] == "running" and not os.path.exists(state.container_dir(state.dir_name(record["id"])))


def test_podman_run_t_gets_a_terminal_through_the_console_socket(podman):
    """-t: the runtime makes a pty in the container's own devpts, makes its slave PID 1's stdio and
    controlling terminal, and sends its master to conmon over the console socket (SCM_RIGHTS)."""
    seen = {}
    for runtime in RUNTIMES:
        out = podman.run(runtime, "--rm", "-t", "localhost/busybox:lab", "sh", "-c",
                         "tty; readlink /proc/self/fd/1; ps -o pid,tty | grep '^ *1 '")
        seen[runtime] = out.stdout.replace("\r", "").split()
    assert seen["minicontainer"] == ["/dev/pts/0", "/dev/pts/0", "1", "136,0"], seen  # PID 1's controlling tty
    assert seen["minicontainer"] == seen["runc"]


def test_podmans_default_network_in_a_network_namespace_of_the_tests_own(podman):
    """Podman's default network: a CNI bridge, NAT and firewall rules, and a network namespace per container
    that the runtime joins by path. Podman runs in a network namespace the test holds, so the bridge, the
    rules and forwarding are made there, and the host's interfaces, firewall and ip_forward stay as they were.
    Under both runtimes the container has eth0 on the bridge's subnet, lo up, and reaches its gateway."""
    def host_network():
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        return sorted(line.split(":")[1].strip() for line in links.splitlines()), \
            [r for r in rules.splitlines() if not r.startswith("#")], open("/proc/sys/net/ipv4/ip_forward").read()
    before, had_cni_dir, had_netns_dir = host_network(), os.path.isdir("/var/lib/cni"), os.path.isdir("/run/netns")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare --net did not make a network namespace"
            time.sleep(0.01)
        inside = copy.copy(podman)
        inside.base = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", *podman.base]
        seen = {}
        for runtime in RUNTIMES:
            # --cap-add net_raw: busybox's ping needs a raw socket, and Podman 5 no longer keeps CAP_NET_RAW by
            # default (nor lets ping_group_range allow ICMP sockets); Podman 4 kept it. The same under runc.
            out = inside("run", "--rm", "--runtime", runtime, "--cgroup-parent", podman.parent, *engines.ULIMITS,
                         "--cap-add", "net_raw", "localhost/busybox:lab", "sh", "-c",
                         "ip -o -4 addr show; ping -c 1 -W 2 10.88.0.1 >/dev/null && echo gateway answers",
                         runtime=runtime)
            fields = [line.split() for line in out.stdout.splitlines()]
            seen[runtime] = sorted(f"{f[1]} {'.'.join(f[3].split('.')[:2])}" for f in fields if f[2:3] == ["inet"]) \
                + [line for line in out.stdout.splitlines() if line == "gateway answers"]
    finally:
        holder.kill()
        holder.wait()
        if not had_cni_dir:
            shutil.rmtree("/var/lib/cni", ignore_errors=True)  # host-local's address records, now empty
        if not had_netns_dir:  # Podman makes /run/netns a mount of its own (as `ip netns` does), for its files
            while subprocess.run(["mountpoint", "-q", "/run/netns"]).returncode == 0:  # a bind onto itself
                subprocess.run(["umount", "--lazy", "/run/netns"], check=True)
            os.rmdir("/run/netns")
    assert seen["minicontainer"] == ["eth0 10.88", "lo 127.0", "gateway answers"], seen
    assert seen["minicontainer"] == seen["runc"]
    assert host_network() == before, "the bridge, its rules and forwarding stayed in the test's namespace"
    assert not os.path.isdir("/run/netns") or not [n for n in os.listdir("/run/netns") if n.startswith("cni-")]


def test_podman_exec_t_gets_a_terminal_of_its_own_in_the_containers_devpts(podman):
    """exec -t: conmon passes a console socket to the runtime's exec, which makes a second pty in the
    container's devpts for the new process, its slave the process's stdio and controlling terminal."""
    seen = {}
    for runtime in RUNTIMES:
        name = f"exec-tty-{runtime}"
        podman.run(runtime, "-d", "-t", "--name", name, "localhost/busybox:lab", "sleep", "600")
        out = podman("exec", "-t", name, "sh", "-c", "tty; ps -o pid,tty,comm | grep ' ps$'", runtime=runtime)
        seen[runtime] = out.stdout.replace("\r", "").split()[:1] + out.stdout.replace("\r", "").split()[2:3]
        plain = podman("exec", name, "tty", check=False, runtime=runtime)
        seen[runtime].append(plain.stdout.strip())
        podman("rm", "--force", "--time", "0", name, runtime=runtime)
    assert seen["minicontainer"] == ["/dev/pts/1", "136,1", "not a tty"], seen
    assert seen["minicontainer"] == seen["runc"]


# -- containerd, as Docker and the kubelet (through CRI) reach a runtime -----------------------------

@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    if not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.fail("containerd is not installed (./lab test installs it from Debian's packages)")
    workdir = str(tmp_path_factory.mktemp("containerd"))
    engine, before = engines.Containerd(workdir, rundir=os.path.join(workdir, "run"),
                                        namespace="minicontainer-test"), kernel_state()
    yield engine.start()
    engine.stop()
    assert_back_to(before)


def test_containerd_runs_minicontainer_through_its_runc_shim_as_it_runs_runc(containerd, image):
    """ctr run --runc-binary: containerd starts its runc shim, which calls the runtime's create, start,
    state, ps, kill and delete. Output and exit code pass through; the containers compare by /proc."""
    seen, views = {}, {}
    for runtime in RUNTIMES:
        out = containerd.run(runtime, image, f"once-{runtime}", ["/bin/sh", "-c", "echo from ctr; exit 4"], "--rm",
                             check=False)
        seen[runtime] = (out.returncode, out.stdout)
        name = f"long-{runtime}"
        containerd.run(runtime, image, name, ["/bin/sleep", "600"], "-d")  # ctr --rootfs sets no PATH
        pid = containerd.task_pid(name)
        assert containerd("task", "ps", name).stdout.split()[2] == str(pid)  # the runtime's ps --format json
        views[runtime] = kernel_view(pid)
        containerd("task", "kill", "--signal", "KILL", name)
        deadline = time.monotonic() + 10
        while "STOPPED" not in containerd("task", "ls").stdout.split(name)[1].split("\n")[0] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        containerd("task", "delete", name)
        containerd("container", "delete", name)
    assert seen["minicontainer"] == (4, "from ctr\n")
    assert seen["minicontainer"] == seen["runc"]
    same = ("own namespaces", "capabilities bounding", "capabilities effective", "no_new_privs", "root read-only",
            "loopback up")
    assert {k: views["minicontainer"][k] for k in same} == {k: views["runc"][k] for k in same}
    assert not os.listdir(containerd.shim_root), "delete removed the runtime's state"


# -- Docker: dockerd -> containerd -> runc shim -> the runtime ----------------------------------------

class Docker:
    """A dockerd of the test's own: its data and exec roots and socket in a temporary directory, and every
    switch that would change the host off (no iptables rules, no bridge, ip_forward left alone), cgroups
    below the test's own, the runtime named with --add-runtime."""

    def __init__(self, workdir: str):
        self.workdir, self.socket = workdir, os.path.join(workdir, "docker.sock")
        self.parent = engines.cgroup_parent("docker")
        self.log = open(os.path.join(workdir, "dockerd.log"), "a")
        self.start()

    def start(self) -> None:
        workdir, runtime = self.workdir, engines.runtime_path("minicontainer")
        self.daemon = subprocess.Popen(
            ["dockerd", "--data-root", f"{workdir}/data", "--exec-root", f"{workdir}/exec", "--pidfile",
             f"{workdir}/docker.pid", "-H", f"unix://{self.socket}", "--iptables=false", "--ip6tables=false",
             "--ip-forward=false", "--ip-masq=false", "--bridge=none", "--userland-proxy=false",
             "--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent",
             self.parent, "--add-runtime", f"minicontainer={runtime}", "--default-ulimit", "nofile=1024:1024",
             "--default-ulimit", "nproc=1024:1024"], stdout=self.log, stderr=self.log, start_new_session=True,
            env=engines.engine_env())
        deadline = time.monotonic() + 60
        while self("version", check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)

    def __call__(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert out.returncode == 0, f"docker {' '.join(args)}: {out.returncode}\n{out.stderr}"
        return out

    def stop(self) -> None:
        self("rm", "--force", *self("ps", "-aq", check=False).stdout.split(), check=False)
        self.daemon.terminate()
        self.daemon.wait(timeout=60)
        self.log.close()
        engines.remove_cgroups(self.parent)
        # dockerd binds its data root onto itself (shared) and a network namespace file per container, and
        # leaves them at exit.
        with open("/proc/self/mountinfo") as f:
            left = [line.split()[4] for line in f if line.split()[4].startswith(self.workdir + "/")]
        for mount_point in sorted(left, key=lambda m: -m.count("/")):
            subprocess.run(["umount", "--lazy", mount_point], check=True)


@pytest.fixture(scope="module")
def docker(tmp_path_factory, image):
    if not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.fail("docker.io is not installed (./lab test installs it from Debian's packages)")
    workdir, before = str(tmp_path_factory.mktemp("docker")), kernel_state()
    engine = Docker(workdir)
    engine("import", engines.rootfs_tarball(image, workdir), "busybox:lab")
    yield engine
    engine.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    assert_back_to(before)


def test_docker_run_with_runtime_minicontainer_as_with_runc(docker):
    """docker run --runtime: dockerd hands the container to containerd, whose runc shim calls the runtime
    (with Docker's own seccomp profile, supplementary groups, device rules and a prestart hook of its
    own). Output, exit code and the container's kernel view compare with runc's."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read()
    seen, views = {}, {}
    for runtime in RUNTIMES:
        out = docker("run", "--rm", "--runtime", runtime, "--network", "none", "busybox:lab", "sh", "-c",
                     "echo hi; id; exit 5", check=False)
        seen[runtime] = (out.returncode, out.stdout)
        name = f"long-{runtime}"
        docker("run", "-d", "--name", name, "--runtime", runtime, "--network", "none", "--memory", "48m",
               "busybox:lab", "sleep", "600")
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", name).stdout)
        views[runtime] = kernel_view(pid)
        assert docker("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")[0] == "sleep"
        docker("rm", "--force", name)
    assert seen["minicontainer"][0] == 5 and seen["minicontainer"][1].startswith("hi\nuid=0(root) gid=0(root)")
    assert seen["minicontainer"] == seen["runc"]
    same = ("own namespaces", "memory limit", "capabilities bounding", "capabilities effective", "no_new_privs",
            "seccomp filters", "root read-only", "loopback up")
    assert {k: views["minicontainer"][k] for k in same} == {k: views["runc"][k] for k in same}
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == forward  # dockerd was told to leave the host's forwarding alone


def test_kill_9_of_dockerd_then_a_new_dockerd_and_rm_force_leave_nothing(docker):
    """dockerd killed with SIGKILL takes its own containerd with it (its death signal), but the shim keeps
    the container running. The next dockerd, on the same roots, starts a containerd that finds the shim
    again, and `docker rm --force` removes the container through the runtime's kill and delete: no
    process, cgroup or runtime state is left. (Runs last in this file: it replaces the module's dockerd.)"""
    docker("run", "-d", "--name", "orphaned", "--runtime", "minicontainer", "--network", "none", "busybox:lab",
           "sleep", "600")
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", "orphaned").stdout)
    cid = docker("inspect", "--format", "{{.Id}}", "orphaned").stdout.strip()
    leaf = max((line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()), key=len)
    records = [where for where, _, files in os.walk(os.path.join(docker.workdir, "exec"))
               if "state.json" in files and os.path.basename(where) == cid]
    assert records, "the runtime keeps its state under dockerd's exec root"
    with open(os.path.join(docker.workdir, "exec", "containerd", "containerd.pid")) as f:
        its_containerd = int(f.read())
    docker.daemon.kill()
    docker.daemon.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{its_containerd}") and time.monotonic() < deadline:  # its death signal
        time.sleep(0.05)  # (a new dockerd that still finds it would wait on its socket in vain)
    assert os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    docker.start()
    docker("rm", "--force", "orphaned")
    deadline = time.monotonic() + 15
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    assert not [top for top in hierarchies() if os.path.isdir(os.path.join(top, leaf.lstrip("/")))]
    assert not [r for r in records if os.path.exists(r)], "delete removed the runtime's state"
