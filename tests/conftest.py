"""Shared fixtures: root check, the rootfs image, and a guard that fails any test that leaks.

Tests run on the real kernel as root; nothing here mocks it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from minicontainer import devices, rootfs, state
from minicontainer.cgroups import base_dir, detect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How long a "wait until it is up" loop may poll. It stops as soon as the condition holds, so this costs
# nothing when things work; it covers the cgroup v2 VM (TCG: Python ~15x slower) on a busy host.
STARTUP_WAIT = 60


UNIT = os.path.join(REPO, "tests", "unit")  # the layer that needs no root and no kernel state


def only_unit_tests(config) -> bool:
    return all(os.path.abspath(str(arg).split("::")[0]).startswith(UNIT) for arg in config.args)


def pytest_sessionstart(session):
    if os.geteuid() != 0 and not only_unit_tests(session.config):
        pytest.exit("the minicontainer tests create namespaces, mounts and cgroups: run them as root "
                    "(tests/unit needs no root)", returncode=4)


@pytest.fixture(scope="session")
def image() -> str:
    """The default busybox rootfs, built once if missing."""
    if not os.path.isfile(os.path.join(rootfs.DEFAULT_ROOTFS, "bin/busybox")):
        rootfs.build_rootfs(rootfs.DEFAULT_ROOTFS, quiet=True)
    return rootfs.DEFAULT_ROOTFS


def kernel_state() -> dict:
    """What a test could leak: container cgroups, state dirs, mounts, helpers, netns, links."""
    layout = detect()
    cgroups = set()
    for controller in layout.controllers.values():
        base = base_dir(layout, controller)
        for top, dirs, _ in os.walk(base):
            cgroups.update(os.path.join(top, d) for d in dirs)
        if os.path.isdir(base):
            cgroups.add(base)
    with open("/proc/self/mountinfo") as f:
        mounts = {" ".join(line.split()[3:5]) for line in f}
    helpers = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if "minicontainer.process" in cmdline or comm == "mc-helper":  # spawned, or forked from the CLI
            if "minicontainer.process.shared" in cmdline and parent_of(pid) == os.getpid():
                continue  # this test process's own shared helper: what it holds is checked above and below
            helpers.add(f"{pid} {cmdline}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    firewall = set()
    if shutil.which("nft"):
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        firewall |= {line for line in tables.splitlines() if "minicontainer" in line}
        # Accept rules the lab adds to another firewall's forward chain (network.ForwardHoles).
        ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        firewall |= {line.strip() for line in ruleset.splitlines() if "(minicontainer)" in line}
    if shutil.which("iptables"):
        for table in ("nat", "filter"):
            rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True).stdout
            firewall |= {line for line in rules.splitlines() if "MC-" in line}
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        sysctls = {"ip_forward=" + f.read().strip()}
    return {
        "cgroups": cgroups,
        "BPF device programs": set(devices.loaded_programs()),
        "state dirs": set(state.all_names()),
        "mounts": mounts,
        "helper processes": helpers,
        "named netns": set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set(),
        "links": {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()},
        "firewall rules": firewall,
        "sysctls": sysctls,
    }


def parent_of(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def assert_back_to(before: dict, within: float = 5.0) -> None:
    """Wait until the kernel state is what it was, and fail with the difference if it is not in time."""
    deadline = time.monotonic() + within
    while kernel_state() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    after = kernel_state()
    assert after == before, {k: after[k] ^ before[k] for k in after if after[k] != before[k]}


@pytest.fixture(autouse=True)
def no_leaks(request):
    """Fail the test if, 5 s after it ends, anything it made is still there."""
    if str(request.node.path).startswith(UNIT):
        yield  # unit tests make nothing in the kernel
        return
    before = kernel_state()
    yield
    deadline = time.monotonic() + 5
    while True:
        after = kernel_state()
        leaked = {k: after[k] - before[k] for k in after if after[k] - before[k]}
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if leaked:
        subprocess.run([sys.executable, "-m", "minicontainer.cli", "cleanup"], capture_output=True)
        pytest.fail(f"test left kernel state behind: {leaked}")


def run_python(code: str, python: str = sys.executable, env: dict | None = None, args=(), timeout: float = 60,
               **kwargs) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (namespace work never happens in the pytest process)."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True, env=full_env,
                          timeout=timeout, **kwargs)


def cli(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minicontainer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=REPO), **kwargs)
