"""The defences themselves, on the real kernel: capability sets a caller cannot widen, the seccomp
allow-list under real programs, the 32-bit argument mask, and the v2 device program."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import pytest
from conftest import cli, run_python

from minicontainer import devices, seccomp
from minicontainer.cgroups import Cgroup, Controller, Layout, base_dir, detect
from minicontainer.container import run
from minicontainer.doctor import read_if_there
from minicontainer.errors import LabError
from minicontainer.inspect import CAPABILITIES
from minicontainer.lab import attacks, payloads
from minicontainer.security import DEFAULT_CAPABILITIES, Security
from minicontainer.spec import ContainerSpec

SYS_ADMIN = 1 << CAPABILITIES.index("sys_admin")

# Raise CAP_SYS_ADMIN in this process's inheritable set, show it, then exec the command.
WITH_INHERITABLE_SYS_ADMIN = f"""
import ctypes, os, sys
class Header(ctypes.Structure): _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure): _fields_ = [("eff", ctypes.c_uint32), ("prm", ctypes.c_uint32), ("inh", ctypes.c_uint32)]
libc = ctypes.CDLL(None, use_errno=True)
header, data = Header(0x20080522, 0), (Data * 2)()
assert libc.capget(ctypes.byref(header), data) == 0
data[0].inh |= {SYS_ADMIN}
assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()
print([line for line in open("/proc/self/status") if line.startswith("CapInh")][0].strip(), flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"""


def status_field(text: str, key: str) -> int:
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith(key + ":")), 16)


def test_a_callers_inheritable_capabilities_do_not_reach_the_container(image):
    # Root's execve gives it its inheritable set plus the bounding set: without emptying the
    # inheritable set, the caller's CAP_SYS_ADMIN would come back despite the bounding set.
    out = run_python(WITH_INHERITABLE_SYS_ADMIN, args=[sys.executable, "-m", "minicontainer.cli", "run", image,
                                                       "--", "cat", "/proc/self/status"])
    assert out.returncode == 0, out.stderr
    assert status_field(out.stdout, "CapInh") & SYS_ADMIN  # the caller's line: the test's premise holds
    inside = out.stdout.split("\n", 1)[1]
    assert status_field(inside, "CapInh") == 0 and status_field(inside, "CapAmb") == 0
    assert not status_field(inside, "CapEff") & SYS_ADMIN
    default = sum(1 << CAPABILITIES.index(c) for c in DEFAULT_CAPABILITIES)
    assert status_field(inside, "CapEff") == status_field(inside, "CapPrm") == status_field(inside, "CapBnd") == default


def test_all_capabilities_means_all_the_host_holds(image):
    result = run(ContainerSpec(image, ["cat", "/proc/self/status"], security=Security(capabilities=None)))
    assert result.code == 0, result.stderr
    host = open("/proc/self/status").read()
    assert status_field(result.stdout, "CapEff") == status_field(host, "CapPrm")  # a sandbox may hold fewer bits
    assert status_field(result.stdout, "CapInh") == 0


def test_a_non_root_user_gets_no_capabilities(image):
    result = run(ContainerSpec(image, ["cat", "/proc/self/status"], user="1000:1000"))
    assert result.code == 0, result.stderr
    for key in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert status_field(result.stdout, key) == 0, key


BUSYBOX_WORK = ("set -e; mkdir -p /tmp/w; cd /tmp/w; echo hello > a; cp a b; mv b c; ln -s c d; cat d; "
                "tar cf t.tar a c; gzip t.tar; gunzip -c t.tar.gz | tar t; sort a | uniq | wc -l; "
                "find . -type f | sort; chmod 600 a; touch a; stat -c %a a; ps | head -1; "
                "(sleep 0.1 &) ; wait; md5sum a; date +%Y >/dev/null; id -u; hostname; echo done")
PYTHON_WORK = """
import asyncio, hashlib, json, multiprocessing, os, socket, sqlite3, ssl, subprocess, tempfile, threading
threading.Thread(target=lambda: None).start()
assert subprocess.run(["sh", "-c", "exit 3"]).returncode == 3
asyncio.run(asyncio.sleep(0.01))
server = socket.socket(socket.AF_UNIX); server.bind("\\0minicontainer-test"); server.listen()
client = socket.socket(socket.AF_UNIX); client.connect("\\0minicontainer-test")
peer, _ = server.accept(); peer.send(b"x"); assert client.recv(1) == b"x"
db = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "db")); db.execute("create table t(x)"); db.commit()
with multiprocessing.Pool(2) as pool: assert pool.map(abs, [-1, -2]) == [1, 2]
ssl.create_default_context(); hashlib.sha256(os.urandom(8)).hexdigest()
print("python ok")
"""
DEBIAN_WORK = ("set -e; bash -c 'echo bash ok'; ls --color=auto /usr >/dev/null; sort -u /etc/passwd >/dev/null; "
               "tar czf /tmp/x.tgz -C /etc hostname; gzip -c /etc/passwd | gzip -d >/dev/null; dpkg -l >/dev/null; "
               "apt-cache policy bash >/dev/null; perl -e 'print qq(perl ok\\n)'; ps aux >/dev/null; echo debian ok")


def test_the_allow_list_runs_ordinary_programs(image):
    """busybox in the image; Python and a Debian userland as namespace-only processes on this host's
    files. A call missing from the allow-list fails them with ENOSYS."""
    box = run(ContainerSpec(image, ["sh", "-c", BUSYBOX_WORK]))
    assert box.code == 0 and box.stdout.strip().endswith("done"), box.stdout + box.stderr
    for command, marker in (([sys.executable, "-c", PYTHON_WORK], "python ok"),
                            (["sh", "-c", DEBIAN_WORK], "debian ok")):
        result = run(ContainerSpec(None, command, env=dict(os.environ)), timeout=120)
        assert result.code == 0 and marker in result.stdout, result.stdout + result.stderr
        assert "Function not implemented" not in result.stderr


def test_namespaces_come_back_with_cap_sys_admin_as_in_docker(image):
    script = "unshare -U true && echo made a user namespace"
    assert "made a user namespace" not in run(ContainerSpec(image, ["sh", "-c", script])).stdout
    kept = run(ContainerSpec(image, ["sh", "-c", script],
                             security=Security(capabilities=DEFAULT_CAPABILITIES + ["sys_admin"])))
    assert "made a user namespace" in kept.stdout, kept.stderr


@pytest.mark.parametrize("mask, verdict", [(0xFFFFFFFFFFFFFFFF, "ALLOWED"), (seccomp.INT_MASK, "CONTAINED")],
                         ids=["all 64 bits compared", "32-bit mask"])
def test_the_tiocsti_rule_needs_its_32_bit_mask(mask, verdict):
    # The sysctl exists from Linux 6.2; before it, TIOCSTI is always allowed, as with the sysctl at 1.
    if (read_if_there("/proc/sys/dev/tty/legacy_tiocsti") or "1") != "1":
        pytest.skip("dev.tty.legacy_tiocsti=0 here: the kernel refuses TIOCSTI whatever the filter does")
    code = f"""
import errno, os, sys
from minicontainer import seccomp
lib = seccomp.libseccomp()
rule = seccomp.Rule("ioctl", errno.EPERM, 1, {mask}, seccomp.TIOCSTI)
lib.load(lib.build(None, [(lib.ERRNO | errno.EPERM, rule)]))
os.execv(sys.argv[1], [sys.argv[1], "tiocsti-high-bits"])
"""
    out = run_python(code, args=[payloads.build("attacks")])
    assert out.stdout.startswith(verdict), out.stdout + out.stderr


def test_unknown_names_are_clear_errors(image):
    for security, words in ((Security(capabilities=["sys_wizard"]), "unknown capabilities: sys_wizard"),
                            (Security(allow_syscalls=["frobnicate"]), "unknown system call(s): frobnicate"),
                            (Security(seccomp="strict"), "seccomp profile 'strict' is unknown")):
        with pytest.raises(LabError, match=words.replace("(", r"\(").replace(")", r"\)")):
            security.check()
    for flags, words in ((["--cap-add", "sys_wizard"], "unknown capabilities: sys_wizard"),
                         (["--allow-syscall", "frobnicate"], "unknown system call(s): frobnicate")):
        out = cli("run", *flags, image, "--", "true")
        assert out.returncode == 125 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_allow_syscall_adds_a_call(image):
    if attacks.BY_NAME["io-uring"].blocked_by_host():
        pytest.skip(attacks.BY_NAME["io-uring"].blocked_by_host())
    spec = ContainerSpec(image, ["/attacks", "io-uring"], binds=[(payloads.build("attacks"), "/attacks", True)],
                         security=Security(allow_syscalls=["io_uring_setup"]))
    assert run(spec).stdout.startswith("ALLOWED")
    assert run(replace(spec, security=Security())).stdout.startswith("CONTAINED")


def test_no_device_cgroup_is_an_error_not_a_container_without_rules():
    cgroup = Cgroup("no-devices", dirs={}, layout=Layout({}, unavailable={"devices": "not mounted"}))
    with pytest.raises(LabError, match="this host has no device cgroup"):
        cgroup.restrict_devices()


# The node is made on a tmpfs of the probe's own mount namespace: a host's /tmp may be mounted nodev (Debian 13's
# is), where no device node opens whatever the cgroup says.
DEVICE_PROBE = """
import os, stat, sys
from minicontainer import kernel
open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write("0")
kernel.unshare(kernel.CLONE_NEWNS)
kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
kernel.mount("tmpfs", sys.argv[4], "tmpfs", 0)
major, minor = int(sys.argv[2]), int(sys.argv[3])
def opened(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK)); return "opened"
    except OSError as e:
        return e.strerror
node = os.path.join(sys.argv[4], "disk")
os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
print(opened("/dev/null"), opened("/dev/zero"), opened(node), sep=",")
"""


def test_the_v2_device_program_refuses_a_disk_and_goes_with_its_cgroup(tmp_path):
    """Loaded and attached to a cgroup2 directory (on this hybrid host the controller-less v2 tree,
    in the cgroup v2 VM the real one), then asked by the kernel on every open."""
    layout = detect()
    if not layout.v2_mount:
        pytest.skip("no cgroup2 tree on this host")
    disk = attacks.host_block_device()
    assert disk, "no block device this host's root may open"
    # Where the runtime puts containers' cgroups in the v2 tree (beside us, or below the root).
    base = base_dir(layout, Controller("devices", 2, layout.v2_mount, layout.v2_own_dir))
    os.makedirs(base, exist_ok=True)
    directory = os.path.join(base, f"devices-test-{os.getpid()}")
    os.mkdir(directory)
    try:
        before = run_python(DEVICE_PROBE, args=[directory, *disk, tmp_path])
        prog_id = devices.attach_program(directory)
        assert devices.attached_programs(directory) == [prog_id]
        after = run_python(DEVICE_PROBE, args=[directory, *disk, tmp_path])
    finally:
        os.rmdir(directory)
        try:
            os.rmdir(base)
        except OSError:
            pass  # containers use it
    assert before.stdout.strip() == "opened,opened,opened", before.stderr
    assert after.stdout.strip() == "opened,opened,Operation not permitted", after.stderr  # mknod itself worked
    deadline = time.monotonic() + 5
    while devices.program_exists(prog_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not devices.program_exists(prog_id), "the program outlived its cgroup"


def test_the_device_program_listing_is_the_rule_list():
    listing = devices.listing()
    for rule in devices.ALLOWED:
        assert rule.v1() in listing
    numbered = [line for line in listing.splitlines() if line.strip().split(":")[0].isdigit()]
    assert len(devices.assemble(devices.program())) == 8 * len(numbered)


@pytest.mark.parametrize("node", ["disk", "console"])
def test_a_new_node_of_a_host_device_in_the_container_cannot_be_opened(image, node):
    """The host's disk, and its console (5:1: not the container's /dev/console, which is its pty)."""
    kind, (major, minor) = ("b", attacks.host_block_device()) if node == "disk" else ("c", (5, 1))
    script = f"mknod /node {kind} {major} {minor} && echo made; head -c0 /node || echo refused"
    with_it = run(ContainerSpec(image, ["sh", "-c", script]))
    assert with_it.stdout.split() == ["made", "refused"], with_it.stderr
    without = run(ContainerSpec(image, ["sh", "-c", script], security=Security(devices=False)))
    assert without.stdout.split() == ["made"], without.stderr


def test_exec_is_in_the_device_cgroup_too(image):
    from minicontainer.container import Container
    disk = attacks.host_block_device()
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        out = box.exec(["sh", "-c", f"mknod /d b {disk[0]} {disk[1]}; head -c1 /d >/dev/null; echo $?"])
    assert out.stdout.strip() == "1", out.stdout + out.stderr

