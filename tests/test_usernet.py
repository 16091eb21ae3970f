"""network="slirp4netns": user-mode networking, the one network a user without root can give a container
(usernet.py). Real slirp4netns, real sockets on the host; as root, and as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
from conftest import REPO

from minicontainer.container import Container, run
from minicontainer.errors import LabError
from minicontainer.spec import ContainerSpec

pytestmark = pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed "
                                "(./lab setup installs it: packages.apt)")

UID = 20000
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's may be out of an unprivileged user's reach (see test_rootless)


def host_address() -> str:
    """An IPv4 address of this host's own, not loopback: where a container's relayed connection can go."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    addresses = [line.split()[3].split("/")[0] for line in out.splitlines()]
    if not addresses:
        pytest.skip("this host has no IPv4 address but loopback")
    return addresses[0]


class Listener:
    """A TCP server on the host that answers each connection with the address it came from."""

    def __init__(self, address: str):
        self.sock = socket.create_server((address, 0))
        self.address, self.port = address, self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(f"hello {peer[0]}\n".encode())

    def close(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener(host_address())
    yield server
    server.close()


def slirp_processes() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "slirp4netns"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


@pytest.fixture(autouse=True)
def no_slirp_left():
    assert not slirp_processes(), "a slirp4netns ran before the test"
    yield
    deadline = time.monotonic() + 5
    while slirp_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not slirp_processes(), "slirp4netns outlived its container"


def test_a_container_reaches_the_host_through_slirp4netns(image, listener):
    dial = ["sh", "-c", f"ip -4 -o addr show tap0; nc {listener.address} {listener.port}"]
    relayed = run(ContainerSpec(image, dial, network="slirp4netns"), timeout=30)
    assert relayed.code == 0, relayed.stderr
    assert "10.0.2.100/24" in relayed.stdout, "tap0, configured by slirp4netns inside"
    # The connection came from the host's own address: slirp4netns's socket, not a packet routed from inside.
    assert f"hello {listener.address}" in relayed.stdout
    unplugged = run(ContainerSpec(image, dial, network="none"), timeout=30)
    assert unplugged.code != 0 and "hello" not in unplugged.stdout, "without it, nothing leads out"


def test_the_hosts_loopback_stays_out_of_reach(image):
    """--disable-host-loopback: 10.0.2.2 is slirp4netns, not a way to the host's 127.0.0.1 services."""
    server = Listener("127.0.0.1")
    try:
        tried = run(ContainerSpec(image, ["sh", "-c", f"nc 10.0.2.2 {server.port}"], network="slirp4netns"), timeout=30)
    finally:
        server.close()
    assert "hello" not in tried.stdout and tried.code != 0, tried.stdout


def test_a_published_port_leads_to_the_container(image):
    serve = "mkdir -p /www && echo 'from inside' > /www/index.html && exec httpd -f -p 80 -h /www"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with Container.start(ContainerSpec(image, ["sh", "-c", serve], network="slirp4netns",
                                       publish=[("127.0.0.1", port, 80, "tcp")])):
        body = None
        for _ in range(50):
            try:
                body = urllib.request.urlopen(url, timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
    assert body == "from inside\n"
    with Container.start(ContainerSpec(image, ["sh", "-c", serve], network="slirp4netns")):
        with pytest.raises(OSError):  # not published: nothing listens on the host's port
            urllib.request.urlopen(url, timeout=2)


def as_user_with_tun(tun_mode: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI run by uid 20000 in a private mount namespace whose /dev/net/tun has tun_mode, as udev makes it
    (0666) or as a machine without udev leaves it (0600): the host's own node is not touched."""
    script = ('mount -t tmpfs usernet-test "$0" && mknod -m "$1" "$0/tun" c 10 200 && '
              'mount --bind "$0/tun" /dev/net/tun && shift && exec "$@"')
    with tempfile.TemporaryDirectory() as scratch:
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, scratch,
                               tun_mode, "setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "env",
                               f"PYTHONPATH={REPO}", SYSTEM_PYTHON, "-m", "minicontainer.cli", *args],
                              capture_output=True, text=True, timeout=90, cwd="/", env=env)


def test_an_unprivileged_users_container_gets_a_network(image, listener):
    dial = f"nc {listener.address} {listener.port}"
    out = as_user_with_tun("0666", "run", "--rootless", "--net", "slirp4netns", image, "--", "sh", "-c", dial)
    assert out.returncode == 0 and f"hello {listener.address}" in out.stdout, out.stderr
    refused = as_user_with_tun("0666", "run", "--rootless", "--net", "bridge", image, "--", "true")
    assert refused.returncode != 0 and "slirp4netns" in refused.stderr, "the bridge error names what works"


def test_a_tun_device_closed_to_users_gets_a_clear_error(image):
    out = as_user_with_tun("0600", "run", "--rootless", "--net", "slirp4netns", image, "--", "true")
    assert out.returncode != 0
    assert "/dev/net/tun" in out.stderr and "chmod 0666 /dev/net/tun" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def test_nothing_of_slirp4netns_is_left_inside_the_container(image):
    """slirp4netns enters the container's user and network namespaces only in a short-lived child, which opens
    tap0 there and hands the descriptor back. The container's processes hold no descriptor but their stdio, and
    slirp4netns itself stays in the host's PID and network namespaces: nothing inside can see, signal or trace it,
    nor reach the host's sockets through it but by the relay."""
    with Container.start(ContainerSpec(image, ["sh", "-c", "sleep 600 & exec sleep 601"],
                                       network="slirp4netns")) as box:
        time.sleep(0.3)  # sh has forked its sleep 600
        inside = [box.pid, *children(box.pid)]
        held = {pid: sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
                            if int(fd) > 2) for pid in inside}
        relays = slirp_processes()
        namespaces_of = {pid: (os.readlink(f"/proc/{pid}/ns/pid"), os.readlink(f"/proc/{pid}/ns/net"))
                         for pid in relays}
        container_net = os.readlink(f"/proc/{box.pid}/ns/net")
    assert len(inside) == 2 and not any(held.values()), held
    assert relays and all(pid_ns == os.readlink("/proc/self/ns/pid") and net_ns == os.readlink("/proc/self/ns/net")
                          for pid_ns, net_ns in namespaces_of.values()), (namespaces_of, container_net)


def test_slirp4netns_ends_when_its_holders_are_killed(image):
    """The caller and its shared helper (which took the container over, and the slirp4netns exit pipe with
    it) both SIGKILLed: the pipe closes with its last holder, and slirp4netns exits by itself."""
    code = ("from minicontainer.container import Container; from minicontainer.spec import ContainerSpec; "
            f"box = Container.start(ContainerSpec({image!r}, ['sleep', '600'], network='slirp4netns')); "
            "print(box.pid, flush=True); import time; time.sleep(600)")
    caller = subprocess.Popen([SYSTEM_PYTHON, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": REPO}, start_new_session=True)
    try:
        init_pid = int(caller.stdout.readline())
        assert slirp_processes(), "slirp4netns runs while the container does"
        shared_helpers = [pid for pid in children(caller.pid) if pid != init_pid]
        assert shared_helpers, "the caller's shared helper"
    finally:
        for pid in [caller.pid, *children(caller.pid)]:
            os.kill(pid, signal.SIGKILL)
        caller.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{init_pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    # no_slirp_left checks slirp4netns is gone; the state the dead supervisor left is cleanup's to remove.
    subprocess.run([SYSTEM_PYTHON, "-m", "minicontainer.cli", "cleanup"], cwd=REPO, env={**os.environ,
                   "PYTHONPATH": REPO}, capture_output=True, timeout=60)


def test_network_slirp4netns_needs_the_net_namespace():
    with pytest.raises(LabError, match="needs the net namespace"):
        ContainerSpec(None, ["true"], namespaces=("mnt",), network="slirp4netns").validate()
