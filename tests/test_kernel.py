"""The kernel interface on both paths (os.unshare/os.setns and ctypes), and its error messages."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import run_python

from minicontainer.container import Container
from minicontainer.spec import ContainerSpec

UNSHARE_UTS = """
import socket
from minicontainer import kernel
kernel.unshare(kernel.CLONE_NEWUTS)
kernel.sethostname("branch-test")
print(kernel.implementation(), socket.gethostname())
"""

SETNS_UTS = """
import os, socket, sys
from minicontainer import kernel
fd = os.open(f"/proc/{sys.argv[1]}/ns/uts", os.O_RDONLY)
kernel.setns(fd, kernel.CLONE_NEWUTS)
print(kernel.implementation(), socket.gethostname())
"""


def python_with_os_unshare() -> str | None:
    """An interpreter of 3.12+ (which has os.unshare), to test that branch too."""
    candidates = [sys.executable, shutil.which("python3.13"), shutil.which("python3.12")]
    candidates += sorted(glob.glob("/usr/bin/python3.1[2-9]")) + sorted(glob.glob(
        os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import os; print(hasattr(os, 'unshare'))"], capture_output=True,
                               text=True)
        if probe.stdout.strip() == "True":
            return python
    return None


def interpreters():
    """(branch, python, env) for each branch; CI requires both (MINICONTAINER_REQUIRE_OS_BRANCH=1)."""
    newer = python_with_os_unshare()
    if newer is None and os.environ.get("MINICONTAINER_REQUIRE_OS_BRANCH") == "1":
        pytest.fail("no Python 3.12+ found to test the os.unshare branch; install one (CI requires it)")
    if newer is None:
        pytest.skip("no Python 3.12+ on this machine: the os.unshare branch cannot run here")
    return [("ctypes", sys.executable, {"MINICONTAINER_FORCE_CTYPES": "1"}), ("os", newer, {})]


@pytest.mark.parametrize("branch", ["ctypes", "os"])
def test_unshare_uts_on_each_branch(branch):
    python, env = next((p, e) for b, p, e in interpreters() if b == branch)
    host = socket.gethostname()
    out = run_python(UNSHARE_UTS, python, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [branch, "branch-test"]
    assert socket.gethostname() == host  # the child's UTS namespace was its own


@pytest.mark.parametrize("branch", ["ctypes", "os"])
def test_setns_into_container_on_each_branch(image, branch):
    python, env = next((p, e) for b, p, e in interpreters() if b == branch)
    with Container.start(ContainerSpec(image, ["sleep", "30"], hostname="setns-box")) as box:
        out = run_python(SETNS_UTS, python, env, args=[box.pid])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [branch, "setns-box"]


def lab_error_of(code: str, env: dict | None = None) -> str:
    """Run code in a fresh process and return the LabError text it raised."""
    wrapped = "from minicontainer.errors import LabError\ntry:\n" + \
        "".join(f"    {line}\n" for line in code.strip().splitlines()) + \
        "except LabError as e:\n    print(e)\nelse:\n    print('NO ERROR')\n"
    out = run_python(wrapped, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_pivot_root_error_names_call_and_cause():
    text = lab_error_of("""
import os, tempfile
from minicontainer import kernel
kernel.unshare(kernel.CLONE_NEWNS)
kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
d = tempfile.mkdtemp(dir="/")  # on the root's own mount (a host's /tmp may be a mount of its own)
try:
    os.mkdir(d + "/old")
    kernel.pivot_root(d, d + "/old")
finally:
    os.rmdir(d + "/old")
    os.rmdir(d)
""")
    # A plain directory on the root's own mount: the kernel answers EBUSY.
    assert "pivot_root(" in text and "EBUSY" in text and "not a mount point" in text


def test_umount_error_says_not_a_mount_point():
    text = lab_error_of("""
from minicontainer import kernel
kernel.unshare(kernel.CLONE_NEWNS)
kernel.umount2("/usr")
""")
    assert "umount2('/usr'" in text and "not a mount point" in text


def test_not_root_gets_told_to_use_root():
    text = lab_error_of("""
import os
from minicontainer import kernel
os.setgroups([]); os.setgid(65534); os.setuid(65534)
kernel.unshare(kernel.CLONE_NEWUTS)
""")
    assert "unshare(CLONE_NEWUTS)" in text and "EPERM" in text and "root" in text
    assert "likely cause" in text and "what to do" in text


def test_mount_unknown_filesystem_says_so():
    text = lab_error_of("""
from minicontainer import kernel
kernel.unshare(kernel.CLONE_NEWNS)
kernel.mount("x", "/mnt", "nosuchfs")
""")
    assert "ENODEV" in text and "does not support this filesystem type" in text


# In a fresh, single-threaded interpreter (pytest's own process has threads): make a cgroup below our own in
# the cgroup2 hierarchy, clone3 a child into it, and have the child say, first thing, where the kernel put it
# and what glibc believes its thread id is; then that it can still start a thread and a process.
CLONE_INTO_CGROUP = r"""
import ctypes, json, os, subprocess, sys, threading
from minicontainer import kernel
mount = next(l.split()[1] for l in open("/proc/self/mounts") if l.split()[2] == "cgroup2")
own = next(l.strip()[3:] for l in open("/proc/self/cgroup") if l.startswith("0::"))
directory = os.path.join(mount, own.lstrip("/"), f"clone-test-{os.getpid()}")
os.mkdir(directory)
fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
read, write = os.pipe()
tid_address = kernel._own_tid_address()  # the same address in the child, a copy of us
try:
    pid, pidfd = kernel.clone_fork(into_cgroup=fd)
    if pid == 0:
        born = next(l.strip()[3:] for l in open("/proc/self/cgroup") if l.startswith("0::"))
        glibc_tid = ctypes.c_int.from_address(tid_address).value
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        echoed = subprocess.run(["echo", "ok"], capture_output=True, text=True).stdout.strip()
        os.write(write, json.dumps({"born": born, "pid": os.getpid(), "glibc_tid": glibc_tid,
                                    "echoed": echoed}).encode())
        os._exit(7)
    os.close(write)
    child = json.loads(os.read(read, 4096))
    _, status = os.waitpid(pid, 0)
    print(json.dumps({**child, "expected": os.path.join(own, os.path.basename(directory)), "child_pid": pid,
                      "code": os.waitstatus_to_exitcode(status),
                      "pidfd_is_child": os.readlink(f"/proc/self/fd/{pidfd}")}))
finally:
    os.rmdir(directory)
"""


def test_a_clone3_child_is_born_in_its_cgroup_and_knows_its_own_thread_id():
    import json
    out = run_python(CLONE_INTO_CGROUP)
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout)
    # Without CLONE_INTO_CGROUP the child would start in its parent's cgroup.
    assert child["born"] == child["expected"]
    # Without CLONE_CHILD_SETTID glibc would still hold the parent's id for the child's only thread.
    assert child["glibc_tid"] == child["pid"] == child["child_pid"]
    assert child["echoed"] == "ok" and child["code"] == 7
    assert child["pidfd_is_child"] == "anon_inode:[pidfd]"


REMOUNT_LOCKED = """
import os, sys
from minicontainer import kernel
from minicontainer.errors import LabError
d = sys.argv[1]
kernel.unshare(kernel.CLONE_NEWNS)
kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
kernel.mount("tmpfs", d, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
# A user namespace with a mount namespace of its own: the tmpfs's flags are locked there, as a host's /sys is
# for a user-namespaced container.
kernel.unshare(kernel.CLONE_NEWUSER | kernel.CLONE_NEWNS)
kernel.mount(d, d, None, kernel.MS_BIND)
try:
    kernel.mount(None, d, None, kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY)
    print("plain remount: allowed")
except LabError as e:
    print("plain remount:", str(e).split(":")[1].split()[0])
kernel.remount_bind(d, kernel.MS_RDONLY)
flags = os.statvfs(d).f_flag
print("kept:", *(bool(flags & bit) for bit in (os.ST_RDONLY, os.ST_NOSUID, os.ST_NODEV, os.ST_NOEXEC)))
"""


def test_a_read_only_bind_keeps_the_flags_a_user_namespace_may_not_drop(tmp_path):
    out = run_python(REMOUNT_LOCKED, args=[tmp_path])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # The kernel's side: dropping nosuid, nodev and noexec there is refused.
    assert lines[0] == "plain remount: EPERM", out.stdout
    # remount_bind asks for read-only and keeps them: the bind is read-only, and still nosuid, nodev, noexec.
    assert lines[1] == "kept: True True True True", out.stdout
